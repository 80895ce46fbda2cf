"""What ``amortized_vi`` fits, as objects: the split of a model into global and local sites
(:class:`_Spec`), the encoder network q(z_i | x_i) (:class:`_Encoder`), the fitted encoder as a
trained estimator (:class:`FittedEncoder`: saved in probinfer's one estimator format, kind
``"amortized_vi"``, read back by ``pi.load(path, model)``), and the posterior of the global sites
that carries it (:class:`EncoderPosterior`).

>>> fit = pi.amortized_vi(target, key=0, local=("z",))           # doctest: +SKIP
>>> fit.estimator.save("encoder.msgpack")                         # doctest: +SKIP
>>> pi.load("encoder.msgpack", model).encode(x_new)["z"]          # (mean, sd)  # doctest: +SKIP
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree
from numpyro.distributions.transforms import biject_to

from probinfer._utils import as_key, need_key
from probinfer.compiler import as_target
from probinfer.errors import DataError, ModelError, ProbinferError
from probinfer.nn import estimator as estimator_file
from probinfer.nn.embeddings import MLPEmbedding, default_width
from probinfer.nn.flows import make_flow
from probinfer.nn.training import train_steps
from probinfer.posterior import Posterior

__all__ = ["EncoderPosterior", "FittedEncoder", "KIND"]

KIND = "amortized_vi"


class _Spec:
    """The model's split into global and local sites, and the per-datum encoder input."""

    def __init__(self, target, local):
        target.check_continuous()
        if not target.data_names:
            raise DataError(
                f"amortized_vi needs the data arguments of '{target.name}' marked (compile with "
                "data=('x',)): the encoder reads one row of them per data point."
            )
        local = (local,) if isinstance(local, str) else tuple(local)
        unknown = [s for s in local if s not in target.latent_sites]
        if unknown or not local:
            raise ModelError(
                f"local site(s) {unknown or list(local)} are not latent sites of '{target.name}' "
                f"(those are {list(target.latent_sites)})."
            )
        n = target.num_data
        for site in local:
            shape = tuple(target.latent_sites[site].shape)
            if not shape or shape[0] != n:
                raise ModelError(
                    f"local site '{site}' has shape {shape}; a local latent has one value per data "
                    f"point, so its leading axis must be the {n} data points of the data plate."
                )
        self.target, self.local, self.num_data = target, local, n
        self.globals = tuple(s for s in target.latent_sites if s not in local)
        tr = target.trace()
        self.transforms = {s: biject_to(tr[s]["fn"].support) for s in local}
        self.local_shapes = {
            s: tuple(self.transforms[s].inverse_shape(tuple(target.latent_sites[s].shape[1:])))
            for s in local
        }
        self.local_dim = sum(int(np.prod(v)) for v in self.local_shapes.values())
        values = {s: jnp.zeros(target.latent_sites[s].shape) for s in self.globals}
        _, self.unravel_global = ravel_pytree(values)
        self.global_dim = sum(int(np.prod(target.latent_sites[s].shape)) for s in self.globals)
        data = target.data
        self.input_dim = sum(int(np.prod(jnp.shape(v)[1:])) for v in data.values())

    def inputs(self, data):
        """Encoder input: the data arguments' rows flattened and concatenated, ``(B, input_dim)``."""
        rows = [
            jnp.reshape(jnp.asarray(data[k], jnp.float32), (jnp.shape(data[k])[0], -1))
            for k in self.target.data_names
        ]
        return jnp.concatenate(rows, axis=1)

    def unravel_local(self, u):
        """``(B, local_dim)`` → ``{site: (B, *unconstrained shape)}``."""
        out, start = {}, 0
        for s, shape in self.local_shapes.items():
            size = int(np.prod(shape))
            out[s] = u[:, start : start + size].reshape((u.shape[0],) + shape)
            start += size
        return out

    def terms(self, theta, u, batch):
        """``(global, per_datum (B,), local_prior (B,))`` at global unconstrained ``theta``
        (global_dim,) and local ``u`` (B, local_dim) for the data rows ``batch``: log p(θ) plus
        the terms outside the data plate, log p(x_i, z_i | θ) of each row, and its part
        log p(z_i | θ) — Jacobians of both maps included."""
        target = self.target
        free = self.unravel_local(u)
        if self.global_dim:
            free.update(self.unravel_global(theta))

        log_probs, tr = target.log_prob_terms(free, data=batch)
        size = u.shape[0]
        total, rows, prior_rows = jnp.zeros(()), jnp.zeros((size,)), jnp.zeros((size,))
        for name, log_prob in log_probs.items():
            if not (tr[name]["is_observed"] or name in free):
                continue
            if name in self.local or name in target.batched_sites:
                if jnp.ndim(log_prob) == 0 or jnp.shape(log_prob)[0] != size:
                    raise ModelError(
                        f"site '{name}' of '{target.name}' is in the data plate but its log "
                        f"probability has shape {jnp.shape(log_prob)}; amortized_vi needs the "
                        "data plate as the leading (outermost) batch axis."
                    )
                row = jnp.reshape(log_prob, (size, -1)).sum(1)
                rows = rows + row
                if name in self.local:
                    prior_rows = prior_rows + row
            else:
                total = total + jnp.sum(log_prob)
        return total, rows, prior_rows


