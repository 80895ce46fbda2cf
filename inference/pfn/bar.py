"""The bar ("Riemann") distribution, the output head of a PFN (Müller et al. 2022, "Transformers Can
Do Bayesian Inference", §4; ALGORITHMS §2).

The real line is cut at ``borders`` b_0 < b_1 < … < b_K into K buckets holding equal shares of a
large sample of prior y values. With p = softmax(logits), the density is

* p_k / (b_{k+1} − b_k) on an inner bucket k = 1, …, K−2;
* full support: the outer buckets become half-normal tails anchored at the inner borders,
  p_0 · HalfNormal(b_1 − y; s_0) for y < b_1 and p_{K−1} · HalfNormal(y − b_{K−1}; s_{K−1}) for
  y > b_{K−1}, each scale chosen so the tail's median equals its bucket's width
  (s = width / Φ⁻¹(0.75)).

Mean, variance, CDF and quantiles follow in closed form from this piecewise form; ``sample``
inverts the CDF. Every method is vectorised over the leading (batch) axes of ``logits``.

>>> bar = BarDistribution(jnp.linspace(-3.0, 3.0, 11), jnp.zeros(10))
>>> float(bar.cdf(0.0))
0.5
"""

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from probinfer.errors import DataError

__all__ = ["BarDistribution", "borders_from_samples"]

_HALF_NORMAL_MEDIAN = 0.6744897501960817  # Φ⁻¹(0.75): the median of a unit half-normal


def borders_from_samples(y, num_buckets):
    """``num_buckets + 1`` borders holding equal shares of the sample ``y`` (its quantiles; the
    outer two are the sample's extremes). Raises when the sample has too few distinct values."""
    y = np.asarray(y, np.float64).reshape(-1)
    y = y[np.isfinite(y)]
    borders = np.quantile(y, np.linspace(0.0, 1.0, int(num_buckets) + 1))
    if y.size < 2 * num_buckets or np.any(np.diff(borders) <= 0):
        raise DataError(
            f"cannot cut {y.size} prior y values into {num_buckets} buckets of positive width "
            "(too few distinct values); draw more prior data sets or use fewer buckets."
        )
    return borders.astype(np.float32)


