"""Warm-up adaptation: dual averaging of the step size and Welford estimates of the variance.

Dual averaging: Nesterov (2009); as tuned for HMC by Hoffman & Gelman (2014), "The No-U-Turn
Sampler", §3.2 (γ = 0.05, t₀ = 10, κ = 0.75, μ = log(10 ε₀)). Windowed mass-matrix adaptation and
the regularised variance follow Stan's reference manual ("HMC algorithm parameters").
"""

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

__all__ = [
    "DualAveragingState",
    "dual_averaging_init",
    "dual_averaging_update",
    "WelfordState",
    "welford_init",
    "welford_update",
    "welford_variance",
    "warmup_schedule",
]


class DualAveragingState(NamedTuple):
    """log_step: current log ε; log_step_avg: averaged log ε (used after warm-up); h_bar: running
    mean of (target − acceptance); count: number of updates; mu: shrinkage point."""

    log_step: jnp.ndarray
    log_step_avg: jnp.ndarray
    h_bar: jnp.ndarray
    count: jnp.ndarray
    mu: jnp.ndarray


def dual_averaging_init(step_size):
    """Start dual averaging at ``step_size`` with μ = log(10 ε)."""
    log_step = jnp.log(step_size)
    zero = jnp.zeros_like(log_step)
    return DualAveragingState(log_step, zero, zero, zero, jnp.log(10.0) + log_step)


def dual_averaging_update(state, acceptance, target, gamma=0.05, t0=10.0, kappa=0.75):
    """One dual-averaging step towards mean acceptance ``target``."""
    count = state.count + 1.0
    eta = 1.0 / (count + t0)
    h_bar = (1.0 - eta) * state.h_bar + eta * (target - acceptance)
    log_step = state.mu - jnp.sqrt(count) / gamma * h_bar
    weight = count ** (-kappa)
    log_step_avg = weight * log_step + (1.0 - weight) * state.log_step_avg
    return DualAveragingState(log_step, log_step_avg, h_bar, count, state.mu)


class WelfordState(NamedTuple):
    """Running mean (dim,), sum of squared deviations (dim,) and count."""

    mean: jnp.ndarray
    m2: jnp.ndarray
    count: jnp.ndarray


def welford_init(dim, dtype=jnp.float32):
    """Empty Welford accumulator for ``dim`` coordinates."""
    zeros = jnp.zeros((dim,), dtype)
    return WelfordState(zeros, zeros, jnp.zeros((), dtype))


def welford_update(state, x):
    """Add one observation ``x`` (dim,)."""
    count = state.count + 1.0
    delta = x - state.mean
    mean = state.mean + delta / count
    return WelfordState(mean, state.m2 + delta * (x - mean), count)


def welford_variance(state):
    """Stan's regularised variance: (n/(n+5)) s² + 10⁻³ · 5/(n+5)."""
    n = state.count
    variance = state.m2 / jnp.maximum(n - 1.0, 1.0)
    return (n / (n + 5.0)) * variance + 1e-3 * (5.0 / (n + 5.0))


def warmup_schedule(num_warmup, initial_buffer=75, final_buffer=50, first_window=25):
    """Stan's windowed warm-up as two boolean arrays of length ``num_warmup``.

    Returns ``(collect, window_end)``: ``collect[t]`` says whether step ``t`` feeds the variance
    estimate; ``window_end[t]`` whether the mass matrix is updated (and the estimate reset) after
    step ``t``. Slow windows double in length; the last one stretches to the final buffer.
    """
    collect = np.zeros(num_warmup, bool)
    window_end = np.zeros(num_warmup, bool)
    if num_warmup < 20:
        return collect, window_end
    if initial_buffer + first_window + final_buffer > num_warmup:
        initial_buffer = int(0.15 * num_warmup)
        final_buffer = int(0.1 * num_warmup)
        first_window = num_warmup - initial_buffer - final_buffer
    start, size = initial_buffer, first_window
    last = num_warmup - final_buffer
    while start < last:
        end = start + size
        if end + 2 * size > last:
            end = last
        collect[start:end] = True
        window_end[end - 1] = True
        start, size = end, 2 * size
    return collect, window_end


def initial_step_size(kernel, dim):
    """A dimension-scaled first step size for ``"hmc"``, ``"mala"`` or ``"rwm"`` (unit scale):
    2.38/√d for RWM (Roberts, Gelman & Gilks 1997), d^(-1/6) for MALA and 0.5·d^(-1/4) for HMC
    (the optimal-scaling exponents); adaptation takes it from there."""
    dim = max(int(dim), 1)
    if kernel == "rwm":
        return 2.38 / dim**0.5
    if kernel == "mala":
        return 1.0 / dim ** (1 / 6)
    return 0.5 / dim**0.25


def final_buffer_start(num_warmup, **schedule):
    """The first step after the last mass-matrix update of :func:`warmup_schedule` (``num_warmup``
    when there is no update: then nothing is tuned after it)."""
    _, window_end = warmup_schedule(num_warmup, **schedule)
    ends = np.flatnonzero(window_end)
    return int(ends[-1]) + 1 if ends.size else int(num_warmup)
