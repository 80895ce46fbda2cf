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
* :class:`Coupling`: one half of the coordinates transformed elementwise with parameters from an
  MLP of the other half (and the context): affine (RealNVP, Dinh et al. 2017) or a
  rational-quadratic spline (Durkan et al. 2019, :func:`rational_quadratic`; identity outside
  [−B, B]). Written here rather than on distrax's ``MaskedCoupling``: splitting the halves
  computes the conditioner's output and the spline for the transformed half only, which with our
  spline made a default nsf flow_vi step 1.8–2.3× cheaper on a CPU (U1, eight schools, the
  31-D breast-cancer regression; the spline alone is 1.2–1.9× faster than distrax's).
* :class:`Autoregressive`: an affine or spline autoregressive layer with a MADE conditioner
  (Germain et al. 2015): IAF (Kingma et al. 2016; sampling in one pass, density by d passes) or
  MAF (Papamakarios et al. 2017; density in one pass, sampling by d passes); with the spline,
  MAF-direction, Durkan et al.'s autoregressive neural spline flow.
* :class:`Reverse` (a permutation between autoregressive layers) and :class:`Affine` (the
  elementwise location–scale that ends every flow; the runner starts it at the Target's scale).

Every conditioner's last layer starts at zero, so a new coupling or autoregressive layer is the
identity.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "rational_quadratic",
    "Planar",
    "Radial",
    "Coupling",
    "Autoregressive",
    "Reverse",
    "Affine",
    "MLP",
    "MADE",
]

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


_MIN_BIN = 1e-4  # smallest bin width and height, and smallest knot slope (distrax's default)


def _spline_knots(raw, bound):
    """Knots of a rational-quadratic spline on [−B, B] from unconstrained ``raw`` (..., 3K − 1):
    K widths and K heights (softmax, each at least ``_MIN_BIN``) and the K − 1 inner slopes
    (softplus, at least ``_MIN_BIN``; raw 0 gives slope 1); the end slopes are 1, so the spline
    joins the identity outside the interval. Returns (..., K + 1, 3): x, y and slope per knot."""
    k = (raw.shape[-1] + 1) // 3
    span = 2.0 * bound - k * _MIN_BIN
    widths = jax.nn.softmax(raw[..., :k], -1) * span + _MIN_BIN
    heights = jax.nn.softmax(raw[..., k : 2 * k], -1) * span + _MIN_BIN
    offset = np.log(np.expm1(1.0 - _MIN_BIN))
    slopes = jax.nn.softplus(raw[..., 2 * k :] + offset) + _MIN_BIN
    pad = [(0, 0)] * (raw.ndim - 1) + [(1, 0)]
    knots_x = jnp.pad(jnp.cumsum(widths, -1), pad) - bound
    knots_y = jnp.pad(jnp.cumsum(heights, -1), pad) - bound
    ones = jnp.ones(raw.shape[:-1] + (1,), raw.dtype)
    return jnp.stack([knots_x, knots_y, jnp.concatenate([ones, slopes, ones], -1)], -1)


def rational_quadratic(x, raw, bound, inverse=False):
    """Elementwise monotone rational-quadratic spline (Durkan et al. 2019, "Neural Spline Flows",
    eqs. 4–8) on [−B, B], the identity outside; returns ``(y, log|dy/dx|)`` of the map applied
    (the inverse's when ``inverse``). ``x``: (...); ``raw``: (..., 3K − 1) unconstrained
    parameters (:func:`_spline_knots`; all zeros is the identity).

    In bin k with knots (x_k, y_k), slopes δ_k, s = (y_{k+1} − y_k)/(x_{k+1} − x_k) and
    ξ = (x − x_k)/(x_{k+1} − x_k):
    y = y_k + (y_{k+1} − y_k)[s ξ² + δ_k ξ(1 − ξ)] / [s + (δ_{k+1} + δ_k − 2s) ξ(1 − ξ)];
    the inverse solves that quadratic in ξ by the root 2c / (−b − √(b² − 4ac)). Points outside
    the interval are evaluated at 0 and replaced afterwards (the "double where"), so their
    gradients are exactly the identity's, never NaN (ALGORITHMS §6). Tested against distrax's
    ``RationalQuadraticSpline`` with the same knots.
    """
    knots = _spline_knots(raw, bound)
    inside = jnp.abs(x) < bound
    safe = jnp.where(inside, x, 0.0)
    edges = knots[..., 1:-1, 1 if inverse else 0]
    index = jnp.sum(safe[..., None] >= edges, -1)[..., None, None]
    left = jnp.take_along_axis(knots, index, -2)[..., 0, :]
    right = jnp.take_along_axis(knots, index + 1, -2)[..., 0, :]
    width, height = right[..., 0] - left[..., 0], right[..., 1] - left[..., 1]
    slope = height / width
    d0, d1 = left[..., 2], right[..., 2]
    curvature = d0 + d1 - 2.0 * slope
    if inverse:
        dy = safe - left[..., 1]
        a = height * (slope - d0) + dy * curvature
        b = height * d0 - dy * curvature
        c = -slope * dy
        xi = 2.0 * c / (-b - jnp.sqrt(jnp.maximum(b * b - 4.0 * a * c, 0.0)))
        xi = jnp.clip(xi, 0.0, 1.0)
    else:
        xi = jnp.clip((safe - left[..., 0]) / width, 0.0, 1.0)
    middle = xi * (1.0 - xi)
    denominator = slope + curvature * middle
    log_det = (
        2.0 * jnp.log(slope)
        + jnp.log(d1 * xi**2 + 2.0 * slope * middle + d0 * (1.0 - xi) ** 2)
        - 2.0 * jnp.log(denominator)
    )
    if inverse:
        out = left[..., 0] + xi * width
        log_det = -log_det
    else:
        out = left[..., 1] + height * (slope * xi**2 + d0 * middle) / denominator
    return jnp.where(inside, out, x), jnp.where(inside, log_det, 0.0)


def _elementwise(v, raw, transform, bound, inverse):
    """``(T(v), Σ log|T'|)`` over the last axis: ``"affine"``, T(v) = v exp(s) + m with
    s = 2 tanh(raw₁ / 2) (bounded log-scale) and m = raw₀, or ``"spline"``
    (:func:`rational_quadratic`); ``raw`` (..., d, per_dim); the inverse map when ``inverse``."""
    if transform == "spline":
        out, log_det = rational_quadratic(v, raw, bound, inverse)
        return out, jnp.sum(log_det, -1)
    shift, log_scale = raw[..., 0], 2.0 * jnp.tanh(raw[..., 1] / 2.0)
    if inverse:
        return (v - shift) * jnp.exp(-log_scale), -jnp.sum(log_scale, -1)
    return v * jnp.exp(log_scale) + shift, jnp.sum(log_scale, -1)


class Coupling(nn.Module):
    """Coordinates [0, ⌊d/2⌋) and [⌊d/2⌋, d): ``flip=False`` transforms the second half given
    the first, ``flip=True`` the first given the second (flows alternate them)."""

    dim: int
    flip: bool
    transform: str  # "affine" or "spline"
    hidden: tuple
    num_bins: int = 8
    bound: float = 5.0

    def setup(self):
        half = self.dim // 2
        self.size = half if self.flip else self.dim - half
        self.per_dim = 2 if self.transform == "affine" else 3 * self.num_bins - 1
        if self.size:
            self.net = MLP(self.hidden, self.size * self.per_dim)

    def _split(self, x):
        half = self.dim // 2
        first, second = x[..., :half], x[..., half:]
        return (second, first) if self.flip else (first, second)

    def _apply(self, x, context, inverse):
        if not self.size:
            return x, jnp.zeros(x.shape[:-1])
        given, moved = self._split(x)
        features = _with_context(given, context)
        if features.shape[-1] == 0:  # d = 1 and no context: a learned map of nothing
            features = jnp.zeros(x.shape[:-1] + (1,), x.dtype)
        raw = self.net(features).reshape(moved.shape + (self.per_dim,))
        out, log_det = _elementwise(moved, raw, self.transform, self.bound, inverse)
        joined = (out, given) if self.flip else (given, out)
        return jnp.concatenate(joined, -1), log_det

    def forward(self, x, context=None):
        return self._apply(x, context, inverse=False)

    def inverse(self, y, context=None):
        return self._apply(y, context, inverse=True)


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
    """Autoregressive layer with a MADE conditioner: x_i = T(z_i; θ_i), θ_i from the coordinates
    before i. ``direction="iaf"``: θ from z_<i (forward in one pass); ``"maf"``: from x_<i
    (inverse in one pass). ``transform="affine"``: x_i = z_i exp(s_i) + m_i; ``"spline"``: the
    rational-quadratic spline of :func:`rational_quadratic` (Durkan et al. 2019's autoregressive
    neural spline flow)."""

    dim: int
    hidden: tuple
    direction: str = "iaf"
    transform: str = "affine"
    num_bins: int = 8
    bound: float = 5.0

    def setup(self):
        self.per_dim = 2 if self.transform == "affine" else 3 * self.num_bins - 1
        self.made = MADE(self.dim, self.hidden, self.per_dim)

    def _step(self, v, given, context, inverse):
        """The map of ``v`` with parameters read from ``given`` (v itself, or the solution)."""
        return _elementwise(v, self.made(given, context), self.transform, self.bound, inverse)

    def _one_pass(self, v, context, inverse):
        return self._step(v, v, context, inverse)

    def _sequential(self, v, context, inverse):
        """Solve the autoregressive map by d passes (exact after the last; d is static). The
        passes are unrolled: flax modules cannot be called inside ``lax.fori_loop``."""
        out = jnp.zeros_like(v)
        for _ in range(self.dim):
            out = self._step(v, out, context, inverse)[0]
        return out, self._step(v, out, context, inverse)[1]

    def forward(self, z, context=None):
        if self.direction == "iaf":
            return self._one_pass(z, context, inverse=False)
        return self._sequential(z, context, inverse=False)

    def inverse(self, x, context=None):
        if self.direction == "maf":
            return self._one_pass(x, context, inverse=True)
        return self._sequential(x, context, inverse=True)


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
