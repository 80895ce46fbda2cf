"""Normalizing flows: a standard normal base pushed through layers (:mod:`.layers`) and a final
elementwise affine map,

    x = f(z; θ),  z ~ N(0, I_d),   log q(x) = log N(z) − log|det ∂f/∂z|.

:func:`make_flow` builds one by name — ``"planar"``, ``"radial"``, ``"realnvp"`` (affine
coupling), ``"iaf"``, ``"maf"``, ``"nsf"`` (rational-quadratic spline coupling), ``"nsf_ar"``
(autoregressive rational-quadratic spline, MAF direction) — and returns a
:class:`Flow`, whose parameters are a pytree and whose methods are pure functions of them:

>>> flow = make_flow("nsf", dim=2)
>>> params = flow.init(jax.random.PRNGKey(0))
>>> x, log_q = flow.sample_and_log_prob(params, jax.random.PRNGKey(1), 100)
>>> np.allclose(flow.log_prob(params, x), log_q, atol=1e-4)
True

A conditional flow (``context_dim > 0``) takes a context vector (n, c) or (c,) in every call;
its conditioners read it (coupling, autoregressive flows; planar and radial take none).
"""

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from probinfer.errors import DataError
from probinfer.nn import flow_layers as layers

__all__ = ["FLOWS", "Flow", "make_flow", "flow_from_config", "default_layers"]

FLOWS = ("nsf", "nsf_ar", "realnvp", "iaf", "maf", "planar", "radial")


def default_layers(flow, dim):
    """Layers when the user gives none: 32 planar or radial maps (the flows paper's longest
    length), 4 coupling or autoregressive layers (each coordinate transformed at least twice)."""
    return 32 if flow in ("planar", "radial") else 4


def default_hidden(dim):
    """Conditioner widths: two layers of max(32, 4d) units, at most 256."""
    width = int(min(256, max(32, 4 * dim)))
    return (width, width)


class _Stack(nn.Module):
    kind: str
    dim: int
    num_layers: int
    hidden: tuple
    num_bins: int
    bound: float
    activation: str = "gelu"

    def setup(self):
        stack = []
        spline = (self.num_bins, self.bound, self.activation)  # and the conditioners' activation
        for i in range(self.num_layers):
            if self.kind == "planar":
                stack.append(layers.Planar(self.dim))
            elif self.kind == "radial":
                stack.append(layers.Radial(self.dim))
            elif self.kind in ("nsf", "realnvp"):
                transform = "spline" if self.kind == "nsf" else "affine"
                stack.append(layers.Coupling(self.dim, i % 2 == 0, transform, self.hidden, *spline))
            else:
                direction = "iaf" if self.kind == "iaf" else "maf"
                transform = "spline" if self.kind == "nsf_ar" else "affine"
                stack.append(
                    layers.Autoregressive(self.dim, self.hidden, direction, transform, *spline)
                )
                if i < self.num_layers - 1:
                    stack.append(layers.Reverse())
        self.stack = stack
        self.affine = layers.Affine(self.dim)

    def forward(self, z, context=None):
        total = jnp.zeros(z.shape[:-1])
        for layer in [*self.stack, self.affine]:
            z, log_det = layer.forward(z, context)
            total = total + log_det
        return z, total

    def inverse(self, x, context=None):
        total = jnp.zeros(x.shape[:-1])
        for layer in [self.affine, *reversed(self.stack)]:
            x, log_det = layer.inverse(x, context)
            total = total + log_det
        return x, total


