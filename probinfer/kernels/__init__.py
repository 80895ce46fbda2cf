"""Shared MCMC kernels (init/step pairs over flat positions) and their adaptation pieces.

These live in the core so every family composes them: SMC mutates particles with them, the MCMC
runner chains them, and others reuse the adaptation. Each kernel is BlackJAX-style:
``init(position, log_density_fn) -> State`` and ``step(key, state, log_density_fn, ...) ->
(State, Info)``; pure functions, no Python control flow on traced values.
"""

from probinfer.kernels import adaptation, hmc, mala, rwm

__all__ = ["adaptation", "hmc", "mala", "rwm"]