class _Encoder:
    """q(z_i | x_i): ``"gaussian"`` (an MLP's mean and log sd) or a conditional flow on the
    MLP's features. ``sample_and_log_prob(params, key, inputs) -> (u (B, k), log q (B,))``."""

    def __init__(self, spec, flow, hidden=None):
        width = default_width(spec.input_dim)
        hidden = tuple(hidden or (width, width))
        self.flow_kind, self.hidden = flow, hidden  # what a saved file rebuilds it from
        self.flow = None if flow is None else make_flow(flow, spec.local_dim, context_dim=32)
        self.net = MLPEmbedding(2 * spec.local_dim if flow is None else 32, hidden)
        self.dim = spec.local_dim

    def init(self, key, input_dim):
        params = {"net": self.net.init(key, jnp.zeros((1, input_dim)))}
        if self.flow is not None:
            params["flow"] = self.flow.init(jax.random.fold_in(key, 1))
        return params

    def gaussian(self, params, inputs):
        out = self.net.apply(params["net"], inputs)
        return out[:, : self.dim], jnp.clip(out[:, self.dim :], -10.0, 5.0)

    def sample_and_log_prob(self, params, key, inputs):
        if self.flow is None:
            mean, log_sd = self.gaussian(params, inputs)
            eps = jax.random.normal(key, mean.shape)
            u = mean + jnp.exp(log_sd) * eps
            log_q = -0.5 * jnp.sum(eps**2 + 2 * log_sd + jnp.log(2 * jnp.pi), axis=1)
            return u, log_q
        context = self.net.apply(params["net"], inputs)
        return self.flow.sample_and_log_prob(params["flow"], key, inputs.shape[0], context)


