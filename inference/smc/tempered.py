"""Adaptive tempered SMC: particles move from the prior to the posterior through
``π_λ(θ) ∝ p(θ) p(D | θ)^λ``, ``0 = λ_0 < λ_1 < … < λ_T = 1`` (Del Moral, Doucet & Jasra 2006;
Jasra et al. 2011 for the adaptive ladder; Zhou, Johansen & Aston 2016 for the conditional ESS).

One step, on the particles as the previous move left them:

1. next temperature: the largest ``λ' ≤ 1`` whose incremental weights ``g_i = (λ' − λ) log L_i``
   keep the conditional ESS at ``target_ess · N`` (bisection; a fixed ladder may be given instead);
2. reweight ``log w_i += g_i`` and accumulate ``log Z += log Σ_i W_i exp(g_i)`` (``W``: normalised
   previous weights) — ``log L = −∞`` gives ``g = −∞``, never ``0 · ∞ = NaN``;
3. resample (systematic by default) when the ESS falls below ``resample_threshold · N``;
4. move every particle with ``num_mcmc_steps`` of an MCMC kernel invariant for ``π_λ'`` (RWM, MALA
   or HMC from :mod:`probinfer.kernels`) whose diagonal scale is the particles' weighted variance
   and whose step size follows the previous move's acceptance rate towards ``target_accept``.

``log Z`` is kept in the state (the sum of step 2 over the ladder estimates ``log p(D)``, unbiased
on the natural scale). Kernel layer: :func:`init`, :func:`step`; runner: :func:`smc`.
"""

import weakref
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from probinfer._utils import as_key
from probinfer.errors import NonFiniteError, ProbinferError
from probinfer.inference.smc import resampling
from probinfer.kernels import adaptation, hmc, mala, rwm
from probinfer.posterior import Posterior

__all__ = ["SMCState", "SMCInfo", "init", "step", "smc", "smc_draws"]

_KERNELS = {"hmc": (hmc, 0.65), "mala": (mala, 0.57), "rwm": (rwm, 0.234)}
# Error codes raised after the jitted loop (a while_loop cannot raise).
_OK, _ALL_IMPOSSIBLE, _STALLED, _TOO_MANY_STEPS, _NAN_AT_START = 0, 1, 2, 3, 4


class SMCState(NamedTuple):
    """position: (N, dim) unconstrained particles; log_prior, log_likelihood, log_weights: (N,);
    temperature, log_evidence, step_size: scalars; inverse_mass: (dim,) kernel scale."""

    position: jax.Array
    log_prior: jax.Array
    log_likelihood: jax.Array
    log_weights: jax.Array
    temperature: jax.Array
    log_evidence: jax.Array
    step_size: jax.Array
    inverse_mass: jax.Array


class SMCInfo(NamedTuple):
    """temperature reached; ess: after reweighting (before resampling); resampled; acceptance_rate
    of the move (mean over particles and steps); log_evidence_increment."""

    temperature: jax.Array
    ess: jax.Array
    resampled: jax.Array
    acceptance_rate: jax.Array
    log_evidence_increment: jax.Array


def _terms_fn(target, schedule="temperature"):
    """``z -> (log prior, log L)``; log L is a scalar, or ``(N_data,)`` per datum for the
    data-annealing schedule."""
    if schedule == "data":

        def per_datum(z):
            return target.log_prior(z), target.log_likelihood_per_datum(z)

        return per_datum

    return target.log_terms


def _exponents(log_likelihood, temperature):
    """How much of each likelihood term π_λ holds: λ for a scalar log L (tempering); for per-datum
    log L (N,), datum i enters linearly while λN passes from i to i + 1 (data annealing; a
    fractional datum is tempered), so λ = k/N is the posterior of the first k data points."""
    if log_likelihood.ndim == 0:
        return temperature
    num_data = log_likelihood.shape[-1]
    return jnp.clip(temperature * num_data - jnp.arange(num_data), 0.0, 1.0)


def _weighted(log_likelihood, exponents):
    """Σ exponent · log L with a zero exponent contributing exactly 0 (even where log L = −∞)."""
    terms = jnp.where(exponents > 0, exponents * log_likelihood, 0.0)
    return terms if log_likelihood.ndim == 0 else jnp.sum(terms, -1)