class Flow(NamedTuple):
    """A flow by name with its static settings; every method is pure in ``params``."""

    kind: str
    dim: int
    module: _Stack
    context_dim: int = 0

    def init(self, key, loc=None, scale=None):
        """Parameters: every layer near the identity, the final affine map at ``loc`` and
        ``scale`` (d,) (default 0 and 1)."""
        z = jnp.zeros((1, self.dim))
        context = None if not self.context_dim else jnp.zeros((1, self.context_dim))
        params = self.module.init(key, z, context, method=_Stack.forward)
        affine = dict(params["params"]["affine"])
        if loc is not None:
            affine["loc"] = jnp.asarray(loc, jnp.float32) * jnp.ones(self.dim)
        if scale is not None:
            affine["log_scale"] = jnp.log(jnp.asarray(scale, jnp.float32)) * jnp.ones(self.dim)
        return {"params": {**params["params"], "affine": affine}}

    def _context(self, context, n):
        if not self.context_dim:
            if context is not None:
                raise DataError(f"this {self.kind} flow is not conditional; pass no context.")
            return None
        if context is None:
            raise DataError(f"this conditional flow needs a context of size {self.context_dim}.")
        context = jnp.asarray(context)
        return jnp.broadcast_to(context, (n, self.context_dim))

    def forward(self, params, z, context=None):
        """``(x, log|det ∂x/∂z|)`` for base points ``z`` (n, d)."""
        return self.module.apply(
            params, z, self._context(context, z.shape[0]), method=_Stack.forward
        )

    def inverse(self, params, x, context=None):
        """``(z, log|det ∂z/∂x|)`` for points ``x`` (n, d)."""
        return self.module.apply(
            params, x, self._context(context, x.shape[0]), method=_Stack.inverse
        )

    def sample_and_log_prob(self, params, key, n, context=None):
        """``n`` draws (n, d) and their log densities (n,)."""
        z = jax.random.normal(key, (n, self.dim))
        x, log_det = self.forward(params, z, context)
        return x, _log_normal(z) - log_det

    def sample(self, params, key, n, context=None):
        """``n`` draws (n, d) of the flow."""
        return self.sample_and_log_prob(params, key, n, context)[0]

    def log_prob(self, params, x, context=None):
        """log q(x) for points ``x`` (n, d)."""
        z, log_det = self.inverse(params, jnp.atleast_2d(x), context)
        return _log_normal(z) + log_det

    def training_loss(self, params, key, x, context=None):
        """Mean −log q(x | context) over the rows of ``x``: maximum likelihood (an amortized
        estimator's loss; :class:`~probinfer.nn.flow_matching.FlowMatching` regresses a field)."""
        return -jnp.mean(self.log_prob(params, x, context))

    def config(self):
        """The JSON-able settings :func:`flow_from_config` rebuilds this flow from (estimator
        files store them beside the parameters)."""
        return {
            "kind": self.kind,
            "context_dim": self.context_dim,
            "num_layers": self.module.num_layers,
            "hidden": list(self.module.hidden),
            "num_bins": self.module.num_bins,
            "bound": self.module.bound,
            "activation": self.module.activation,
        }


def _log_normal(z):
    return -0.5 * jnp.sum(z**2, -1) - 0.5 * z.shape[-1] * jnp.log(2 * jnp.pi)


def make_flow(flow="nsf", dim=2, *, num_layers=None, hidden=None, num_bins=8, bound=5.0,
              context_dim=0, activation="gelu"):  # fmt: skip
    """A :class:`Flow` of kind ``flow`` (one of :data:`FLOWS`) on R^dim.

    Args:
        num_layers: None for :func:`default_layers`.
        hidden: conditioner widths (coupling and autoregressive flows); None for
            :func:`default_hidden`.
        num_bins, bound: the spline's bins and its interval [−bound, bound] (identity outside;
            the final affine layer standardises, so 5 covers ±5 sd).
        context_dim: size of the context vector of a conditional flow (0: unconditional).
        activation: the conditioners' activation, ``"gelu"`` or ``"tanh"``
            (:data:`~probinfer.nn.flow_layers.ACTIVATIONS`).
    """
    if flow == "flow_matching" and context_dim:  # a conditional estimator's, not flow_vi's
        from probinfer.nn.flow_matching import make_flow_matching

        return make_flow_matching(dim, context_dim, hidden=hidden)
    if flow not in FLOWS:
        raise DataError(f"flow must be one of {FLOWS}, got '{flow}'.")
    if context_dim and flow in ("planar", "radial"):
        raise DataError(f"{flow} flows have no conditioner, so they cannot take a context.")
    if activation not in layers.ACTIVATIONS:
        raise DataError(
            f"activation must be one of {list(layers.ACTIVATIONS)}, got {activation!r}."
        )
    module = _Stack(
        flow,
        int(dim),
        int(default_layers(flow, dim) if num_layers is None else num_layers),
        tuple(hidden or default_hidden(dim)),
        int(num_bins),
        float(bound),
        activation,
    )
    return Flow(flow, int(dim), module, int(context_dim))


def flow_from_config(config, dim):
    """The :class:`Flow` on R^dim that :meth:`Flow.config` describes."""
    if config["kind"] == "flow_matching":
        from probinfer.nn.flow_matching import make_flow_matching

        return make_flow_matching(
            dim,
            config["context_dim"],
            hidden=tuple(config["hidden"]),
            num_ode_steps=config["num_ode_steps"],
        )
    return make_flow(
        config["kind"],
        dim,
        num_layers=config["num_layers"],
        hidden=tuple(config["hidden"]),
        num_bins=config["num_bins"],
        bound=config["bound"],
        context_dim=config["context_dim"],
        activation=config.get("activation", "gelu"),  # files before the option: GELU
    )
