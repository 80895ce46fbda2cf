"""A trained Distribution Transformer: ``posterior(prior, x)`` in one forward pass, ``update``
for sequential inference (each posterior is the next batch's prior), ``estimator(prior)`` for
``pi.calibrate``, ``to_posterior`` for summaries and reports, and ``save`` / :func:`load` (one
flax msgpack file, written atomically; the model is code and is given again to ``load``).

>>> post = dt.posterior(prior, {"y": y})            # a Mixture over unconstrained θ   # doctest: +SKIP
>>> steps = dt.update(prior, [{"y": y1}, {"y": y2}], key=0)                                  # doctest: +SKIP
>>> pi.calibrate(target, dt.estimator(prior), key=0)                                   # doctest: +SKIP
>>> dt.save("dt.msgpack"); dt = pi.dt.load("dt.msgpack", model)                        # doctest: +SKIP
"""

import dataclasses
import json
import os

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

from probinfer._utils import as_key, atomic_write_bytes
from probinfer.errors import DataError, ProbinferError
from probinfer.inference.dt.mixture import Mixture
from probinfer.posterior import Posterior

__all__ = ["DT", "load"]

_FORMAT = "probinfer.dt/1"


class DT:
    """A Distribution Transformer trained for one model (see :func:`train`).

    Attributes:
        target: the compiled model (its observed sites fix a data set's shape).
        network, params: the flax module and its weights; ``layout`` the data standardisation.
        meta_prior: the random priors it was trained on — priors far outside them are
            extrapolation.
    """

    def __init__(self, *, target, network, params, layout, meta_prior, settings, diagnostics):
        self.target, self.network, self.params = target, network, params
        self.layout, self.meta_prior = layout, meta_prior
        self.settings, self.diagnostics = dict(settings), dict(diagnostics)
        self._apply = jax.jit(network.apply)

    def _check_prior(self, prior):
        if not isinstance(prior, Mixture):
            raise DataError(
                f"prior must be a Mixture over the unconstrained parameters; got "
                f"{type(prior).__name__} (build one with Mixture.gaussian or Mixture.fit)."
            )
        if prior.dim != self.target.dim:
            raise DataError(
                f"the prior is over {prior.dim} dimensions but '{self.target.name}' has "
                f"{self.target.dim} unconstrained parameters."
            )

    def posterior(self, prior, x):
        """The posterior :class:`Mixture` given ``prior`` (a Mixture, batch-free or with a
        leading batch) and data set ``x`` (``{observed site: array}``, or a batch)."""
        self._check_prior(prior)
        features, batched = self.layout.features(x)
        single = prior.logits.ndim == 1
        if single:
            prior = jax.tree.map(lambda a: a[None], prior)
        if prior.logits.shape[0] != features.shape[0]:
            if prior.logits.shape[0] != 1:
                raise DataError(
                    f"{prior.logits.shape[0]} priors and {features.shape[0]} data sets: give one "
                    "prior, or one per data set."
                )
            prior = jax.tree.map(lambda a: jnp.repeat(a, features.shape[0], 0), prior)
        out = self._apply(self.params, prior, features)
        return jax.tree.map(lambda a: a[0], out) if single and not batched else out

    def update(self, prior, batches, *, key):
        """Sequential inference: the list of posteriors after each data set in ``batches``,
        each posterior the next one's prior. The mixture grows by ``components_out`` per step,
        so it is reduced back to the prior's size by EM on 4,096 of its draws (``key``: int
        seed or PRNG key for those draws)."""
        posteriors, current = [], prior
        keys = jax.random.split(as_key(key), 2 * max(len(batches), 1))
        for i, x in enumerate(batches):
            post = self.posterior(current, x)
            if post.num_components > prior.num_components:
                draws = post.sample(keys[2 * i], 4096)
                post = Mixture.fit(draws, prior.num_components, key=keys[2 * i + 1])
            posteriors.append(post)
            current = post
        return posteriors

    def estimator(self, prior):
        """An amortized estimator for ``pi.calibrate``: ``sample(key, x, n)`` draws from the
        posterior under this fixed ``prior`` (calibrate a model whose own prior is it)."""
        return _Estimator(self, prior)

    def to_posterior(self, mixture, *, key, n=1000):
        """A :class:`~probinfer.Posterior` of ``n`` constrained draws from ``mixture``."""
        z = mixture.sample(as_key(key), n)
        values = jax.vmap(self.target.constrain)(z)
        return Posterior(
            {k: np.asarray(v)[None] for k, v in values.items()},
            method="dt",
            settings={"kernel": "dt", **self.settings},
            diagnostics={"amortized": True},
        )

    def save(self, path):
        """Write the trained DT to ``path`` atomically: weights, the data standardisation, the
        network's and meta-prior's settings and the loss curve. :func:`load` reads it back."""
        meta = {
            "format": _FORMAT,
            "target": self.target.name,
            "latent": _latent(self.target),
            "observed": _observed(self.target),
            "network": {f.name: getattr(self.network, f.name) for f in _fields(self.network)},
            "meta_prior": dataclasses.asdict(self.meta_prior),
            "settings": self.settings,
        }
        payload = {
            "meta": json.dumps(meta, default=repr),
            "params": jax.tree.map(np.asarray, self.params),
            "x_loc": np.asarray(self.layout.loc),
            "x_scale": np.asarray(self.layout.scale),
            "loss": np.asarray(self.diagnostics.get("loss", np.zeros(0)), np.float32),
        }
        atomic_write_bytes(os.fspath(path), flax.serialization.msgpack_serialize(payload))
        return os.fspath(path)

    def __repr__(self):
        return f"DT('{self.target.name}', {self.settings.get('network')})"