class FittedEncoder(estimator_file.Estimator):
    """The encoder q(z_i | x_i) and global guide q(θ) that ``amortized_vi`` fitted: a trained
    estimator whose ``x`` is data rows (``{data argument: (B, …)}``, or the array when there is
    one) and whose answers are the local sites of those rows.

    Attributes:
        spec, encoder, params: the site split, the network and its parameters
            (``{"encoder": …, "guide": …}``); guide: ``"gaussian"`` or ``"point"``;
            settings, diagnostics: what ``amortized_vi`` ran with and measured.
    """

    kind = KIND

    def __init__(self, *, spec, encoder, params, guide, settings, diagnostics):
        self.spec, self.encoder, self.params, self.guide = spec, encoder, params, guide
        self.target = spec.target
        self.settings, self.diagnostics = dict(settings), dict(diagnostics)

    def _inputs(self, data):
        data = data if isinstance(data, dict) else {self.spec.target.data_names[0]: data}
        missing = [k for k in self.spec.target.data_names if k not in data]
        if missing:
            raise DataError(f"data lacks the data argument(s) {missing} the encoder reads.")
        inputs = self.spec.inputs(data)
        if inputs.shape[1] != self.spec.input_dim:
            raise DataError(
                f"the encoder reads {self.spec.input_dim} values per data point; got rows of "
                f"{inputs.shape[1]}."
            )
        return inputs

    def encode(self, data):
        """Gaussian encoder: ``{local site: (mean, sd)}`` of the unconstrained z_i, each
        ``(B, *shape)``, for data rows ``data`` (``{data argument: (B, …)}``, or the array when
        there is one)."""
        if self.encoder.flow is not None:
            raise ProbinferError(
                "encode() gives Gaussian parameters; a flow encoder has none — use sample_local."
            )
        mean, log_sd = self.encoder.gaussian(self.params["encoder"], self._inputs(data))
        means, sds = self.spec.unravel_local(mean), self.spec.unravel_local(jnp.exp(log_sd))
        return {s: (np.asarray(means[s]), np.asarray(sds[s])) for s in self.spec.local}

    def sample_local(self, *, key, data, n):
        """``n`` draws of q(z_i | x_i) for each row: ``{local site: (n, B, *shape)}``,
        constrained."""
        inputs = self._inputs(data)
        keys = jax.random.split(as_key(need_key(key, "sample_local")), int(n))
        u = jax.vmap(
            lambda k: self.encoder.sample_and_log_prob(self.params["encoder"], k, inputs)[0]
        )(keys)
        local = jax.vmap(self.spec.unravel_local)(u)
        return {s: np.asarray(self.spec.transforms[s](v)) for s, v in local.items()}

    def amortization_gap(self, *, key, data, num_steps=500, num_particles=16):
        """Per-datum ELBO of the encoder minus that of a per-datum Gaussian q(z_i) refined from
        it by Adam for ``num_steps`` steps (θ at the guide's mean): ``(gap (B,), refined ELBO
        (B,))``. A gap near 0 means the encoder is as good as per-datum optimisation."""
        if self.encoder.flow is not None:
            raise ProbinferError("amortization_gap refines a Gaussian q; this encoder is a flow.")
        return _gap(self, as_key(key), data, int(num_steps), int(num_particles))

    # -- the estimators' vocabulary ---------------------------------------------------------------

    def sample(self, key, x, n):
        """``n`` draws of the local sites for data rows ``x``: ``{site: (n, B, *shape)}``."""
        return self.sample_local(key=key, data=x, n=n)

    def log_prob(self, theta, x):
        """log q(z_i | x_i) of constrained local values ``theta`` (``{local site: (B, *shape)}``)
        for data rows ``x``: the encoder's density of the unconstrained values minus
        log|det ∂z/∂u| of the constraining maps. Returns (B,)."""
        inputs = self._inputs(x)
        u, log_det = [], 0.0
        for s in self.spec.local:
            value = jnp.asarray(theta[s])
            free = self.spec.transforms[s].inv(value)
            det = self.spec.transforms[s].log_abs_det_jacobian(free, value)
            log_det = log_det + jnp.reshape(det, (value.shape[0], -1)).sum(1)
            u.append(jnp.reshape(free, (value.shape[0], -1)))
        u = jnp.concatenate(u, axis=1)
        if self.encoder.flow is None:
            mean, log_sd = self.encoder.gaussian(self.params["encoder"], inputs)
            log_q = _gaussian_log_q((u - mean) / jnp.exp(log_sd), log_sd)
        else:
            context = self.encoder.net.apply(self.params["encoder"]["net"], inputs)
            log_q = self.encoder.flow.log_prob(self.params["encoder"]["flow"], u, context)
        return np.asarray(log_q - log_det)

    def posterior(self, x, *, key, n=1000):
        """A :class:`~probinfer.Posterior` of ``n`` draws of the local sites of rows ``x`` (one
        chain; each site ``(1, n, B, *shape)``)."""
        return super().posterior(x, key=key, n=n)

    # -- files ------------------------------------------------------------------------------------

    def _meta(self):
        return {
            "target": self.target.name,
            "local": list(self.spec.local),
            "flow": self.encoder.flow_kind,
            "hidden": list(self.encoder.hidden),
            "guide": self.guide,
            "settings": self.settings,
            "diagnostics": self.diagnostics,
        }

    def _arrays(self):
        return {"params": jax.tree.map(np.asarray, self.params)}

    def __repr__(self):
        kind = "Gaussian" if self.encoder.flow is None else f"{self.encoder.flow_kind} flow"
        return f"FittedEncoder({kind} encoder of {list(self.spec.local)} on '{self.target.name}')"