def _map(fn, *args, batch_size=None):
    """``vmap`` over the leading axis, or ``lax.map`` over blocks of ``batch_size`` particles
    (bounded memory for very many particles; same result)."""
    if batch_size is None:
        return jax.vmap(fn)(*args)
    return jax.lax.map(lambda a: fn(*a), args, batch_size=batch_size)


def _tempered(log_prior, log_likelihood, temperature):
    """``log p + λ log L`` (per particle) with ``λ = 0`` contributing exactly 0."""
    return log_prior + _weighted(log_likelihood, _exponents(log_likelihood, temperature))


def _increments(log_likelihood, old, new):
    """Incremental log weights from λ = old to new: (N_particles,) from log L (N_particles,) or
    (N_particles, N_data)."""
    if log_likelihood.ndim == 1:
        return jnp.where(new - old > 0, (new - old) * log_likelihood, 0.0)
    exponents = _exponents(log_likelihood, new) - _exponents(log_likelihood, old)
    return _weighted(log_likelihood, exponents)


def init(positions, terms_fn, step_size, batch_size=None):
    """State at λ = 0 from ``positions`` (N, dim) drawn from the prior."""
    log_prior, log_likelihood = _map(terms_fn, positions, batch_size=batch_size)
    n, dim = positions.shape
    dtype = positions.dtype
    return SMCState(
        position=positions,
        log_prior=log_prior,
        log_likelihood=log_likelihood,
        log_weights=jnp.zeros((n,), dtype),
        temperature=jnp.zeros((), dtype),
        log_evidence=jnp.zeros((), dtype),
        step_size=jnp.asarray(step_size, dtype),
        inverse_mass=jnp.ones((dim,), dtype),
    )


def next_temperature(state, target_ess, num_bisections=50):
    """Largest ``λ' ≤ 1`` with conditional ESS ``≥ target_ess · N`` (bisection on Δ = λ' − λ)."""
    n = state.log_weights.shape[0]
    remaining = 1.0 - state.temperature

    def cess(delta):
        increments = _increments(state.log_likelihood, state.temperature, state.temperature + delta)
        return resampling.conditional_ess(state.log_weights, increments) / n

    def bisect(_, bounds):
        low, high = bounds
        middle = 0.5 * (low + high)
        ok = cess(middle) >= target_ess
        return jnp.where(ok, middle, low), jnp.where(ok, high, middle)

    low, _ = jax.lax.fori_loop(0, num_bisections, bisect, (jnp.zeros_like(remaining), remaining))
    delta = jnp.where(cess(remaining) >= target_ess, remaining, low)
    return jnp.minimum(state.temperature + delta, 1.0)


def _weighted_variance(positions, log_weights):
    weights = jnp.exp(resampling.normalise(log_weights))
    mean = weights @ positions
    variance = weights @ (positions - mean) ** 2
    return jnp.where(variance > 0, variance, 1.0)