def _fields(network):
    return [f for f in dataclasses.fields(network) if f.name not in ("parent", "name")]


def _latent(target):
    return {k: list(v.shape) for k, v in target.latent_sites.items()}


def _observed(target):
    return {k: list(v) for k, v in target.observed_shapes.items()}


def load(path, model, *, model_args=(), model_kwargs=None, data=()):
    """The DT saved at ``path`` by :meth:`DT.save`, for ``model`` (the model function, Target,
    zoo Example or name it was trained on — checked against the saved sites; ``model_args``,
    ``model_kwargs`` and ``data`` as in :func:`train`)."""
    from probinfer.inference.dt.network import DistributionTransformer
    from probinfer.inference.dt.train import MetaPrior
    from probinfer.nn.layout import ObservationLayout
    from probinfer.target import as_target

    if not os.path.exists(path):
        raise DataError(f"no saved Distribution Transformer at '{path}'.")
    with open(path, "rb") as f:
        payload = flax.serialization.msgpack_restore(f.read())
    meta = json.loads(payload.get("meta", "{}")) if isinstance(payload, dict) else {}
    if meta.get("format") != _FORMAT:
        raise ProbinferError(f"'{path}' is not a Distribution Transformer saved by probinfer.")
    target = as_target(model, model_args, model_kwargs, data)
    if _latent(target) != meta["latent"] or _observed(target) != meta["observed"]:
        raise DataError(
            f"'{path}' was trained on a model with latent sites {meta['latent']} and observed "
            f"sites {meta['observed']}; '{target.name}' has {_latent(target)} and "
            f"{_observed(target)}."
        )
    layout = ObservationLayout.from_target(target, "set")._replace(
        loc=np.asarray(payload["x_loc"]), scale=np.asarray(payload["x_scale"])
    )
    return DT(
        target=target,
        network=DistributionTransformer(**meta["network"]),
        params=jax.tree.map(jnp.asarray, payload["params"]),
        layout=layout,
        meta_prior=MetaPrior(**meta["meta_prior"]),
        settings=meta["settings"],
        diagnostics={"loss": np.asarray(payload["loss"])},
    )


class _Estimator:
    def __init__(self, dt, prior):
        dt._check_prior(prior)
        self.dt, self.prior = dt, prior

    def sample(self, key, x, n):
        features, batched = self.dt.layout.features(x)
        prior = jax.tree.map(
            lambda a: jnp.broadcast_to(a, (features.shape[0],) + a.shape), self.prior
        )
        q = self.dt.network.apply(self.dt.params, prior, features)
        z = q.sample(key, n)  # (n, b, D)
        values = jax.vmap(jax.vmap(self.dt.target.constrain))(jnp.swapaxes(z, 0, 1))
        return values if batched else {k: v[0] for k, v in values.items()}
