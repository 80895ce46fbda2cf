"""Gaussian random-walk Metropolis with a diagonal proposal scale.

Metropolis et al. (1953); proposal ``q' = q + ε √m⁻¹ ⊙ ξ``, ``ξ ~ N(0, I)``, accepted with
probability ``min(1, π(q') / π(q))``; NaN log densities are rejections. Optimal scaling for
Gaussian-like targets accepts about 23 % (Roberts, Gelman & Gilks 1997).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["RWMState", "RWMInfo", "init", "step"]


class RWMState(NamedTuple):
    """position: (dim,); log_density: scalar."""

    position: jax.Array
    log_density: jax.Array


class RWMInfo(NamedTuple):
    """acceptance_rate: min(1, π(q')/π(q)); is_accepted; is_divergent (always False, for a uniform
    interface with HMC)."""

    acceptance_rate: jax.Array
    is_accepted: jax.Array
    is_divergent: jax.Array


def init(position, log_density_fn):
    """Evaluate the log density once at ``position`` (dim,)."""
    return RWMState(position, log_density_fn(position))


def step(key, state, log_density_fn, step_size, inverse_mass_matrix):
    """One random-walk Metropolis transition with scale ``step_size * sqrt(inverse_mass_matrix)``."""
    key_move, key_accept = jax.random.split(key)
    noise = jax.random.normal(key_move, state.position.shape, state.position.dtype)
    position = state.position + step_size * jnp.sqrt(inverse_mass_matrix) * noise
    log_density = log_density_fn(position)
    delta = log_density - state.log_density
    delta = jnp.where(jnp.isnan(delta), -jnp.inf, delta)
    log_accept = jnp.minimum(0.0, delta)
    accept = jnp.log(jax.random.uniform(key_accept)) < log_accept
    new_state = jax.tree.map(
        lambda new, old: jnp.where(accept, new, old), RWMState(position, log_density), state
    )
    info = RWMInfo(jnp.exp(log_accept), accept, jnp.zeros((), bool))
    return new_state, info
