"""``mcmc``: adaptive Metropolis chains (HMC, MALA or random walk) on a :class:`~probinfer.Target`.

Warm-up follows Stan: the step size is tuned by dual averaging to an acceptance target (Hoffman &
Gelman 2014), and a diagonal inverse mass matrix is estimated from the chain in doubling windows
(Stan reference manual). Chains are independent and vmapped; warm-up and sampling are one jitted
``lax.scan`` each. The kernels are the shared ones in :mod:`probinfer.kernels`.
"""

import jax
import jax.numpy as jnp
import numpy as np

from probinfer import devices as _devices
from probinfer import kernels
from probinfer._utils import as_key, legacy_kwargs
from probinfer.errors import ProbinferError
from probinfer.kernels import adaptation
from probinfer.posterior import Posterior
from probinfer.progress import ProgressBar, should_show

__all__ = ["mcmc", "mcmc_draws"]


def _kernel(kernel, num_integration_steps):
    if num_integration_steps is None:
        return kernels.get(kernel)
    if kernel != "hmc":
        raise ProbinferError(
            "num_integration_steps= is an option of the HMC kernel: pass "
            "kernel=probinfer.kernels.hmc(num_integration_steps=...)."
        )
    return kernels.hmc(num_integration_steps=num_integration_steps)


def mcmc(
    target,
    *,
    key,
    kernel="hmc",
    num_chains=4,
    num_draws=1000,
    num_warmup=1000,
    step_size=None,
    target_accept=None,
    thinning=1,
    init=None,
    progress="auto",
    devices=None,
    **legacy,
):
    """Run ``num_chains`` adaptive MCMC chains and return a :class:`~probinfer.Posterior`.

    Args:
        target: a compiled :class:`~probinfer.Target` (continuous latents).
        key: int seed or JAX PRNG key.
        kernel: ``"hmc"`` (default, 16 leapfrog steps), ``"mala"``, ``"rwm"`` or a
            :class:`~probinfer.kernels.Kernel` (``probinfer.kernels.hmc(num_integration_steps=32)``,
            or your own).
        num_chains: independent chains (vmapped; sharded over ``devices``; R-hat needs ≥ 2).
        num_draws: kept draws per chain (after thinning).
        num_warmup: adaptation steps per chain (discarded).
        step_size: initial step size; adapted during warm-up (a dimension-based guess if None).
        target_accept: acceptance rate the step size is tuned to (the kernel's own by default:
            0.8 HMC, 0.57 MALA, 0.234 RWM).
        thinning: keep every ``thinning``-th draw.
        init: starting points — a dict of constrained site values (``site_shape`` or
            ``(num_chains, *site_shape)``) or unconstrained ``z`` (``(dim,)`` or
            ``(num_chains, dim)``); prior draws with finite density otherwise (:meth:`Target.init`).
        progress: ``True``, ``False`` or ``"auto"`` (a bar on a terminal for long runs).
        devices: where the chains run (:mod:`probinfer.devices`; None: all local devices).
        **legacy: ``init_positions`` (now ``init``) and ``num_integration_steps`` (now
            ``kernel=kernels.hmc(num_integration_steps=...)``), with a DeprecationWarning.

    Returns:
        Posterior with draws ``(num_chains, num_draws, *site_shape)`` and diagnostics
        ``acceptance_rate`` (per chain), ``step_size`` (per chain), ``inverse_mass_matrix``
        ``(num_chains, dim)``, ``num_divergent`` (per chain), ``log_density`` and
        ``is_divergent`` (per draw).

    Example:
        >>> target = pi.compile(pi.models.eight_schools.noncentered, *pi.models.eight_schools.DATA)  # doctest: +SKIP
        >>> post = pi.mcmc(target, key=0, num_chains=4)                                             # doctest: +SKIP
    """
    num_integration_steps = legacy.pop("num_integration_steps", None)
    kernel = _kernel(kernel, num_integration_steps)
    if num_integration_steps is not None:
        _warn_moved(
            "num_integration_steps", "kernel=probinfer.kernels.hmc(num_integration_steps=...)"
        )
    if legacy:
        init = legacy_kwargs(legacy, {"init_positions": "init"}, "mcmc").get("init", init)
    for label, value in [
        ("num_chains", num_chains),
        ("num_draws", num_draws),
        ("thinning", thinning),
    ]:
        if int(value) < 1:
            raise ProbinferError(f"{label} must be a positive integer, got {value}.")
    if num_warmup < 0:
        raise ProbinferError(f"num_warmup must be ≥ 0, got {num_warmup}.")
    if step_size is not None and not step_size > 0:
        raise ProbinferError(f"step_size must be positive, got {step_size}.")
    target.check_continuous()
    key = as_key(key)
    key_init, key_warmup, key_sample = jax.random.split(key, 3)
    positions = target.starting_points(init, num_chains, key=key_init)
    target_accept, step_size = _defaults(kernel, target.dim, target_accept, step_size)
    show = should_show(progress, num_warmup + num_draws * thinning)
    run = _program(
        target,
        positions.dtype,
        kernel=kernel,
        num_chains=num_chains,
        num_draws=num_draws,
        num_warmup=num_warmup,
        step_size=step_size,
        target_accept=target_accept,
        thinning=thinning,
        show=show,
    )
    positions = _devices.shard_leading(positions, devices)
    outputs = jax.jit(run)(key_warmup, key_sample, positions)
    constrained, log_density, acceptance, divergent, final_step, inverse_mass, _ = outputs
    acceptance = np.asarray(acceptance)
    diagnostics = {
        "acceptance_rate": acceptance.mean(axis=1),
        "step_size": np.asarray(final_step),
        "inverse_mass_matrix": np.asarray(inverse_mass),
        "num_divergent": np.asarray(divergent).sum(axis=1),
        "log_density": np.asarray(log_density),
        "is_divergent": np.asarray(divergent),
    }
    settings = {
        "kernel": kernel.name,
        **dict(kernel.options),
        "num_chains": num_chains,
        "num_draws": num_draws,
        "num_warmup": num_warmup,
        "target_accept": target_accept,
        "thinning": thinning,
        "devices": _devices.num_devices(devices)
        if _devices.leading_sharding(num_chains, devices)
        else 1,
    }
    return Posterior(constrained, method="mcmc", diagnostics=diagnostics, settings=settings)


