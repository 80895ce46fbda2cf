"""Metropolis-adjusted microcanonical Hamiltonian Monte Carlo (MAMS), BlackJAX's transition.

Robnik, Cohn-Gordon & Seljak (2025), "Metropolis Adjusted Microcanonical Hamiltonian Monte
Carlo" (arXiv:2503.01707), built on Robnik, De Luca, Silverstein & Seljak (2023), "Microcanonical
Hamiltonian Monte Carlo". In the coordinates whitened by the diagonal preconditioner ``M⁻¹`` the
velocity ``u`` is a unit vector (redrawn uniformly on the sphere every transition) and the
isokinetic (ESH) dynamics

    dx/dt = √M⁻¹ u,      du/dt = (I − u uᵀ) √M⁻¹ ∇log π(x) / (d − 1)

are integrated with McLachlan's minimal-norm two-stage integrator (two gradients per step) for
``N`` steps of size ``ε``, ``N = round(½ + U·s)`` with ``U ~ U(0, 1)`` and ``s`` chosen so that
``E[N] = L / ε`` (random trajectory lengths, as the paper's MAMS). The proposal is accepted with
probability ``min(1, exp(−ΔE))``, ``ΔE`` the change of ``−log π`` plus the kinetic-energy change
of the isokinetic flow, so the chain leaves π invariant exactly.

The transition is :func:`blackjax.mcmc.adjusted_mclmc_dynamic.build_kernel` with
:func:`blackjax.mcmc.integrators.isokinetic_mclachlan`; this module adapts it to probinfer's
kernel signature. ``L`` (the trajectory length, in whitened units) is carried in the state:
``nan`` means the paper's pre-tuning value ``√d`` (the whitened posterior's size);
:func:`probinfer.kernels.program.program` tunes it from the chains' autocorrelation at the end of
warm-up (the paper's stage 3).

>>> state = init(jnp.zeros(2), log_density_fn)                                # doctest: +SKIP
>>> state, info = step(key, state, log_density_fn, 0.3, jnp.ones(2))           # doctest: +SKIP
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from probinfer.errors import ProbinferError

__all__ = ["MAMSState", "MAMSInfo", "init", "step", "mean_num_steps"]


class MAMSState(NamedTuple):
    """position: (dim,); log_density: scalar; log_density_grad: (dim,); trajectory_length:
    scalar L in whitened units (``nan``: ``√dim``)."""

    position: jax.Array
    log_density: jax.Array
    log_density_grad: jax.Array
    trajectory_length: jax.Array


class MAMSInfo(NamedTuple):
    """acceptance_rate: min(1, exp(−ΔE)); is_accepted; is_divergent (ΔE > threshold);
    num_integration_steps: N (each step costs two gradients)."""

    acceptance_rate: jax.Array
    is_accepted: jax.Array
    is_divergent: jax.Array
    num_integration_steps: jax.Array


def init(position, log_density_fn, trajectory_length=jnp.nan, kernel="mams"):
    """Evaluate the log density and its gradient once at ``position`` (dim,); ``kernel`` names
    the isokinetic kernel in the one-dimension error (MCLMC shares this)."""
    if position.shape[-1] < 2:
        raise ProbinferError(
            f"the {kernel} kernel needs at least 2 dimensions (its isokinetic dynamics move on the "
            f"unit sphere of velocities), and this target has {position.shape[-1]}; use "
            "kernel='nuts' instead."
        )
    log_density, grad = jax.value_and_grad(log_density_fn)(position)
    length = jnp.asarray(trajectory_length, position.dtype)
    return MAMSState(position, log_density, grad, length)


def trajectory_length(state):
    """``L`` of ``state`` (``√dim`` where it is unset)."""
    dim = state.position.shape[-1]
    default = jnp.sqrt(jnp.asarray(dim, state.position.dtype))
    return jnp.where(jnp.isnan(state.trajectory_length), default, state.trajectory_length)


def mean_num_steps(state, step_size, max_num_steps):
    """``E[N] = L / ε``, clipped to ``[1, max_num_steps]``."""
    return jnp.clip(trajectory_length(state) / step_size, 1.0, max_num_steps)


def step(
    key,
    state,
    log_density_fn,
    step_size,
    inverse_mass_matrix,
    divergence_threshold=1000.0,
    max_num_steps=128,
):
    """One MAMS transition (see the module docstring).

    Args:
        key: PRNG key.
        state: :class:`MAMSState`.
        log_density_fn: ``(dim,) -> scalar``.
        step_size: ε (scalar).
        inverse_mass_matrix: diagonal of M⁻¹, shape (dim,).
        divergence_threshold: energy error above which the transition is flagged divergent.
        max_num_steps: cap on ``E[N]`` (a tiny step must not make one transition endless).
    """
    from blackjax.mcmc import adjusted_mclmc_dynamic, integrators
    from blackjax.mcmc.adjusted_mclmc import rescale
    from blackjax.mcmc.dynamic_hmc import DynamicHMCState

    key_steps, key_move = jax.random.split(key)
    mean = mean_num_steps(state, step_size, max_num_steps)
    num_steps = jnp.rint(0.5 + jax.random.uniform(key_steps, dtype=mean.dtype) * rescale(mean))
    num_steps = jnp.maximum(num_steps, 1).astype(jnp.int32)
    kernel = adjusted_mclmc_dynamic.build_kernel(
        integration_steps_fn=lambda _, n: n,
        integrator=integrators.isokinetic_mclachlan,
        divergence_threshold=divergence_threshold,
        next_random_arg_fn=lambda arg: arg,
    )
    start = DynamicHMCState(
        state.position, state.log_density, state.log_density_grad, jnp.zeros((), jnp.int32)
    )
    new, info = kernel(
        key_move,
        start,
        log_density_fn,
        step_size,
        inverse_mass_matrix=inverse_mass_matrix,
        integration_steps_params=(num_steps,),
    )
    finite = jnp.isfinite(new.logdensity) & jnp.all(jnp.isfinite(new.logdensity_grad))
    keep = info.is_accepted & finite
    new_state = MAMSState(
        jnp.where(keep, new.position, state.position),
        jnp.where(keep, new.logdensity, state.log_density),
        jnp.where(keep, new.logdensity_grad, state.log_density_grad),
        state.trajectory_length,
    )
    return new_state, MAMSInfo(
        acceptance_rate=jnp.where(finite, info.acceptance_rate, 0.0),
        is_accepted=keep,
        is_divergent=info.is_divergent,
        num_integration_steps=num_steps,
    )