def step(
    key,
    state,
    terms_fn,
    *,
    kernel="hmc",
    temperature=None,
    target_ess=0.5,
    resampling_scheme="systematic",
    resample_threshold=0.5,
    num_mcmc_steps=10,
    num_integration_steps=10,
    target_accept=None,
    chain_length=None,
    batch_size=None,
):
    """One tempering step: choose λ', reweight, maybe resample, move. Returns ``(state, info)``.

    ``chain_length``: P for waste-free SMC (N / P chains of P states each; ``num_mcmc_steps``
    and ``resample_threshold`` are then unused); None for the standard move. ``batch_size``: move
    and evaluate particles in blocks of this size (``lax.map``) instead of all at once.

    ``temperature``: the next λ for a fixed ladder (None: adaptive from ``target_ess``).
    """
    module, default_accept = _KERNELS[kernel]
    target_accept = default_accept if target_accept is None else target_accept
    n = state.position.shape[0]
    key_resample, key_move = jax.random.split(key)
    new_temperature = (
        next_temperature(state, target_ess) if temperature is None else jnp.asarray(temperature)
    )
    increments = _increments(state.log_likelihood, state.temperature, new_temperature)
    log_increment = logsumexp(resampling.normalise(state.log_weights) + increments)
    log_weights = state.log_weights + increments
    ess = resampling.ess(log_weights)
    resampler = resampling.RESAMPLERS[resampling_scheme]
    if chain_length is None:
        resample = ess < resample_threshold * n
        ancestors = resampler(key_resample, log_weights)
        ancestors = jnp.where(resample, ancestors, jnp.arange(n))
        log_weights = jnp.where(resample, jnp.zeros_like(log_weights), log_weights)
        starts = state.position[ancestors]
        inverse_mass = _weighted_variance(starts, log_weights)
        num_chains, num_moves = n, num_mcmc_steps
    else:
        # Waste-free (Dau & Chopin 2022): M = N / P ancestors, each runs P − 1 steps, and all
        # N visited states are the new equally weighted particles.
        resample = jnp.array(True)
        inverse_mass = _weighted_variance(state.position, log_weights)
        num_chains, num_moves = n // chain_length, chain_length - 1
        starts = state.position[resampler(key_resample, log_weights, num_chains)]
        log_weights = jnp.zeros_like(log_weights)

    def log_density(z):
        log_prior, log_likelihood = terms_fn(z)
        return _tempered(log_prior, log_likelihood, new_temperature)

    kernel_step = module.step
    if kernel == "hmc":
        kernel_step = partial(hmc.step, num_integration_steps=num_integration_steps)

    def move(key, z):
        kernel_state = module.init(z, log_density)

        def one(kernel_state, key):
            kernel_state, info = kernel_step(
                key, kernel_state, log_density, state.step_size, inverse_mass
            )
            return kernel_state, (kernel_state.position, info.acceptance_rate)

        kernel_state, (path, acceptance) = jax.lax.scan(
            one, kernel_state, jax.random.split(key, num_moves)
        )
        return jnp.concatenate([z[None], path]), acceptance.mean()

    paths, acceptance = _map(
        move, jax.random.split(key_move, num_chains), starts, batch_size=batch_size
    )
    position = paths[:, -1] if chain_length is None else paths.reshape(n, -1)
    log_prior, log_likelihood = _map(terms_fn, position, batch_size=batch_size)
    acceptance_rate = jnp.mean(acceptance)
    # Robbins–Monro on log ε towards the acceptance target, bounded per step.
    step_size = state.step_size * jnp.exp(jnp.clip(2.0 * (acceptance_rate - target_accept), -1, 1))
    new_state = SMCState(
        position=position,
        log_prior=log_prior,
        log_likelihood=log_likelihood,
        log_weights=log_weights,
        temperature=new_temperature,
        log_evidence=state.log_evidence + log_increment,
        step_size=step_size,
        inverse_mass=inverse_mass,
    )
    info = SMCInfo(new_temperature, ess, resample, acceptance_rate, log_increment)
    return new_state, info


def _particle_sharding(num_particles):
    """Shard the particle axis over all devices when there are several and N divides evenly.

    The program stays one global computation (GSPMD): resampling gathers with the global
    weights, so N devices give the answer of one device up to float reduction order.
    """
    devices = jax.devices()
    if len(devices) < 2 or num_particles % len(devices):
        return None
    mesh = jax.sharding.Mesh(np.array(devices), ("particles",))
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("particles"))


