"""``AmortizedPosterior``: a trained conditional density q(θ | x) that gives a posterior for any
data set x in one forward pass (what :func:`~probinfer.inference.amortized.npe` returns).

q lives on the Target's unconstrained space, standardised: z = loc + scale · u, u drawn from a
conditional flow whose context is the embedding s_ψ(x) of the standardised data. Draws are mapped
to constrained values by the Target, and densities carry the Jacobians of both maps:

    log q(θ | x) = log q_u(u | s_ψ(x)) − Σ log scale − log|det ∂θ/∂z|.

>>> post = pi.npe(model, key=0)                            # doctest: +SKIP
>>> draws = post.sample(1, {"y": y_obs}, 1000)             # {site: (1000, *shape)}  # doctest: +SKIP
>>> post.posterior({"y": y_obs}, key=2).summary()          # a Posterior  # doctest: +SKIP
"""

import json
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from probinfer._utils import as_key
from probinfer.compiler import as_target
from probinfer.errors import DataError
from probinfer.health import ProbinferWarning
from probinfer.nn import estimator as estimator_file
from probinfer.nn.embeddings import embedding_module
from probinfer.nn.flows import flow_from_config
from probinfer.nn.layout import ObservationLayout
from probinfer.posterior import Posterior

__all__ = ["AmortizedPosterior", "load"]

KIND = "npe"
_LEGACY_FORMAT = "probinfer.amortized/1"  # files written before probinfer.nn.estimator


