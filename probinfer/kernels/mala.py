"""Metropolis-adjusted Langevin algorithm with a diagonal preconditioner.

Roberts & Tweedie (1996). Proposal ``q' = q + ε²/2 · m⁻¹ ⊙ ∇log π(q) + ε √m⁻¹ ⊙ ξ``, corrected with
the Metropolis–Hastings ratio of the two Gaussian proposal densities; NaN ratios are rejections.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["MALAState", "MALAInfo", "init", "step"]


class MALAState(NamedTuple):
    """position: (dim,); log_density: scalar; log_density_grad: (dim,)."""

    position: jax.Array
    log_density: jax.Array
    log_density_grad: jax.Array


class MALAInfo(NamedTuple):
    """acceptance_rate; is_accepted; is_divergent (always False)."""

    acceptance_rate: jax.Array
    is_accepted: jax.Array
    is_divergent: jax.Array


def init(position, log_density_fn):
    """Evaluate the log density and its gradient once at ``position`` (dim,)."""
    log_density, grad = jax.value_and_grad(log_density_fn)(position)
    return MALAState(position, log_density, grad)


def _log_proposal(to, frm, step_size, inverse_mass_matrix):
    mean = frm.position + 0.5 * step_size**2 * inverse_mass_matrix * frm.log_density_grad
    return -0.5 * jnp.sum((to.position - mean) ** 2 / inverse_mass_matrix) / step_size**2


def step(key, state, log_density_fn, step_size, inverse_mass_matrix):
    """One MALA transition with step ``step_size`` and diagonal preconditioner (dim,)."""
    key_move, key_accept = jax.random.split(key)
    noise = jax.random.normal(key_move, state.position.shape, state.position.dtype)
    drift = 0.5 * step_size**2 * inverse_mass_matrix * state.log_density_grad
    position = state.position + drift + step_size * jnp.sqrt(inverse_mass_matrix) * noise
    proposal = init(position, log_density_fn)
    delta = (
        proposal.log_density
        - state.log_density
        + _log_proposal(state, proposal, step_size, inverse_mass_matrix)
        - _log_proposal(proposal, state, step_size, inverse_mass_matrix)
    )
    delta = jnp.where(jnp.isnan(delta), -jnp.inf, delta)
    log_accept = jnp.minimum(0.0, delta)
    accept = jnp.log(jax.random.uniform(key_accept)) < log_accept
    new_state = jax.tree.map(lambda new, old: jnp.where(accept, new, old), proposal, state)
    return new_state, MALAInfo(jnp.exp(log_accept), accept, jnp.zeros((), bool))