def _program(
    target,
    num_particles,
    *,
    max_steps,
    temperatures,
    sharding=None,
    schedule="temperature",
    **step_kwargs,
):
    """Pure ``run(key) -> (state, trace, num_steps, error, (bad index, bad position))``: the
    whole run in one while_loop. A NaN log density at a prior particle stops it before the first
    step and reports that particle."""
    terms = _terms_fn(target, schedule)
    kernel = step_kwargs["kernel"]
    step_size = adaptation.initial_step_size(kernel, target.dim)
    ladder = None if temperatures is None else jnp.asarray(temperatures)

    def run(key):
        key_init, key_loop = jax.random.split(key)
        positions = jax.vmap(target.draw_z)(jax.random.split(key_init, num_particles))
        if sharding is not None:
            positions = jax.lax.with_sharding_constraint(positions, sharding)
        state = init(positions, terms, step_size, step_kwargs.get("batch_size"))
        nan = jnp.isnan(state.log_prior) | jnp.isnan(state.log_likelihood).reshape(
            num_particles, -1
        ).any(-1)
        first_nan = jnp.argmax(nan)
        dtype = positions.dtype
        trace = SMCInfo(
            temperature=jnp.zeros((max_steps,), dtype),
            ess=jnp.zeros((max_steps,), dtype),
            resampled=jnp.zeros((max_steps,), bool),
            acceptance_rate=jnp.zeros((max_steps,), dtype),
            log_evidence_increment=jnp.zeros((max_steps,), dtype),
        )

        def cond(carry):
            state, _, i, error = carry
            return (state.temperature < 1.0) & (error == _OK) & (i < max_steps)

        def body(carry):
            state, trace, i, _ = carry
            fixed = None if ladder is None else ladder[jnp.minimum(i + 1, ladder.shape[0] - 1)]
            new_state, info = step(
                jax.random.fold_in(key_loop, i), state, terms, temperature=fixed, **step_kwargs
            )
            # Every particle with weight has log L = −inf: any λ > 0 kills them all.
            finite = jnp.isfinite(state.log_likelihood)
            finite = finite if finite.ndim == 1 else jnp.all(finite, axis=-1)
            live = jnp.isfinite(state.log_weights) & finite
            dead = ~jnp.any(live)
            new_state = jax.tree.map(lambda old, new: jnp.where(dead, old, new), state, new_state)
            if sharding is not None:
                new_state = new_state._replace(
                    position=jax.lax.with_sharding_constraint(new_state.position, sharding)
                )
            trace = jax.tree.map(lambda t, v: t.at[i].set(v), trace, info)
            error = jnp.where(dead, _ALL_IMPOSSIBLE, _OK)
            stalled = (new_state.temperature - state.temperature) <= 1e-12
            error = jnp.where((error == _OK) & stalled, _STALLED, error)
            return new_state, trace, i + 1, error

        start = jnp.where(jnp.any(nan), _NAN_AT_START, _OK)
        state, trace, num_steps, error = jax.lax.while_loop(
            cond, body, (state, trace, jnp.zeros((), jnp.int32), start)
        )
        error = jnp.where((error == _OK) & (state.temperature < 1.0), _TOO_MANY_STEPS, error)
        return state, trace, num_steps, error, (first_nan, positions[first_nan])

    return run


def _check_settings(kernel, num_particles, target_ess, resampling_scheme, num_mcmc_steps):
    if kernel not in _KERNELS:
        raise ProbinferError(f"kernel must be one of {sorted(_KERNELS)}, got '{kernel}'.")
    if int(num_particles) < 2:
        raise ProbinferError(
            f"SMC needs at least 2 particles (got {num_particles}); use a few hundred or more."
        )
    if not 0.0 < target_ess < 1.0:
        raise ProbinferError(f"target_ess is a fraction in (0, 1), got {target_ess}.")
    if resampling_scheme not in resampling.RESAMPLERS:
        raise ProbinferError(
            f"resampling must be one of {sorted(resampling.RESAMPLERS)}, got '{resampling_scheme}'."
        )
    if int(num_mcmc_steps) < 1:
        raise ProbinferError(f"num_mcmc_steps must be ≥ 1, got {num_mcmc_steps}.")