class AmortizedPosterior(estimator_file.Estimator):
    """q(θ | x) for every data set x of a model.

    Attributes:
        target: the compiled model (its latent sites are θ; its observed sites are x).
        flow, embedding: the conditional :class:`~probinfer.nn.flows.Flow` and the flax
            embedding module; ``params``: ``{"flow": …, "embedding": …}`` (each leaf with a
            leading member axis for an ensemble).
        num_estimators: members of an ensemble (``settings["num_estimators"]``; 1: one
            estimator); q is their equal mixture.
        layout: how x becomes features (:class:`ObservationLayout`, with its standardisation).
        loc, scale: ``(dim,)`` standardisation of the unconstrained θ.
        method: ``"npe"``; settings: what it was trained with; diagnostics: training and
            validation losses per epoch, the best epoch, simulation counts.

    Saved files are of kind ``"npe"`` in :mod:`probinfer.nn.estimator`'s format.
    """

    kind = KIND

    def __init__(
        self, *, target, flow, embedding, layout, params, loc, scale, method, settings, diagnostics
    ):
        self.target, self.flow, self.embedding, self.layout = target, flow, embedding, layout
        self.params = params
        self.loc, self.scale = jnp.asarray(loc), jnp.asarray(scale)
        self.method, self.settings, self.diagnostics = method, dict(settings), dict(diagnostics)
        self.num_estimators = int(self.settings.get("num_estimators") or 1)
        self._draw_z = jax.jit(self._draw_z_impl, static_argnums=(3,))
        self._log_q = jax.jit(self._log_q_impl)
        observed = self.settings.get("observed")  # a sequential estimator's one data set
        self._focus = None
        if observed is not None:
            focus = {k: np.asarray(v, np.float32) for k, v in observed.items()}
            self._focus = np.asarray(self.layout.features(focus)[0])

    def _check_focus(self, features):
        """Warn when an estimator trained for one data set (TSNPE) is asked about another."""
        if self._focus is None or isinstance(features, jax.core.Tracer):
            return
        rows = np.asarray(features).reshape(-1, *self._focus.shape[1:])
        if not np.allclose(rows, self._focus, rtol=1e-5, atol=1e-5, equal_nan=True):
            warnings.warn(
                f"this {self.method} estimator was trained for one data set (settings"
                "['observed']); its later rounds never saw data far from it, so q(θ | x) at "
                "another x is not a posterior to trust: train pi.npe for an amortized one.",
                ProbinferWarning,
                stacklevel=3,
            )

    # -- the density ------------------------------------------------------------------------------

    def _context(self, params, features):
        return self.embedding.apply(params["embedding"], features)

    def _draw_z_impl(self, params, key, features, n):
        if self.num_estimators > 1:  # the equal mixture: ⌈n/M⌉ from each member, shuffled, n kept
            m = self.num_estimators
            keys = jax.random.split(key, m + 1)
            each = jax.vmap(lambda p, k: self._draw_one(p, k, features, -(-n // m)))(
                params, keys[:m]
            )  # (M, b, ⌈n/M⌉, dim)
            z = jnp.moveaxis(each, 0, 1).reshape(each.shape[1], -1, each.shape[-1])
            order = jax.vmap(lambda k: jax.random.permutation(k, z.shape[1]))(
                jax.random.split(keys[m], z.shape[0])
            )
            return jnp.take_along_axis(z, order[..., None], axis=1)[:, :n]
        return self._draw_one(params, key, features, n)

    def _draw_one(self, params, key, features, n):
        context = self._context(params, features)
        keys = jax.random.split(key, context.shape[0])
        u = jax.vmap(lambda k, c: self.flow.sample(params["flow"], k, n, c))(keys, context)
        return self.loc + self.scale * u

    def _log_q_impl(self, params, z, features):
        if self.num_estimators > 1:  # log (1/M) Σ_m q_m
            each = jax.vmap(lambda p: self._log_q_one(p, z, features))(params)
            return jax.nn.logsumexp(each, axis=0) - jnp.log(self.num_estimators)
        return self._log_q_one(params, z, features)

    def _log_q_one(self, params, z, features):
        context = jnp.broadcast_to(
            self._context(params, features), (z.shape[0], self.flow.context_dim)
        )
        u = (z - self.loc) / self.scale
        log_q = self.flow.log_prob(params["flow"], u, context) - jnp.sum(jnp.log(self.scale))
        return log_q - self.target.log_abs_det_jacobian(z)

    # -- public -----------------------------------------------------------------------------------

    def sample_unconstrained(self, key, x, n):
        """``n`` draws of z on the unconstrained space: ``(n, dim)`` for one data set x,
        ``(b, n, dim)`` for a batch."""
        features, batched = self.layout.features(x)
        self._check_focus(features)
        z = self._draw_z(self.params, as_key(key), features, int(n))
        return z if batched else z[0]

    def sample(self, key, x, n):
        """``n`` posterior draws for data set ``x`` (``{observed site: array}``, or an array when
        the model has one observed site): ``{site: (n, *shape)}`` of constrained values, or
        ``{site: (b, n, *shape)}`` for a batch of b data sets (each site ``(b, *shape)``) in one
        call. Traceable, so :func:`probinfer.calibrate` vmaps it over simulated data sets."""
        values, batched = self._sample(key, x, n)
        return values if batched else {k: v[0] for k, v in values.items()}

    def _sample(self, key, x, n):
        features, batched = self.layout.features(x)
        self._check_focus(features)
        z = self._draw_z(self.params, as_key(key), features, int(n))
        values = jax.vmap(self.target.constrain)(z.reshape(-1, z.shape[-1]))
        return {k: v.reshape(z.shape[:2] + v.shape[1:]) for k, v in values.items()}, batched

    def log_prob(self, theta, x):
        """log q(θ | x) of constrained values ``theta`` (``{site: (n, *shape)}`` or one point)
        given one data set ``x`` (or a batch of n data sets, one per θ): ``(n,)``."""
        missing = [s for s in self.target.latent_sites if s not in theta]
        if missing:
            raise DataError(f"theta lacks latent site(s) {missing} of '{self.target.name}'.")
        z = jnp.atleast_2d(
            self.target.unconstrain({k: jnp.asarray(theta[k]) for k in self.target.latent_sites})
        )
        features, batched = self.layout.features(x)
        self._check_focus(features)
        if batched and features.shape[0] not in (1, z.shape[0]):
            raise DataError(
                f"log_prob got {z.shape[0]} parameter points and a batch of "
                f"{features.shape[0]} data sets; give one data set or one per point."
            )
        return self._log_q(self.params, z, features)

    def posterior(self, x, *, key, n=1000):
        """A :class:`~probinfer.Posterior` of ``n`` draws for one data set ``x`` (summaries,
        ArviZ, reports), or a list of them for a batch."""
        draws, batched = self._sample(key, x, n)
        settings = dict(self.settings)

        def one(i):
            return Posterior(
                {k: np.asarray(v[i])[None] for k, v in draws.items()},
                method=self.method,
                settings=settings,
                diagnostics={"amortized": True},
            )

        if not batched:
            return one(0)
        return [one(i) for i in range(next(iter(draws.values())).shape[0])]

    def misspecification(self, x, *, key, num_simulations=2000):
        """Whether data set ``x`` looks like the model's simulations in this estimator's
        embedding space (MMD against fresh simulations; :mod:`.misspecification`): a
        :class:`~.misspecification.Misspecification` with ``p_value`` and ``verdict()``."""
        from probinfer.inference.amortized.misspecification import misspecification

        return misspecification(self, x, key=key, num_simulations=num_simulations)

    def local_c2st(self, *, key, **settings):
        """L-C2ST's classifiers trained for this estimator (:func:`~.lc2st.local_c2st`, its
        defaults unless ``settings`` say otherwise): ``.test(x, key=)`` at any data set."""
        from probinfer.inference.amortized.lc2st import local_c2st

        return local_c2st(self, key=key, **settings)

    def __repr__(self):
        epochs = self.diagnostics.get("num_epochs")
        return (
            f"AmortizedPosterior({self.method} on '{self.target.name}': {self.flow.kind} flow, "
            f"{self.settings.get('embedding')} embedding, {epochs} epochs)"
        )

    # -- files ------------------------------------------------------------------------------------

    def _meta(self):
        return {
            "method": self.method,
            "target": self.target.name,
            "settings": self.settings,
            "flow": self.flow.config(),
            "embedding": embedding_config(self),
            "diagnostics": _jsonable(self.diagnostics),
        }

    def _arrays(self):
        return standardised_arrays(self)

    def save(self, path):
        """Write the trained estimator to ``path`` atomically in probinfer's one estimator
        format (:mod:`probinfer.nn.estimator`: weights, standardisation, settings, diagnostics,
        the model's site shapes). The model itself is code: ``pi.load(path, model)`` or
        :meth:`load` takes it again. Returns the path."""
        return super().save(path)

    @classmethod
    def load(cls, path, model, *, embedding=None, model_args=(), model_kwargs=None, data=()):
        """The estimator saved at ``path``, for ``model`` (the model function, Target, zoo
        Example or name it was trained on; checked against the saved sites). A custom
        embedding module must be given again as ``embedding``."""
        return load(
            path,
            model,
            embedding=embedding,
            model_args=model_args,
            model_kwargs=model_kwargs,
            data=data,
        )


def load(path, model, *, embedding=None, model_args=(), model_kwargs=None, data=()):
    """:meth:`AmortizedPosterior.load`: ``pi.load`` for files that must hold an NPE estimator."""
    return estimator_file.load(
        path,
        model,
        kind=KIND,
        embedding=embedding,
        model_args=model_args,
        model_kwargs=model_kwargs,
        data=data,
    )


def _loader(path, header, arrays, model, *, embedding=None, model_args=(), model_kwargs=None,
            data=()):  # fmt: skip
    meta = header["meta"]
    settings = meta["settings"]
    target, layout, module = embedded_parts(
        path, header, arrays, (model, model_args, model_kwargs, data), embedding, "an NPE"
    )
    flow = flow_from_config(meta["flow"], target.dim)
    return AmortizedPosterior(
        target=target,
        flow=flow,
        embedding=module,
        layout=layout,
        params=jax.tree.map(jnp.asarray, arrays["params"]),
        loc=arrays["loc"],
        scale=arrays["scale"],
        method=meta["method"],
        settings=settings,
        diagnostics=meta["diagnostics"],
    )


def _migrate(payload):
    """A file of the legacy format ``probinfer.amortized/1`` (no header; a JSON ``meta`` with the
    site shapes) as ``(meta, arrays, sites)``; None for any other file."""
    raw = payload.get("meta")
    if not isinstance(raw, str) or _LEGACY_FORMAT not in raw:
        return None
    meta = json.loads(raw)
    if not isinstance(meta, dict) or meta.get("format") != _LEGACY_FORMAT:
        return None
    sites = {"latent": meta.pop("latent"), "observed": meta.pop("observed")}
    meta.pop("format")
    arrays = {name: payload[name] for name in ("params", "loc", "scale", "x_loc", "x_scale")}
    return meta, arrays, sites


estimator_file.register(KIND, _loader, _migrate)


def target_and_layout(path, header, arrays, kind, model, what):
    """The Target a saved estimator's ``model`` (``(model, model_args, model_kwargs, data)``)
    compiles to, checked against the file's sites, and its observation layout of ``kind`` with
    the saved standardisation — what NPE's and NLE's loaders share; ``what`` names the kind in
    the sentence for a missing model."""
    model, model_args, model_kwargs, data = model
    if model is None:
        raise DataError(
            f"'{path}' holds {what} estimator: pass the model it was trained on, "
            "pi.load(path, model)."
        )
    target = as_target(model, model_args, model_kwargs, data)
    estimator_file.check_sites(path, header, target)
    layout = ObservationLayout.from_target(target, kind)._replace(
        loc=np.asarray(arrays["x_loc"]), scale=np.asarray(arrays["x_scale"])
    )
    return target, layout


def embedding_config(estimator):
    """What a file keeps of an estimator's embedding of x: its size, or None for a custom module
    (code, given again when the file is read)."""
    if estimator.settings.get("embedding") == "custom":
        return None
    module = estimator.embedding
    return {"features": module.features, "hidden": list(module.hidden), "masked": module.masked}


def embedded_parts(path, header, arrays, model, embedding, what):
    """``(target, layout, embedding module)`` of a saved estimator that embeds x (NPE, NRE):
    :func:`target_and_layout` with the layout its ``settings["embedding"]`` reads, and the module
    rebuilt from :func:`embedding_config` (or ``embedding``, for a custom one)."""
    meta = header["meta"]
    settings = meta["settings"]
    name = settings["embedding"]
    kind = "set" if name == "set" else "flat"
    target, layout = target_and_layout(path, header, arrays, kind, model, what)
    sizes = settings.get("num_observations")  # files before these settings: neither
    layout = layout._replace(
        sizes=None if sizes is None else tuple(sizes),
        missing_rate=float(settings.get("missing_rate", 0.0)),
    )
    if meta["embedding"] is None:
        if embedding is None:
            raise DataError(
                f"'{path}' was trained with a custom embedding module; pass it as embedding=."
            )
        return target, layout, embedding
    module = embedding_module(name, layout.feature_shape, target.dim).clone(
        features=meta["embedding"]["features"],
        hidden=tuple(meta["embedding"]["hidden"]),
        masked=bool(meta["embedding"].get("masked", False)),
    )
    return target, layout, module


def standardised_arrays(estimator):
    """The arrays an estimator with ``params``, a θ standardisation (``loc``, ``scale``) and an
    x layout writes: NPE's and NLE's files."""
    return {
        "params": jax.tree.map(np.asarray, estimator.params),
        "loc": np.asarray(estimator.loc),
        "scale": np.asarray(estimator.scale),
        "x_loc": np.asarray(estimator.layout.loc),
        "x_scale": np.asarray(estimator.layout.scale),
    }


def _jsonable(tree):
    def convert(v):
        if isinstance(v, (np.ndarray, jnp.ndarray)):
            return np.asarray(v).tolist()
        if isinstance(v, (np.floating, np.integer)):
            return v.item()
        return v

    return {k: convert(v) for k, v in tree.items()}
