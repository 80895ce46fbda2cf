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
    # show: True (a bar), "log" (heartbeat lines off a terminal, :mod:`probinfer.progress`), False.
    log_only = show == "log"
    warmup_bar = ProgressBar(
        num_warmup, "mcmc warm-up", enabled=bool(show) and num_warmup > 0, log_only=log_only
    )
    sample_bar = ProgressBar(
        num_draws * thinning, "mcmc sampling", enabled=bool(show), log_only=log_only
    )
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

    # Kernels whose state carries a trajectory length (MAMS) get it tuned from the chains'
    # autocorrelation over the final buffer, after the last mass-matrix update.
    tunes_length = _has_length(kernel, log_density_fn, dim, dtype)
    first_final = adaptation.final_buffer_start(num_warmup)
    buffer_size = num_warmup - first_final if tunes_length else 0

    def start(positions, key):
        del key  # the fixed-length kernels draw from the per-step keys
        states = jax.vmap(kernel.init, in_axes=(0, None))(positions, log_density_fn)
        da = jax.vmap(adaptation.dual_averaging_init)(jnp.full((num_chains,), step_size, dtype))
        welford = jax.vmap(lambda _: adaptation.welford_init(dim, dtype))(jnp.arange(num_chains))
        state = (states, da, welford, jnp.ones((num_chains, dim), dtype))
        if buffer_size:
            state = (*state, jnp.zeros((num_chains, buffer_size, dim), dtype))
        return state

    def warmup(state, steps, keys, collect, window_end):
        def body(state, xs):
            i, key, collect_t, window_end_t = xs
            warmup_bar.tick(i)
            chain_keys = jax.random.split(key, num_chains)
            one = jax.vmap(warmup_one, in_axes=(0, 0, None, None))
            adapted = one(state[:4], chain_keys, collect_t, window_end_t)
            if not buffer_size:
                return adapted, None
            buffer = jax.lax.dynamic_update_index_in_dim(
                state[4], adapted[0].position[:, None], jnp.clip(i - first_final, 0), 1
            )
            kernel_states = jax.lax.cond(
                i == num_warmup - 1,
                lambda s: _tuned_length(s, buffer, adapted[3]),
                lambda s: s,
                adapted[0],
            )
            return (kernel_states, *adapted[1:], buffer), None

        return jax.lax.scan(body, state, (steps, keys, collect, window_end))[0]

    def final_step_size(state):
        da = state[1]
        return jnp.exp(da.log_step_avg) if num_warmup > 0 else jnp.exp(da.log_step)

    def sample(state, steps, keys):
        kernel_states, da, welford, inverse_mass = state[:4]
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
            if hasattr(info, "num_integration_steps"):  # MAMS: its gradient count varies
                outputs = (*outputs, info.num_integration_steps)
            return states, outputs

        kernel_states, trace = jax.lax.scan(body, kernel_states, (steps, keys))
        trace = jax.tree.map(lambda x: x[thinning - 1 :: thinning], trace)
        return (kernel_states, da, welford, inverse_mass, *state[4:]), trace

    def position(state):
        return state[0].position, state[0].log_density

    return Program(start, warmup, sample, final_step_size, position)


def _has_length(kernel, log_density_fn, dim, dtype):
    """Whether ``kernel``'s state carries a ``trajectory_length`` (traced abstractly, free)."""
    position = jax.ShapeDtypeStruct((dim,), dtype)
    shape = jax.eval_shape(lambda x: kernel.init(x, log_density_fn), position)
    return hasattr(shape, "trajectory_length")


# Robnik et al. (2025), MAMS's third tuning stage: L = 0.4 × (the trajectory length) × (draws per
# effective draw), i.e. 0.4 of the integrated autocorrelation time in units of dynamics time.
LENGTH_FACTOR = 0.4


def _tuned_length(kernel_states, buffer, inverse_mass):
    """Every chain's ``trajectory_length`` set from the final buffer's draws (chains, n, dim): the
    mean over coordinates of the bulk ESS per draw (all chains together), clipped so that L
    changes by at most 10× and stays ≥ 0.1 √dim."""
    from blackjax.diagnostics import effective_sample_size

    del inverse_mass  # the ESS does not depend on the coordinates' scales
    num_chains, n, dim = buffer.shape
    ess = effective_sample_size(buffer)  # (dim,)
    per_draw = jnp.clip(jnp.nanmean(ess) / (num_chains * n), 1e-3, 10.0)
    from probinfer.kernels.mams import trajectory_length

    current = jax.vmap(trajectory_length)(kernel_states)
    new = jnp.clip(LENGTH_FACTOR * current / per_draw, 0.1 * current, 10.0 * current)
    new = jnp.maximum(new, 0.1 * jnp.sqrt(jnp.asarray(dim, buffer.dtype)))
    return kernel_states._replace(trajectory_length=jnp.median(new) * jnp.ones_like(new))


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
