"""Resampling from log weights, and effective sample sizes.

Every resampler maps normalised-or-not log weights ``(N,)`` to ``N`` ancestor indices whose
offspring counts are unbiased, ``E[count_i] = N w_i`` (Douc, Cappé & Moulines 2005, "Comparison of
resampling schemes for particle filtering"). ``-inf`` log weights are allowed (never chosen); NaN
is not (the callers check). Systematic and stratified resampling have lower variance than
multinomial; residual keeps ``⌊N w_i⌋`` copies and draws the rest multinomially.

>>> idx = systematic(key, log_weights)            # (N,) int32 ancestors  # doctest: +SKIP
"""

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from probinfer.diagnostics import kish_ess as ess  # the one Kish ESS, under SMC's name

__all__ = [
    "multinomial",
    "systematic",
    "stratified",
    "residual",
    "RESAMPLERS",
    "ess",
    "conditional_ess",
    "normalise",
]


def normalise(log_weights):
    """Log weights shifted so that they logsumexp to 0 (all ``-inf`` stays ``-inf``)."""
    return log_weights - logsumexp(log_weights)


def _weights(log_weights):
    return jnp.exp(normalise(log_weights))


def _invert(cumulative, uniforms):
    """Ancestors for sorted ``uniforms`` in [0, 1): the first i with cumsum_i > u."""
    index = jnp.searchsorted(cumulative, uniforms, side="right")
    return jnp.minimum(index, cumulative.shape[0] - 1).astype(jnp.int32)


def _cumulative(log_weights):
    cumulative = jnp.cumsum(_weights(log_weights))
    # Guard against the last sum rounding below 1, and skip zero-weight tail entries.
    return cumulative.at[-1].set(jnp.inf)


def multinomial(key, log_weights, n=None):
    """i.i.d. draws from the categorical distribution of the weights."""
    n = log_weights.shape[0] if n is None else n
    uniforms = jnp.sort(jax.random.uniform(key, (n,), log_weights.dtype))
    return _invert(_cumulative(log_weights), uniforms)


def systematic(key, log_weights, n=None):
    """One uniform shared by all strata: ``u_k = (k + U) / N``."""
    n = log_weights.shape[0] if n is None else n
    uniforms = (
        jnp.arange(n, dtype=log_weights.dtype) + jax.random.uniform(key, (), log_weights.dtype)
    ) / n
    return _invert(_cumulative(log_weights), uniforms)


def stratified(key, log_weights, n=None):
    """One uniform per stratum: ``u_k = (k + U_k) / N``."""
    n = log_weights.shape[0] if n is None else n
    uniforms = (
        jnp.arange(n, dtype=log_weights.dtype) + jax.random.uniform(key, (n,), log_weights.dtype)
    ) / n
    return _invert(_cumulative(log_weights), uniforms)


def residual(key, log_weights, n=None):
    """``⌊N w_i⌋`` deterministic copies, the remaining ``R`` drawn multinomially from the residuals."""
    n = log_weights.shape[0] if n is None else n
    scaled = n * _weights(log_weights)
    copies = jnp.floor(scaled).astype(jnp.int32)
    # Deterministic part: particle i repeated copies_i times (positions 0 … Σ copies − 1).
    ends = jnp.cumsum(copies)
    slots = jnp.arange(n)
    deterministic = jnp.minimum(jnp.searchsorted(ends, slots, side="right"), n - 1)
    remainder = scaled - copies
    log_remainder = jnp.where(remainder > 0, jnp.log(jnp.maximum(remainder, 1e-38)), -jnp.inf)
    # If nothing is left over (all N w_i integers) every slot is deterministic.
    # i.i.d. (unsorted) draws: only the last n − Σ copies slots use them.
    log_remainder = jnp.where(jnp.all(remainder <= 0), 0.0, log_remainder)
    random = jax.random.categorical(key, log_remainder, shape=(n,))
    return jnp.where(slots < ends[-1], deterministic, random).astype(jnp.int32)


RESAMPLERS = {
    "multinomial": multinomial,
    "systematic": systematic,
    "stratified": stratified,
    "residual": residual,
}


def conditional_ess(log_weights, log_increments):
    """Conditional ESS of incremental weights given current weights (Zhou, Johansen & Aston 2016):
    ``N (Σ W_i g_i)² / Σ W_i g_i²`` with ``W`` the normalised current weights, in [0, N].

    Zero when every increment is ``-inf``.
    """
    n = log_weights.shape[0]
    log_w = normalise(log_weights)
    first = logsumexp(log_w + log_increments)
    second = logsumexp(log_w + 2.0 * log_increments)
    value = jnp.exp(2.0 * first - second) * n
    return jnp.where(jnp.isfinite(first), value, 0.0)
