"""Flow layers on batches ``x`` (n, d), each a flax module with ``forward(x, context)`` and
``inverse(y, context)`` returning ``(output, log|det J|)`` (the log-determinant of the map
applied, shape (n,)). ``context`` (n, c) or None enters the conditioners (conditional flows for
amortized inference); planar and radial layers take none.

* :class:`Planar` (Rezende & Mohamed 2015): f(z) = z + û tanh(wᵀz + b), with
  û = u + [m(wᵀu) − wᵀu] w / ‖w‖², m(a) = −1 + softplus(a), so wᵀû > −1 and f is invertible;
  log|det J| = log|1 + (1 − tanh²(wᵀz + b)) wᵀû|. No closed-form inverse: wᵀz solves a
  monotone scalar equation, found by bisection.
* :class:`Radial`: f(z) = z + β h(r)(z − z₀), h = 1/(α + r), r = ‖z − z₀‖, α = softplus(α̃),
  β = −α + softplus(β̃); det J = (1 + βh)^{d−1}(1 + βh − βr h²). Inverse in closed form (r solves
  a quadratic).
* :class:`Coupling`: distrax's ``MaskedCoupling`` with an affine (RealNVP, Dinh et al. 2017) or
  rational-quadratic spline (Durkan et al. 2019, identity outside [−B, B]) transform, its
  parameters from an MLP of the unmasked coordinates (and the context).
* :class:`Autoregressive`: an affine autoregressive layer with a MADE conditioner (Germain et al.
  2015): IAF (Kingma et al. 2016; sampling in one pass, density by d passes) or MAF
  (Papamakarios et al. 2017; density in one pass, sampling by d passes).
* :class:`Reverse` (a permutation between autoregressive layers) and :class:`Affine` (the
  elementwise location–scale that ends every flow; the runner starts it at the Target's scale).

Every conditioner's last layer starts at zero, so a new coupling or autoregressive layer is the
identity.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from probinfer.inference.flows import _distrax

__all__ = ["Planar", "Radial", "Coupling", "Autoregressive", "Reverse", "Affine", "MLP", "MADE"]

_BISECTIONS = 60


def _with_context(x, context):
    if context is None:
        return x
    context = jnp.broadcast_to(context, x.shape[:-1] + context.shape[-1:])
    return jnp.concatenate([x, context], -1)


class MLP(nn.Module):
    """Dense layers with GELU; the output layer starts at zero."""

    hidden: tuple
    out: int

    @nn.compact
    def __call__(self, x):
        for width in self.hidden:
            x = nn.gelu(nn.Dense(width)(x))
        return nn.Dense(self.out, kernel_init=nn.initializers.zeros)(x)


class Planar(nn.Module):
    dim: int

    def setup(self):
        init = nn.initializers.normal(0.1)
        self.w = self.param("w", init, (self.dim,))
        self.u = self.param("u", init, (self.dim,))
        self.b = self.param("b", nn.initializers.zeros, ())

    def _u_hat(self):
        wu = self.w @ self.u
        m = -1.0 + jax.nn.softplus(wu)
        return self.u + (m - wu) * self.w / (self.w @ self.w + 1e-12)

    def forward(self, x, context=None):
        u_hat = self._u_hat()
        a = jnp.tanh(x @ self.w + self.b)
        y = x + a[:, None] * u_hat
        return y, jnp.log(jnp.abs(1.0 + (1.0 - a**2) * (self.w @ u_hat)))

    def inverse(self, y, context=None):
        u_hat = self._u_hat()
        c = self.w @ u_hat  # > −1: s ↦ s + c tanh(s + b) is increasing
        target = y @ self.w
        spread = jnp.abs(c) + 1e-6

        def halve(_, bounds):
            lo, hi = bounds
            mid = 0.5 * (lo + hi)
            above = mid + c * jnp.tanh(mid + self.b) > target
            return jnp.where(above, lo, mid), jnp.where(above, mid, hi)

        lo, hi = jax.lax.fori_loop(0, _BISECTIONS, halve, (target - spread, target + spread))
        s = 0.5 * (lo + hi)  # wᵀx
        a = jnp.tanh(s + self.b)
        x = y - a[:, None] * u_hat
        return x, -jnp.log(jnp.abs(1.0 + (1.0 - a**2) * c))


class Radial(nn.Module):
    dim: int

    def setup(self):
        self.z0 = self.param("z0", nn.initializers.normal(1.0), (self.dim,))
        self.alpha_raw = self.param("alpha_raw", nn.initializers.zeros, ())
        self.beta_raw = self.param("beta_raw", nn.initializers.normal(0.1), ())

    def _alpha_beta(self):
        alpha = jax.nn.softplus(self.alpha_raw)
        return alpha, -alpha + jax.nn.softplus(self.beta_raw)

    def _log_det(self, r, alpha, beta):
        h = 1.0 / (alpha + r)
        return (self.dim - 1) * jnp.log1p(beta * h) + jnp.log1p(beta * h - beta * r * h**2)

    def forward(self, x, context=None):
        alpha, beta = self._alpha_beta()
        diff = x - self.z0
        r = jnp.linalg.norm(diff, axis=-1)
        y = x + (beta / (alpha + r))[:, None] * diff
        return y, self._log_det(r, alpha, beta)

    def inverse(self, y, context=None):
        alpha, beta = self._alpha_beta()
        diff = y - self.z0
        r_y = jnp.linalg.norm(diff, axis=-1)
        # r_y = r (1 + β / (α + r))  ⇔  r² + (α + β − r_y) r − α r_y = 0, the root ≥ 0.
        p = alpha + beta - r_y
        r = 0.5 * (-p + jnp.sqrt(p**2 + 4.0 * alpha * r_y))
        x = self.z0 + diff / (1.0 + beta / (alpha + r))[:, None]
        return x, -self._log_det(r, alpha, beta)


class Coupling(nn.Module):
    """``mask`` (d,) bools: True coordinates pass unchanged and condition the others."""

    mask: tuple
    transform: str  # "affine" or "spline"
    hidden: tuple
    num_bins: int = 8
    bound: float = 5.0

    def setup(self):
        dim = len(self.mask)
        self.per_dim = 2 if self.transform == "affine" else 3 * self.num_bins + 1
        self.net = MLP(self.hidden, dim * self.per_dim)

    def _bijector(self, context):
        dim = len(self.mask)

        def conditioner(x):
            out = self.net(_with_context(x, context))
            return out.reshape(x.shape[:-1] + (dim, self.per_dim))

        def inner(params):
            if self.transform == "affine":
                log_scale = 2.0 * jnp.tanh(params[..., 1] / 2.0)
                return _distrax.ScalarAffine(shift=params[..., 0], log_scale=log_scale)
            return _distrax.RationalQuadraticSpline(
                params, -self.bound, self.bound, boundary_slopes="identity"
            )

        return _distrax.MaskedCoupling(jnp.asarray(self.mask), conditioner, inner)

    def forward(self, x, context=None):
        return self._bijector(context).forward_and_log_det(x)

    def inverse(self, y, context=None):
        return self._bijector(context).inverse_and_log_det(y)


class MaskedDense(nn.Module):
    mask: np.ndarray  # (in, out) of 0/1
    zero: bool = False

    @nn.compact
    def __call__(self, x):
        init = nn.initializers.zeros if self.zero else nn.initializers.lecun_normal()
        kernel = self.param("kernel", init, self.mask.shape)
        bias = self.param("bias", nn.initializers.zeros, (self.mask.shape[1],))
        return x @ (kernel * self.mask) + bias


class MADE(nn.Module):
    """Outputs (…, d, k) where output i depends on inputs < i only (and on the context)."""

    dim: int
    hidden: tuple
    per_dim: int

    @nn.compact
    def __call__(self, x, context=None):
        d = self.dim
        degrees_in = np.arange(1, d + 1)
        degrees = [degrees_in]
        for width in self.hidden:
            degrees.append(np.arange(width) % max(1, d - 1) + min(1, d - 1))
        h = x
        for layer, width in enumerate(self.hidden):
            mask = (degrees[layer + 1][None, :] >= degrees[layer][:, None]).astype(np.float32)
            h = MaskedDense(mask)(h)
            if layer == 0 and context is not None:
                h = h + nn.Dense(width)(
                    jnp.broadcast_to(context, x.shape[:-1] + context.shape[-1:])
                )
            h = nn.gelu(h)
        out_degrees = np.repeat(degrees_in, self.per_dim)
        mask = (out_degrees[None, :] > degrees[-1][:, None]).astype(np.float32)
        out = MaskedDense(mask, zero=True)(h)
        return out.reshape(x.shape[:-1] + (d, self.per_dim))


class Autoregressive(nn.Module):
    """Affine autoregressive: x_i = z_i exp(s_i) + m_i. ``kind="iaf"``: (m, s) from z_<i
    (forward in one pass); ``kind="maf"``: from x_<i (inverse in one pass)."""

    dim: int
    hidden: tuple
    kind: str = "iaf"

    def setup(self):
        self.made = MADE(self.dim, self.hidden, 2)

    def _params(self, v, context):
        out = self.made(v, context)
        return out[..., 0], 2.0 * jnp.tanh(out[..., 1] / 2.0)

    def _one_pass(self, v, context, sign):
        shift, log_scale = self._params(v, context)
        if sign > 0:
            return v * jnp.exp(log_scale) + shift, jnp.sum(log_scale, -1)
        return (v - shift) * jnp.exp(-log_scale), -jnp.sum(log_scale, -1)

    def _sequential(self, v, context, sign):
        """Solve the autoregressive map by d passes (exact after the last; d is static). The
        passes are unrolled: flax modules cannot be called inside ``lax.fori_loop``."""
        out = jnp.zeros_like(v)
        for _ in range(self.dim):
            shift, log_scale = self._params(out, context)
            out = v * jnp.exp(log_scale) + shift if sign > 0 else (v - shift) * jnp.exp(-log_scale)
        _, log_scale = self._params(out, context)
        return out, sign * jnp.sum(log_scale, -1)

    def forward(self, z, context=None):
        if self.kind == "iaf":
            return self._one_pass(z, context, +1)
        return self._sequential(z, context, +1)

    def inverse(self, x, context=None):
        if self.kind == "maf":
            return self._one_pass(x, context, -1)
        return self._sequential(x, context, -1)


class Reverse(nn.Module):
    def forward(self, x, context=None):
        return x[..., ::-1], jnp.zeros(x.shape[:-1])

    def inverse(self, y, context=None):
        return y[..., ::-1], jnp.zeros(y.shape[:-1])


class Affine(nn.Module):
    """x = loc + exp(log_scale) ⊙ y, elementwise."""

    dim: int

    def setup(self):
        self.loc = self.param("loc", nn.initializers.zeros, (self.dim,))
        self.log_scale = self.param("log_scale", nn.initializers.zeros, (self.dim,))

    def forward(self, y, context=None):
        return self.loc + jnp.exp(self.log_scale) * y, jnp.broadcast_to(
            jnp.sum(self.log_scale), y.shape[:-1]
        )

    def inverse(self, x, context=None):
        return (x - self.loc) * jnp.exp(-self.log_scale), jnp.broadcast_to(
            -jnp.sum(self.log_scale), x.shape[:-1]
        )