def smc(
    target,
    *,
    key,
    num_particles=1000,
    kernel="hmc",
    target_ess=0.5,
    resampling="systematic",
    resample_threshold=0.5,
    num_mcmc_steps=10,
    num_integration_steps=10,
    target_accept=None,
    temperatures=None,
    max_steps=500,
    shard=True,
    waste_free=None,
    batch_size=None,
    schedule="temperature",
):
    """Adaptive tempered SMC from the prior to the posterior, with an evidence estimate.

    Args:
        target: compiled :class:`~probinfer.Target` (continuous latents, proper prior).
        key: int seed or PRNG key.
        num_particles: N.
        kernel: mutation kernel ``"hmc"`` (default), ``"mala"`` or ``"rwm"``.
        target_ess: conditional-ESS fraction each new temperature keeps (adaptive ladder).
        resampling: ``"systematic"``, ``"stratified"``, ``"residual"`` or ``"multinomial"``.
        resample_threshold: resample when ESS < threshold · N.
        num_mcmc_steps: kernel steps per particle per temperature.
        num_integration_steps: leapfrog steps per HMC step.
        target_accept: acceptance the step size is steered to (0.65 HMC, 0.57 MALA, 0.234 RWM).
        temperatures: a fixed increasing ladder from 0 to 1 instead of the adaptive one.
        max_steps: bound on the number of temperatures.
        waste_free: a chain length P to run waste-free SMC (Dau & Chopin 2022): N / P
            resampled particles each run P − 1 kernel steps and all N states are kept; N must
            be a multiple of P. None (default): resample-then-move with ``num_mcmc_steps``.
        schedule: ``"temperature"`` (likelihood tempering, π_λ ∝ p(θ) p(D | θ)^λ) or ``"data"``
            (data annealing: λ = k/N is the posterior of the first k data points, the datum in
            between tempered; needs ``data`` marked and every observed site in the data plate).
            The adaptive ladder and ``temperatures`` work with both.
        batch_size: move and evaluate the particles in blocks of this many (``lax.map``), so a
            million particles fit in memory; None (default) does all at once.
        shard: split the particles over all devices when there are several (and N is a
            multiple of their number); the result equals the one-device result for the same key.

    Returns:
        Posterior with draws ``(1, N, *site_shape)``, normalised ``log_weights``,
        ``log_evidence`` and diagnostics ``temperatures``, ``ess``, ``resampled``,
        ``acceptance_rate``, ``num_steps``, ``step_size``.

    Example:
        >>> post = pi.smc(target, key=0, num_particles=2000)    # doctest: +SKIP
        >>> post.log_evidence                                    # doctest: +SKIP
    """
    _check_settings(kernel, num_particles, target_ess, resampling, num_mcmc_steps)
    if schedule not in ("temperature", "data"):
        raise ProbinferError(f"schedule must be 'temperature' or 'data', got '{schedule}'.")
    if schedule == "data":
        target.check_minibatchable()
    if waste_free is not None and (int(waste_free) < 2 or int(num_particles) % int(waste_free)):
        raise ProbinferError(
            f"waste_free is a chain length P ≥ 2 dividing num_particles; got P={waste_free} "
            f"for N={num_particles}."
        )
    target.check_continuous()
    target.check_proper()
    if temperatures is not None:
        temperatures = np.asarray(temperatures, np.float64)
        if temperatures[0] != 0.0 or temperatures[-1] != 1.0 or np.any(np.diff(temperatures) <= 0):
            raise ProbinferError("temperatures must increase strictly from 0 to 1.")
        max_steps = len(temperatures) - 1
    key = as_key(key)
    run = _compiled(
        target,
        int(num_particles),
        max_steps=int(max_steps),
        temperatures=None if temperatures is None else tuple(temperatures.tolist()),
        kernel=kernel,
        target_ess=float(target_ess),
        resampling_scheme=resampling,
        resample_threshold=float(resample_threshold),
        num_mcmc_steps=int(num_mcmc_steps),
        num_integration_steps=int(num_integration_steps),
        target_accept=target_accept,
        sharding=_particle_sharding(int(num_particles)) if shard else None,
        chain_length=None if waste_free is None else int(waste_free),
        batch_size=None if batch_size is None else int(batch_size),
        schedule=schedule,
    )
    state, trace, num_steps, error, first_nan = run(key)
    num_steps, error = int(num_steps), int(error)
    trace = jax.tree.map(lambda x: np.asarray(x)[:num_steps], trace)
    _raise_for(error, target, trace, num_steps, max_steps, first_nan)
    constrained = jax.vmap(target.constrain)(state.position)
    diagnostics = {
        "temperatures": np.concatenate([[0.0], trace.temperature]),
        "ess": trace.ess,
        "resampled": trace.resampled,
        "acceptance_rate": trace.acceptance_rate,
        "log_evidence_increments": trace.log_evidence_increment,
        "num_steps": num_steps,
        "step_size": float(state.step_size),
        "inverse_mass_matrix": np.asarray(state.inverse_mass),
    }
    settings = {
        "num_particles": int(num_particles),
        "kernel": kernel,
        "target_ess": target_ess,
        "resampling": resampling,
        "resample_threshold": resample_threshold,
        "num_mcmc_steps": int(num_mcmc_steps),
        "num_integration_steps": int(num_integration_steps) if kernel == "hmc" else None,
        "fixed_ladder": temperatures is not None,
        "waste_free": waste_free,
        "batch_size": batch_size,
        "schedule": schedule,
        "devices": jax.device_count() if shard and _particle_sharding(int(num_particles)) else 1,
    }
    return Posterior(
        jax.tree.map(lambda x: np.asarray(x)[None], constrained),
        method="smc",
        log_weights=np.asarray(state.log_weights)[None],
        log_evidence=float(state.log_evidence),
        diagnostics=diagnostics,
        settings=settings,
    )