class EncoderPosterior(Posterior):
    """The posterior of the global sites (``num_draws`` draws of q(θ); all equal for a point
    guide) and the fitted encoder (``estimator``, a :class:`FittedEncoder`): :meth:`encode` and
    :meth:`sample_local` on new data rows, :meth:`amortization_gap` on held-out ones. ``save``
    writes the draws (a Posterior file); ``estimator.save`` writes the encoder."""

    def __init__(self, draws, *, estimator, **kwargs):
        super().__init__(draws, **kwargs)
        self.estimator = estimator
        self.spec, self.encoder, self.params = estimator.spec, estimator.encoder, estimator.params

    def encode(self, data):
        """:meth:`FittedEncoder.encode`."""
        return self.estimator.encode(data)

    def sample_local(self, *, key, data, n):
        """:meth:`FittedEncoder.sample_local`."""
        return self.estimator.sample_local(key=key, data=data, n=n)

    def amortization_gap(self, *, key, data, num_steps=500, num_particles=16):
        """:meth:`FittedEncoder.amortization_gap`."""
        return self.estimator.amortization_gap(
            key=key, data=data, num_steps=num_steps, num_particles=num_particles
        )


def _gaussian_log_q(eps, log_sd):
    return -0.5 * jnp.sum(eps**2 + 2 * log_sd + jnp.log(2 * jnp.pi), axis=-1)


def _row_elbo(spec, theta, batch, mean, log_sd, key, num_particles):
    """Per-row ELBO E_q[log p(x_i, z_i | θ) − log q(z_i)] under Gaussian q rows, θ fixed."""
    eps = jax.random.normal(key, (num_particles,) + mean.shape)
    u = mean + jnp.exp(log_sd) * eps
    rows = jax.vmap(lambda u: spec.terms(theta, u, batch)[1])(u)
    return jnp.mean(rows - _gaussian_log_q(eps, log_sd), axis=0)


def _gap(posterior, key, data, num_steps, num_particles):
    """``posterior``: a :class:`FittedEncoder`."""
    spec = posterior.spec
    inputs = posterior._inputs(data)
    batch = data if isinstance(data, dict) else {spec.target.data_names[0]: data}
    batch = {k: jnp.asarray(batch[k]) for k in spec.target.data_names}
    theta = posterior.params["guide"]["loc"]
    mean, log_sd = posterior.encoder.gaussian(posterior.params["encoder"], inputs)
    key_eval, key_fit = jax.random.split(key)

    def loss(q, key, _):  # full batch: no data rows for the trainer to draw
        return -jnp.sum(_row_elbo(spec, theta, batch, q[0], q[1], key, num_particles))

    @jax.jit
    def refine(q):
        return train_steps(loss, q, key=key_fit, num_steps=num_steps, optimizer=optax.adam(1e-2))

    refined = refine((mean, log_sd))
    evaluate = jax.jit(partial(_row_elbo, spec, theta, batch, key=key_eval, num_particles=1024))
    amortized = evaluate(mean, log_sd)
    better = evaluate(*refined)
    return np.asarray(better - amortized), np.asarray(better)


def _global_draws(spec, thetas):
    """Constrained values of the global sites for unconstrained draws ``thetas`` (n, global_dim)."""
    if not spec.global_dim:
        return {}
    tr = spec.target.trace()

    def one(theta):
        free = spec.unravel_global(theta)
        return {s: biject_to(tr[s]["fn"].support)(free[s]) for s in spec.globals}

    return jax.vmap(one)(thetas)


def _loader(path, header, arrays, model, *, model_args=(), model_kwargs=None, data=()):
    if model is None:
        raise DataError(
            f"'{path}' holds an encoder fitted by amortized_vi: pass the model it was fitted "
            "to, pi.load(path, model)."
        )
    target = as_target(model, model_args, model_kwargs, data)
    estimator_file.check_sites(path, header, target)
    meta = header["meta"]
    spec = _Spec(target, tuple(meta["local"]))
    return FittedEncoder(
        spec=spec,
        encoder=_Encoder(spec, meta["flow"], tuple(meta["hidden"])),
        params=jax.tree.map(jnp.asarray, arrays["params"]),
        guide=meta["guide"],
        settings=meta["settings"],
        diagnostics=meta["diagnostics"],
    )


estimator_file.register(KIND, _loader)