@flax.struct.dataclass
class BarDistribution:
    """A bar distribution with half-normal tails.

    Attributes:
        borders: ``(K + 1,)`` increasing bucket borders.
        logits: ``(..., K)`` unnormalised log bucket probabilities; the leading axes are batch
            axes (e.g. test points, or data sets × test points).

    Example:
        >>> bar = BarDistribution(jnp.linspace(-1.0, 1.0, 5), jnp.zeros((3, 4)))
        >>> bar.log_prob(jnp.zeros(3)).shape, bar.sample(jax.random.PRNGKey(0), 7).shape
        ((3,), (7, 3))
    """

    borders: jax.Array
    logits: jax.Array

    @property
    def probs(self):
        """``(..., K)`` bucket probabilities."""
        return jax.nn.softmax(self.logits, axis=-1)

    @property
    def batch_shape(self):
        return self.logits.shape[:-1]

    def _aligned(self, y, per_bucket):
        """``y`` and ``per_bucket (..., K)`` broadcast against each other."""
        y = jnp.asarray(y, per_bucket.dtype)
        shape = jnp.broadcast_shapes(y.shape, per_bucket.shape[:-1])
        return jnp.broadcast_to(y, shape), jnp.broadcast_to(
            per_bucket, shape + per_bucket.shape[-1:]
        )

    def _parts(self):
        widths = jnp.diff(self.borders)
        scales = widths[jnp.array([0, -1])] / _HALF_NORMAL_MEDIAN
        return widths, scales

    def log_prob(self, y):
        """Log density at ``y`` (broadcast against the batch shape)."""
        widths, (s_left, s_right) = self._parts()
        y, log_p = self._aligned(y, jax.nn.log_softmax(self.logits, axis=-1))
        k = jnp.clip(jnp.searchsorted(self.borders, y, side="right") - 1, 1, widths.size - 2)
        inner = jnp.take_along_axis(log_p, k[..., None], -1)[..., 0] - jnp.log(widths[k])
        left = log_p[..., 0] + _half_normal_log_pdf(self.borders[1] - y, s_left)
        right = log_p[..., -1] + _half_normal_log_pdf(y - self.borders[-2], s_right)
        return jnp.where(y < self.borders[1], left, jnp.where(y > self.borders[-2], right, inner))

    def cdf(self, y):
        """P(Y ≤ y) (broadcast against the batch shape)."""
        widths, (s_left, s_right) = self._parts()
        y, p = self._aligned(y, self.probs)
        below = jnp.cumsum(p, -1) - p  # mass of the buckets left of each bucket
        k = jnp.clip(jnp.searchsorted(self.borders, y, side="right") - 1, 1, widths.size - 2)
        take = lambda a: jnp.take_along_axis(a, k[..., None], -1)[..., 0]  # noqa: E731
        inner = take(below) + take(p) * (y - self.borders[k]) / widths[k]
        left = p[..., 0] * jax.scipy.special.erfc((self.borders[1] - y) / (s_left * jnp.sqrt(2)))
        right = 1.0 - p[..., -1] * jax.scipy.special.erfc(
            (y - self.borders[-2]) / (s_right * jnp.sqrt(2))
        )
        return jnp.where(y < self.borders[1], left, jnp.where(y > self.borders[-2], right, inner))

    def quantile(self, q):
        """The y with P(Y ≤ y) = ``q`` (broadcast against the batch shape), q in (0, 1)."""
        widths, (s_left, s_right) = self._parts()
        q, p = self._aligned(q, self.probs)
        upper = jnp.cumsum(p, -1)
        k = jnp.clip(jnp.sum(upper <= q[..., None], -1), 1, widths.size - 2)
        take = lambda a: jnp.take_along_axis(a, k[..., None], -1)[..., 0]  # noqa: E731
        fraction = (q - (take(upper) - take(p))) / jnp.maximum(take(p), 1e-30)
        inner = self.borders[k] + jnp.clip(fraction, 0.0, 1.0) * widths[k]
        p_left, p_right = p[..., 0], p[..., -1]
        left = self.borders[1] - s_left * jnp.sqrt(2) * jax.scipy.special.erfinv(
            jnp.clip(1.0 - q / jnp.maximum(p_left, 1e-30), 0.0, 1.0 - 1e-7)
        )
        right = self.borders[-2] + s_right * jnp.sqrt(2) * jax.scipy.special.erfinv(
            jnp.clip(1.0 - (1.0 - q) / jnp.maximum(p_right, 1e-30), 0.0, 1.0 - 1e-7)
        )
        return jnp.where(q < p_left, left, jnp.where(q > 1.0 - p_right, right, inner))

    def mean(self):
        """E[Y], shape ``batch_shape``."""
        widths, (s_left, s_right) = self._parts()
        p = self.probs
        middles = 0.5 * (self.borders[1:] + self.borders[:-1])
        half = jnp.sqrt(2.0 / jnp.pi)
        middles = middles.at[0].set(self.borders[1] - s_left * half)
        middles = middles.at[-1].set(self.borders[-2] + s_right * half)
        return jnp.sum(p * middles, -1)

    def variance(self):
        """Var[Y], shape ``batch_shape``."""
        widths, (s_left, s_right) = self._parts()
        p = self.probs
        middles = 0.5 * (self.borders[1:] + self.borders[:-1])
        second = middles**2 + widths**2 / 12.0
        half = jnp.sqrt(2.0 / jnp.pi)
        b1, bk = self.borders[1], self.borders[-2]
        second = second.at[0].set(b1**2 - 2 * b1 * s_left * half + s_left**2)
        second = second.at[-1].set(bk**2 + 2 * bk * s_right * half + s_right**2)
        mean = self.mean()
        return jnp.maximum(jnp.sum(p * second, -1) - mean**2, 0.0)

    def sample(self, key, n):
        """``(n, *batch_shape)`` draws (inverse CDF of uniforms)."""
        u = jax.random.uniform(key, (int(n),) + self.batch_shape, minval=1e-6, maxval=1.0 - 1e-6)
        return jax.vmap(self.quantile)(u)

    def __getitem__(self, index):
        """The bar distributions of ``logits[index]`` (indexing the batch axes)."""
        return BarDistribution(self.borders, self.logits[index])


def _half_normal_log_pdf(t, scale):
    return 0.5 * jnp.log(2.0 / jnp.pi) - jnp.log(scale) - 0.5 * (t / scale) ** 2
