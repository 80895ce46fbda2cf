"""The adaptive MCMC run as pure pieces (:class:`Program`): start, warm-up and sampling over
ranges of steps, for NUTS (NumPyro's, :mod:`probinfer.kernels.nuts`) or a fixed-length kernel
with Stan's warm-up (dual averaging of the step, a diagonal mass matrix from doubling windows).
:func:`probinfer.mcmc` jits and checkpoints them chunk by chunk; :func:`probinfer.mcmc_draws` runs
them whole under ``vmap``.

>>> pieces = program(target, jnp.float32, kernel=kernels.get("hmc"), num_chains=4, ...)  # doctest: +SKIP
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from probinfer import kernels
from probinfer.kernels import adaptation
from probinfer.kernels.nuts import program as _nuts_program
from probinfer.progress import ProgressBar

__all__ = ["Program", "program", "warmed_up", "whole_run"]


class Program(NamedTuple):
    """The adaptive run in pieces, pure JAX (no host checks), so the runner can jit and
    checkpoint them chunk by chunk and :func:`probinfer.mcmc_draws` can run them whole under ``vmap``.

    ``start(positions, key) -> state``; ``warmup(state, steps, keys, collect, window_end) -> state``
    over a range of warm-up steps; ``sample(state, steps, keys) -> (state, trace)`` over a range
    of sampling steps (a multiple of ``thinning``), trace = (positions, log_density, acceptance,
    divergent), one row per kept draw; ``step_size(state)`` the step used for sampling;
    ``position(state) -> (positions (num_chains, dim), log_density (num_chains,))``.
    """

    start: object
    warmup: object
    sample: object
    step_size: object
    position: object


def program(
    target,
    dtype,
    *,
    kernel,
    num_chains,
    num_draws,
    num_warmup,
    step_size,
    target_accept,
    thinning,
    show,
):
    """:class:`_Program` for these settings (Stan-style warm-up, then fixed-step sampling)."""
    warmup_bar = ProgressBar(num_warmup, "warm-up", enabled=show and num_warmup > 0)
    sample_bar = ProgressBar(num_draws * thinning, "sampling", enabled=show)
    if kernels.is_nuts(kernel):
        return Program(
            *_nuts_program(
                target,
                num_chains=num_chains,
                num_warmup=num_warmup,
                step_size=step_size,
                target_accept=target_accept,
                thinning=thinning,
                options=kernel.options,
                bars=(warmup_bar, sample_bar),
            )
        )
    step = kernel.step
    log_density_fn, dim = target.log_density, target.dim

    def warmup_one(adapt, key, collect_t, window_end_t):
        kernel_state, da, welford, inverse_mass = adapt
        step_size_t = jnp.exp(da.log_step)
        # Jitter the step by ±20 % so fixed-length trajectories cannot lock onto a period.
        jitter = jax.random.uniform(key, minval=0.8, maxval=1.2)
        key = jax.random.fold_in(key, 1)
        kernel_state, info = step(
            key, kernel_state, log_density_fn, step_size_t * jitter, inverse_mass
        )
        da = adaptation.dual_averaging_update(da, info.acceptance_rate, target_accept)
        welford = jax.tree.map(
            lambda new, old: jnp.where(collect_t, new, old),
            adaptation.welford_update(welford, kernel_state.position),
            welford,
        )
        new_inverse_mass = adaptation.welford_variance(welford)
        inverse_mass = jnp.where(window_end_t, new_inverse_mass, inverse_mass)
        restarted = adaptation.dual_averaging_init(jnp.exp(da.log_step))
        da = jax.tree.map(lambda new, old: jnp.where(window_end_t, new, old), restarted, da)
        welford = jax.tree.map(
            lambda new, old: jnp.where(window_end_t, new, old),
            adaptation.welford_init(dim, dtype),
            welford,
        )
        return kernel_state, da, welford, inverse_mass

    def start(positions, key):
        del key  # the fixed-length kernels draw from the per-step keys
        states = jax.vmap(kernel.init, in_axes=(0, None))(positions, log_density_fn)
        da = jax.vmap(adaptation.dual_averaging_init)(jnp.full((num_chains,), step_size, dtype))
        welford = jax.vmap(lambda _: adaptation.welford_init(dim, dtype))(jnp.arange(num_chains))
        return states, da, welford, jnp.ones((num_chains, dim), dtype)

    def warmup(state, steps, keys, collect, window_end):
        def body(state, xs):
            i, key, collect_t, window_end_t = xs
            warmup_bar.tick(i)
            chain_keys = jax.random.split(key, num_chains)
            one = jax.vmap(warmup_one, in_axes=(0, 0, None, None))
            return one(state, chain_keys, collect_t, window_end_t), None

        return jax.lax.scan(body, state, (steps, keys, collect, window_end))[0]

    def final_step_size(state):
        da = state[1]
        return jnp.exp(da.log_step_avg) if num_warmup > 0 else jnp.exp(da.log_step)

    def sample(state, steps, keys):
        kernel_states, da, welford, inverse_mass = state
        step_sizes = final_step_size(state)

        def body(states, xs):
            i, key = xs
            sample_bar.tick(i)
            chain_keys = jax.random.split(key, num_chains)
            jitters = jax.vmap(lambda k: jax.random.uniform(k, minval=0.8, maxval=1.2))(chain_keys)
            chain_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(chain_keys)
            states, info = jax.vmap(step, in_axes=(0, 0, None, 0, 0))(
                chain_keys, states, log_density_fn, step_sizes * jitters, inverse_mass
            )
            outputs = (states.position, states.log_density, info.acceptance_rate, info.is_divergent)
            return states, outputs

        kernel_states, trace = jax.lax.scan(body, kernel_states, (steps, keys))
        trace = jax.tree.map(lambda x: x[thinning - 1 :: thinning], trace)
        return (kernel_states, da, welford, inverse_mass), trace

    def position(state):
        return state[0].position, state[0].log_density

    return Program(start, warmup, sample, final_step_size, position)


def warmed_up(program, positions, key, num_warmup):
    """Chains started at ``positions`` after the whole warm-up, in one traced call."""
    collect, window_end = adaptation.warmup_schedule(num_warmup)
    return program.warmup(
        program.start(positions, key),
        jnp.arange(num_warmup),
        jax.random.split(key, num_warmup),
        jnp.asarray(collect),
        jnp.asarray(window_end),
    )


def whole_run(program, key_warmup, key_sample, positions, num_warmup, total):
    """Every step in one traced call: ``(state, trace)`` with trace rows = kept draws."""
    state = warmed_up(program, positions, key_warmup, num_warmup)
    return program.sample(state, jnp.arange(total), jax.random.split(key_sample, total))