# Compiled programs per target and settings, so repeated runs (seeds, benchmarks) compile once.
_CACHE = weakref.WeakKeyDictionary()


def _compiled(target, num_particles, **settings):
    cache = _CACHE.setdefault(target, {})
    signature = (num_particles, tuple(sorted(settings.items())))
    if signature not in cache:
        cache[signature] = jax.jit(_program(target, num_particles, **settings))
    return cache[signature]


def _raise_for(error, target, trace, num_steps, max_steps, first_nan):
    temperature = float(trace.temperature[-1]) if num_steps else 0.0
    if error == _NAN_AT_START:
        particle, position = first_nan
        raise NonFiniteError(
            f"SMC on '{target.name}': the log density is NaN for prior particle {int(particle)} "
            f"at temperature 0; {target.explain_nonfinite(position)}"
        )
    if error == _ALL_IMPOSSIBLE:
        raise NonFiniteError(
            f"SMC on '{target.name}': every particle has zero likelihood (log L = −inf) at "
            f"temperature {temperature:.3g} (step {num_steps}); the data are impossible under "
            "all prior draws — check the data against the likelihood's support, or use a prior "
            "that covers the region the data point to."
        )
    if error == _STALLED:
        raise ProbinferError(
            f"SMC on '{target.name}': the temperature stopped rising at {temperature:.3g} "
            f"(step {num_steps}): the particle system is degenerate. Use more particles, more "
            "MCMC steps per temperature (num_mcmc_steps) or a lower target_ess."
        )
    if error == _TOO_MANY_STEPS:
        raise ProbinferError(
            f"SMC on '{target.name}': reached temperature {temperature:.3g} after max_steps="
            f"{max_steps} steps; raise max_steps or lower target_ess."
        )


def smc_draws(target, key, num_samples, *, num_particles=None, **settings):
    """Pure, traceable core of :func:`smc`: ``num_samples`` constrained draws resampled from the
    final weighted particles (no host checks; used by :func:`probinfer.calibrate`)."""
    num_particles = int(num_particles or max(num_samples, 500))
    kernel = settings.pop("kernel", "hmc")
    run = _program(
        target,
        num_particles,
        max_steps=int(settings.pop("max_steps", 500)),
        temperatures=settings.pop("temperatures", None),
        kernel=kernel,
        target_ess=settings.pop("target_ess", 0.5),
        resampling_scheme=settings.pop("resampling", "systematic"),
        resample_threshold=settings.pop("resample_threshold", 0.5),
        num_mcmc_steps=int(settings.pop("num_mcmc_steps", 10)),
        num_integration_steps=int(settings.pop("num_integration_steps", 10)),
        target_accept=settings.pop("target_accept", None),
        chain_length=settings.pop("waste_free", None),
        batch_size=settings.pop("batch_size", None),
        schedule=settings.pop("schedule", "temperature"),
    )
    if settings:
        raise ProbinferError(f"unknown SMC setting(s): {sorted(settings)}.")
    key_run, key_draw = jax.random.split(key)
    state = run(key_run)[0]
    index = resampling.multinomial(key_draw, state.log_weights, num_samples)
    return target.constrain(state.position[index])
