"""Stein variational directions: the RKHS kernels (RBF with the median heuristic, IMQ) and the
SVGD direction, computed in row blocks of matrix products.

SVGD (Liu & Wang 2016) moves every particle along

    φ(x_i) = (1/N) Σ_j [ k(x_j, x_i) ∇ log π(x_j) + ∇_{x_j} k(x_j, x_i) ],

the steepest descent direction of KL(q ‖ π) in the unit ball of the kernel's RKHS. For a radial
kernel k(x, y) = κ(‖x − y‖²), ``∇_{x_j} k(x_j, x_i) = g_ij (x_i − x_j)`` with ``g = −2κ'``, so

    φ = ( K S + diag(G 1) X − G X ) / N,

three N × N matrix products (S: the scores). Rows of φ are computed ``block_size`` at a time, so
10⁴ particles need N · block_size kernel entries at once, not N².

Kernels (``stein_kernel``): ``"rbf"`` — exp(−‖x − y‖² / h) with the median heuristic
h = median(‖x_i − x_j‖²) / log(N + 1) (Liu & Wang; ALGORITHMS §3 writes it as 2h'² with
h'² = 0.5 · median / log(N + 1)); ``"imq"`` — (1 + ‖x − y‖² / ℓ²)^(−1/2) with ℓ the median
distance (heavier tails: particles far apart still interact).
"""

import jax
import jax.numpy as jnp

from probinfer.diagnostics import ksd, median_squared_distance
from probinfer.errors import DataError

BLOCK = 1024  # particles per row block of the N × N kernel work

__all__ = [
    "KERNELS",
    "BLOCK",
    "bandwidth",
    "stein_direction",
    "sharded_direction",
    "particle_scores",
    "ksd_descent",
]

KERNELS = ("rbf", "imq")
_MEDIAN_POINTS = 1000


def bandwidth(x, stein_kernel):
    """The kernel's scale for particles ``x`` (N, d): h for RBF, ℓ² for IMQ (from at most the
    first 1,000 particles; 1 when they all coincide)."""
    median = median_squared_distance(x, _MEDIAN_POINTS)
    if stein_kernel == "rbf":
        return median / jnp.log(x.shape[0] + 1.0)
    return median


def _kernel_and_gradient(squared, scale, stein_kernel):
    """k and g = −2 κ'(r²) for squared distances (any shape)."""
    if stein_kernel == "rbf":
        k = jnp.exp(-squared / scale)
        return k, 2.0 * k / scale
    u = 1.0 + squared / scale
    k = u**-0.5
    return k, k / (u * scale)


def stein_direction(x, scores, scale, stein_kernel="rbf", block_size=1024, rows=None):
    """φ(x_i) for every particle: (N, d), from particles ``x`` (N, d), their scores ∇ log π (N, d)
    and the kernel scale (:func:`bandwidth`); with ``rows`` (M, d), φ at those points only (the
    sum still runs over all N particles: one device's share of a sharded run).

    >>> phi = stein_direction(x, jax.vmap(jax.grad(log_p))(x), bandwidth(x, "rbf"))  # doctest: +SKIP
    """
    if stein_kernel not in KERNELS:
        raise DataError(f"stein_kernel must be one of {KERNELS}, got '{stein_kernel}'.")
    n, d = x.shape
    rows = x if rows is None else rows
    m = rows.shape[0]
    block_size = int(min(block_size, m))
    num_blocks = -(-m // block_size)
    pad = num_blocks * block_size - m
    padded = jnp.concatenate([rows, jnp.zeros((pad, d), x.dtype)])
    norms = jnp.sum(x * x, 1)

    def rows(start):
        xb = jax.lax.dynamic_slice_in_dim(padded, start, block_size)
        squared = jnp.maximum(jnp.sum(xb * xb, 1)[:, None] + norms[None] - 2 * xb @ x.T, 0.0)
        k, g = _kernel_and_gradient(squared, scale, stein_kernel)
        return (k @ scores + jnp.sum(g, 1, keepdims=True) * xb - g @ x) / n

    phi = jax.lax.map(rows, jnp.arange(num_blocks) * block_size)
    return phi.reshape(-1, d)[:m]


def sharded_direction(stein_kernel, sharding):
    """``(x, scores, scale) -> φ``: on one device the blocked sum; over several, every device
    gathers all particles and scores once and computes φ for its own rows."""
    if sharding is None:
        return lambda x, s, scale: stein_direction(x, s, scale, stein_kernel, BLOCK)
    spec = jax.sharding.PartitionSpec
    axis = sharding.spec[0]

    def local(rows, x, s, scale):
        return stein_direction(x, s, scale, stein_kernel, BLOCK, rows=rows)

    mapped = jax.shard_map(
        local,
        mesh=sharding.mesh,
        in_specs=(spec(axis), spec(), spec(), spec()),
        out_specs=spec(axis),
    )
    return lambda x, s, scale: mapped(x, x, s, scale)


def particle_scores(target, batch_size):
    """``(x (N, dim), key) -> scores (N, dim)``: full data, or one minibatch for all particles."""
    if batch_size is None:
        grad = jax.vmap(jax.grad(target.log_density))
        return lambda x, key: grad(x)
    n = target.num_data
    grad = jax.grad(target.minibatch_log_density)

    def scores(x, key):
        batch = target.batch(jax.random.choice(key, n, (batch_size,), replace=False))
        return jax.vmap(lambda z: grad(z, batch))(x)

    return scores


def ksd_descent(x, key, scale, score_fn):
    """c = −∇_x KSD²(x) (V-statistic, IMQ with ℓ² = ``scale``), scaled by N so that its size does
    not shrink with the number of particles."""

    def squared(x):
        s = score_fn(x, key)
        return ksd(x, s, lengthscale=jnp.sqrt(scale), block_size=BLOCK) ** 2

    return -x.shape[0] * jax.grad(squared)(x)
