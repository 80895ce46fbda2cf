"""A trained Distribution Transformer: ``mixture(prior, x)`` — the posterior Mixture in one
forward pass — and ``posterior(prior, x, key=)`` — its draws as a :class:`~probinfer.Posterior`
(the estimator convention), ``update`` for sequential inference (each posterior is the next
batch's prior), ``estimator(prior)`` for ``pi.calibrate``, and ``save`` / :func:`load` (one file of
probinfer's estimator format, :mod:`probinfer.nn.estimator`, kind ``"dt"``, written atomically;
the model is code and is given again to ``load`` or ``pi.load``).

>>> q = dt.mixture(prior, {"y": y})                 # a Mixture over unconstrained θ   # doctest: +SKIP
>>> post = dt.posterior(prior, {"y": y}, key=0)     # a Posterior of 1,000 draws        # doctest: +SKIP
>>> steps = dt.update(prior, [{"y": y1}, {"y": y2}], key=0)                                  # doctest: +SKIP
>>> pi.calibrate(target, dt.estimator(prior), key=0)                                   # doctest: +SKIP
>>> dt.save("dt.msgpack"); dt = pi.dt.load("dt.msgpack", model)                        # doctest: +SKIP
"""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np

from probinfer._utils import as_key
from probinfer.errors import DataError
from probinfer.inference.dt.mixture import Mixture
from probinfer.nn import estimator as estimator_file
from probinfer.posterior import Posterior

__all__ = ["DT", "load"]

KIND = "dt"
_LEGACY_FORMAT = "probinfer.dt/1"  # files written before probinfer.nn.estimator


class DT(estimator_file.Estimator):
    """A Distribution Transformer trained for one model (see :func:`train`).

    Attributes:
        target: the compiled model (its observed sites fix a data set's shape).
        network, params: the flax module and its weights; ``layout`` the data standardisation.
        meta_prior: the random priors it was trained on — priors far outside them are
            extrapolation.

    Its answers take the prior as well as the data: :meth:`mixture` (the posterior Mixture),
    :meth:`posterior` (a Posterior of draws), ``estimator(prior)`` (``sample(key, x, n)``).
    """

    kind = KIND

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

    def mixture(self, prior, x):
        """The posterior :class:`Mixture` over the unconstrained parameters given ``prior`` (a
        Mixture, batch-free or with a leading batch) and data set ``x`` (``{observed site:
        array}``, or a batch): a batched Mixture for a batch."""
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
            post = self.mixture(current, x)
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

    def posterior(self, prior, x, *, key, n=1000):
        """A :class:`~probinfer.Posterior` (method ``"dt"``) of ``n`` constrained draws from the
        posterior :meth:`mixture` given ``prior`` and data set ``x`` — or a list of them for a
        batch of data sets (``key``: int seed or PRNG key)."""
        q = self.mixture(prior, x)
        if q.logits.ndim == 1:
            return self.to_posterior(q, key=key, n=n)
        keys = jax.random.split(as_key(key), q.logits.shape[0])
        return [
            self.to_posterior(jax.tree.map(lambda a, i=i: a[i], q), key=keys[i], n=n)
            for i in range(q.logits.shape[0])
        ]

    def to_posterior(self, mixture, *, key, n=1000):
        """A :class:`~probinfer.Posterior` of ``n`` constrained draws from ``mixture`` (one
        posterior of :meth:`mixture` or :meth:`update`)."""
        z = mixture.sample(as_key(key), n)
        values = jax.vmap(self.target.constrain)(z)
        return Posterior(
            {k: np.asarray(v)[None] for k, v in values.items()},
            method="dt",
            settings=dict(self.settings),
            diagnostics={"amortized": True},
        )

    def _meta(self):
        return {
            "target": self.target.name,
            "network": {f.name: getattr(self.network, f.name) for f in _fields(self.network)},
            "meta_prior": dataclasses.asdict(self.meta_prior),
            "settings": self.settings,
        }

    def _arrays(self):
        return {
            "params": jax.tree.map(np.asarray, self.params),
            "x_loc": np.asarray(self.layout.loc),
            "x_scale": np.asarray(self.layout.scale),
            "loss": np.asarray(self.diagnostics.get("loss", np.zeros(0)), np.float32),
        }

    def save(self, path):
        """Write the trained DT to ``path`` atomically: weights, the data standardisation, the
        network's and meta-prior's settings, the loss curve and the model's site shapes.
        :func:`load` or ``pi.load(path, model)`` reads it back. Returns the path."""
        return super().save(path)

    def __repr__(self):
        return f"DT('{self.target.name}', {self.settings.get('network')})"


def _fields(network):
    return [f for f in dataclasses.fields(network) if f.name not in ("parent", "name")]


def load(path, model, *, model_args=(), model_kwargs=None, data=()):
    """The DT saved at ``path`` by :meth:`DT.save`, for ``model`` (the model function, Target,
    zoo Example or name it was trained on — checked against the saved sites; ``model_args``,
    ``model_kwargs`` and ``data`` as in :func:`train`). ``pi.load`` with the kind fixed; files of
    the format before :mod:`probinfer.nn.estimator` keep loading."""
    return estimator_file.load(
        path, model, kind=KIND, model_args=model_args, model_kwargs=model_kwargs, data=data
    )


def _loader(path, header, arrays, model, *, model_args=(), model_kwargs=None, data=()):
    from probinfer.compiler import as_target
    from probinfer.inference.dt.network import DistributionTransformer
    from probinfer.inference.dt.train import MetaPrior
    from probinfer.nn.layout import ObservationLayout

    if model is None:
        raise DataError(
            f"'{path}' holds a Distribution Transformer: pass the model it was trained on, "
            "pi.load(path, model)."
        )
    meta = header["meta"]
    target = as_target(model, model_args, model_kwargs, data)
    estimator_file.check_sites(path, header, target)
    layout = ObservationLayout.from_target(target, "set")._replace(
        loc=np.asarray(arrays["x_loc"]), scale=np.asarray(arrays["x_scale"])
    )
    return DT(
        target=target,
        network=DistributionTransformer(**meta["network"]),
        params=jax.tree.map(jnp.asarray, arrays["params"]),
        layout=layout,
        meta_prior=MetaPrior(**meta["meta_prior"]),
        settings=meta["settings"],
        diagnostics={"loss": np.asarray(arrays["loss"])},
    )


def _migrate(payload):
    """A file of the legacy format ``probinfer.dt/1`` (no header; a JSON ``meta`` with the site
    shapes) as ``(meta, arrays, sites)``; None for any other file."""
    raw = payload.get("meta")
    if not isinstance(raw, str) or _LEGACY_FORMAT not in raw:
        return None
    meta = json.loads(raw)
    if not isinstance(meta, dict) or meta.get("format") != _LEGACY_FORMAT:
        return None
    sites = {"latent": meta.pop("latent"), "observed": meta.pop("observed")}
    meta.pop("format")
    arrays = {name: payload[name] for name in ("params", "x_loc", "x_scale", "loss")}
    return meta, arrays, sites


estimator_file.register(KIND, _loader, _migrate)


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
