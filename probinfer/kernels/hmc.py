"""Hamiltonian Monte Carlo with a diagonal mass matrix and a leapfrog integrator.

Duane, Kennedy, Pendleton & Roweth (1987), "Hybrid Monte Carlo"; Neal (2011), "MCMC using
Hamiltonian dynamics". With inverse mass ``m⁻¹`` (a vector), momentum ``p ~ N(0, diag(1/m⁻¹))``,
Hamiltonian ``H = -log π(q) + ½ Σ m⁻¹ p²``; ``L`` leapfrog steps of size ``ε``; accept with
probability ``min(1, exp(H₀ - H_L))``. A NaN energy is a rejection, and an energy error above
``divergence_threshold`` is flagged as a divergence.

>>> state = init(jnp.zeros(2), log_density_fn)                          # doctest: +SKIP
>>> state, info = step(key, state, log_density_fn, 0.1, jnp.ones(2), 10)  # doctest: +SKIP
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["HMCState", "HMCInfo", "init", "step", "leapfrog"]


class HMCState(NamedTuple):
    """position: (dim,); log_density: scalar; log_density_grad: (dim,) — cached for the next step."""

    position: jax.Array
    log_density: jax.Array
    log_density_grad: jax.Array


class HMCInfo(NamedTuple):
    """acceptance_rate: min(1, exp(-ΔH)); is_accepted; is_divergent (ΔH > threshold or NaN);
    energy_error: ΔH of the proposal."""

    acceptance_rate: jax.Array
    is_accepted: jax.Array
    is_divergent: jax.Array
    energy_error: jax.Array


def init(position, log_density_fn):
    """Evaluate the log density and its gradient once at ``position`` (dim,)."""
    log_density, grad = jax.value_and_grad(log_density_fn)(position)
    return HMCState(position, log_density, grad)


def leapfrog(state, momentum, log_density_fn, step_size, inverse_mass_matrix, num_steps):
    """``num_steps`` leapfrog steps from ``(state, momentum)``; returns the end state and momentum.

    Only gradients are computed inside the loop and the log density once at the end: measured,
    ``value_and_grad`` at every step costs ~1.8× the bare gradients when vmapped over particles.
    """

    def one(_, carry):
        position, momentum, grad = carry
        momentum = momentum + 0.5 * step_size * grad
        position = position + step_size * inverse_mass_matrix * momentum
        grad = jax.grad(log_density_fn)(position)
        momentum = momentum + 0.5 * step_size * grad
        return position, momentum, grad

    carry = (state.position, momentum, state.log_density_grad)
    position, momentum, grad = jax.lax.fori_loop(0, num_steps, one, carry)
    return HMCState(position, log_density_fn(position), grad), momentum


def step(
    key,
    state,
    log_density_fn,
    step_size,
    inverse_mass_matrix,
    num_integration_steps,
    divergence_threshold=1000.0,
):
    """One HMC transition.

    Args:
        key: PRNG key.
        state: :class:`HMCState`.
        log_density_fn: ``(dim,) -> scalar``.
        step_size: leapfrog step ε (scalar).
        inverse_mass_matrix: diagonal of M⁻¹, shape (dim,).
        num_integration_steps: number of leapfrog steps L (static int).
        divergence_threshold: energy error above which the transition is flagged divergent.
    """
    key_momentum, key_accept = jax.random.split(key)
    momentum = jax.random.normal(key_momentum, state.position.shape, state.position.dtype)
    momentum = momentum / jnp.sqrt(inverse_mass_matrix)
    energy0 = -state.log_density + 0.5 * jnp.sum(inverse_mass_matrix * momentum**2)
    proposal, momentum = leapfrog(
        state, momentum, log_density_fn, step_size, inverse_mass_matrix, num_integration_steps
    )
    energy1 = -proposal.log_density + 0.5 * jnp.sum(inverse_mass_matrix * momentum**2)
    energy_error = energy1 - energy0
    finite = jnp.isfinite(energy_error) & jnp.all(jnp.isfinite(proposal.log_density_grad))
    energy_error = jnp.where(finite, energy_error, jnp.inf)
    log_accept = jnp.minimum(0.0, -energy_error)
    accept = jnp.log(jax.random.uniform(key_accept)) < log_accept
    new_state = jax.tree.map(lambda new, old: jnp.where(accept, new, old), proposal, state)
    info = HMCInfo(
        acceptance_rate=jnp.exp(log_accept),
        is_accepted=accept,
        is_divergent=energy_error > divergence_threshold,
        energy_error=energy_error,
    )
    return new_state, info