def _warn_moved(old, new):
    import warnings

    warnings.warn(
        f"mcmc: {old}= moved into the kernel's constructor: pass {new}; the old argument goes in "
        "the next release.",
        DeprecationWarning,
        stacklevel=3,
    )


def mcmc_draws(
    target,
    key,
    n,
    *,
    kernel="hmc",
    num_chains=4,
    num_warmup=500,
    step_size=None,
    target_accept=None,
    thinning=1,
):
    """Pure, traceable core of :func:`mcmc`: ``n`` pooled constrained draws.

    No host-side checks and no progress bar, so it can run under ``jit`` and ``vmap`` — the
    calibration layer vmaps it over simulated data sets (``target`` from
    :meth:`Target.condition`). Chains start at prior draws (:meth:`Target.init_fn`).

    Returns ``{site: (n, *site_shape)}``: the first ``n`` of the
    ``num_chains × ceil(n / num_chains)`` kept draws.

    >>> draws = jax.jit(lambda k: mcmc_draws(target, k, 1000))(key)   # doctest: +SKIP
    """
    kernel = kernels.get(kernel)
    num_draws = -(-int(n) // int(num_chains))
    key_init, key_warmup, key_sample = jax.random.split(key, 3)
    positions, _ = target.init_fn(key_init, num_chains)
    target_accept, step_size = _defaults(kernel, target.dim, target_accept, step_size)
    run = _program(
        target,
        positions.dtype,
        kernel=kernel,
        num_chains=num_chains,
        num_draws=num_draws,
        num_warmup=num_warmup,
        step_size=step_size,
        target_accept=target_accept,
        thinning=thinning,
        show=False,
    )
    constrained = run(key_warmup, key_sample, positions)[0]
    return jax.tree.map(
        lambda x: x.reshape((num_chains * num_draws,) + x.shape[2:])[:n], constrained
    )


def _defaults(kernel, dim, target_accept, step_size):
    target_accept = kernel.target_accept if target_accept is None else target_accept
    step_size = kernel.initial_step_size(dim) if step_size is None else step_size
    return target_accept, step_size


def _program(
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
    """The whole adaptive run as a pure function ``run(key_warmup, key_sample, positions)``.

    Pure JAX (no host checks), so it can be jitted, or vmapped over data sets by the calibration
    layer through :func:`mcmc_draws`.
    """
    step = kernel.step
    log_density_fn, dim, constrain = target.log_density, target.dim, target.constrain
    warmup_bar = ProgressBar(num_warmup, "warm-up", enabled=show and num_warmup > 0)
    sample_bar = ProgressBar(num_draws * thinning, "sampling", enabled=show)
    collect, window_end = adaptation.warmup_schedule(num_warmup)

    def warmup_one(state, adapt, key, collect_t, window_end_t):
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
        return (kernel_state, da, welford, inverse_mass), info

    def run(key_warmup, key_sample, positions):
        states = jax.vmap(kernel.init, in_axes=(0, None))(positions, log_density_fn)
        da = jax.vmap(adaptation.dual_averaging_init)(jnp.full((num_chains,), step_size, dtype))
        welford = jax.vmap(lambda _: adaptation.welford_init(dim, dtype))(jnp.arange(num_chains))
        inverse_mass = jnp.ones((num_chains, dim), dtype)
        adapt = (states, da, welford, inverse_mass)

        def warmup_body(adapt, xs):
            i, key, collect_t, window_end_t = xs
            warmup_bar.tick(i)
            keys = jax.random.split(key, num_chains)
            adapt, info = jax.vmap(warmup_one, in_axes=(None, 0, 0, None, None))(
                None, adapt, keys, collect_t, window_end_t
            )
            return adapt, info.acceptance_rate

        xs = (
            jnp.arange(num_warmup),
            jax.random.split(key_warmup, num_warmup),
            jnp.asarray(collect),
            jnp.asarray(window_end),
        )
        adapt, warmup_accept = jax.lax.scan(warmup_body, adapt, xs)
        states, da, _, inverse_mass = adapt
        final_step = jnp.exp(da.log_step_avg) if num_warmup > 0 else jnp.exp(da.log_step)

        def sample_body(states, xs):
            i, key = xs
            sample_bar.tick(i)
            keys = jax.random.split(key, num_chains)
            jitters = jax.vmap(lambda k: jax.random.uniform(k, minval=0.8, maxval=1.2))(keys)
            keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
            states, info = jax.vmap(step, in_axes=(0, 0, None, 0, 0))(
                keys, states, log_density_fn, final_step * jitters, inverse_mass
            )
            return states, (
                states.position,
                states.log_density,
                info.acceptance_rate,
                info.is_divergent,
            )

        total = num_draws * thinning
        _, trace = jax.lax.scan(
            sample_body, states, (jnp.arange(total), jax.random.split(key_sample, total))
        )
        trace = jax.tree.map(lambda x: jnp.swapaxes(x[thinning - 1 :: thinning], 0, 1), trace)
        positions, log_density, acceptance, divergent = trace
        constrained = jax.vmap(jax.vmap(constrain))(positions)
        return (
            constrained,
            log_density,
            acceptance,
            divergent,
            final_step,
            inverse_mass,
            warmup_accept,
        )

    return run
