"""``smc``: the adaptive tempered SMC runner (the whole run in one jitted ``while_loop``), and
``smc_draws``, its pure form for the calibration layer. Both read their defaults from ``smc``'s
signature, so they cannot drift apart.

Kernel layer: :mod:`~probinfer.inference.smc.tempered`; the path of distributions:
:mod:`~probinfer.inference.smc.tempering`; failures and their sentences:
:mod:`~probinfer.inference.smc.failures`. The module passes our ~400-line rule by ``smc``'s
docstring (every setting, its default and why, is documented where the user reads it); the code
itself is the settings check, one cached program and its chunked run.
"""

import inspect
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from probinfer import devices as _devices
from probinfer import health, kernels, meanfield
from probinfer._utils import as_key, renamed_keywords
from probinfer.checkpoint import boundaries, fingerprint, path_for, run_chunks
from probinfer.errors import ProbinferError
from probinfer.inference.smc import failures
from probinfer.inference.smc import resampling as resampling_module
from probinfer.inference.smc.tempered import SMCInfo, init, step
from probinfer.inference.smc.tempering import terms_fn
from probinfer.kernels.nuts import not_a_transition
from probinfer.posterior import Posterior
from probinfer.programs import cached_program
from probinfer.progress import ProgressBar, should_show

__all__ = ["smc", "smc_draws"]

# SMC's own defaults for named kernels: shorter HMC trajectories than a long MCMC chain needs
# (each temperature only has to decorrelate the particles from their ancestors), and a lower
# acceptance target for the per-temperature Robbins–Monro step adaptation. Above HIGH_DIMENSION
# HMC takes 5 leapfrog steps, not 10: there the adaptive move length is set by the slowest
# direction, and halving the trajectory left the moves per temperature as they were (item
# response, 501 dims: 232 moves vs 236, 142 s vs 251 s, 0.09 sd / 8 % vs 0.10 / 8 %; random
# effects, 507 dims: 72 vs 100, 46 s vs 117 s, 0.11 / 7 % vs 0.10 / 8 %).
_TARGET_ACCEPT = {"hmc": 0.65}
HIGH_DIMENSION = 100
LARGE_DATA = 10_000


def _named_options(name, dim):
    """SMC's options for the kernel registered as ``name`` at ``dim`` dimensions."""
    if name == "hmc":
        return {"num_integration_steps": 10 if int(dim) <= HIGH_DIMENSION else 5}
    return {}


# reference=None: a Gaussian start above HIGH_DIMENSION or from LARGE_DATA marked rows (the
# prior otherwise), fitted by
# mean-field ADVI with these settings. Its scales are not widened: ADVI under-disperses, but the
# moves at every temperature reach the tails, and widening costs temperatures — on the 501-dim
# item-response model ×1.5 took 18 temperatures and 424 s, ×1 10 and 251 s, at the same accuracy
# (0.10 sd / 7–8 %): widening d scales by w adds d (w² − 1 − 2 log w) / 2 nats (110 here) of
# KL divergence for the ladder to cross.
REFERENCE_FIT = {"num_steps": 2000, "batch_size": 1024, "learning_rate": 3e-2}


@renamed_keywords("smc")
def smc(
    target,
    *,
    key,
    num_particles=1000,
    kernel="hmc",
    target_ess=0.5,
    resampling="systematic",
    resample_threshold=1.0,
    num_mcmc_steps=None,
    target_accept=None,
    temperatures=None,
    max_steps=500,
    waste_free=None,
    annealing="temperature",
    reference=None,
    block_size=None,
    progress="auto",
    devices=None,
    checkpoint=None,
    checkpoint_every=None,
):
    """Adaptive tempered SMC from the prior to the posterior, with an evidence estimate.

    Args:
        target: compiled :class:`~probinfer.Target` (continuous latents, proper prior).
        key: int seed or PRNG key.
        num_particles: N.
        kernel: the mutation kernel — ``"hmc"`` (default; 10 leapfrog steps, 5 above 100
            dimensions: see ``HIGH_DIMENSION`` in the source), ``"mala"``,
            ``"rwm"`` or any :class:`~probinfer.kernels.Kernel` (e.g.
            ``probinfer.kernels.hmc(num_integration_steps=20)`` or your own).
        target_ess: conditional-ESS fraction each new temperature keeps (adaptive ladder).
        resampling: ``"systematic"``, ``"stratified"``, ``"residual"`` or ``"multinomial"``.
        resample_threshold: resample when ESS < threshold · N. The default 1 resamples at every
            temperature: the adaptive ladder already brings the ESS down to ``target_ess · N``
            at each step, and moving equally weighted particles gave a smaller log Z spread
            than 0.5 on every zoo model tried (up to 2.3× on the breast-cancer regression).
        num_mcmc_steps: kernel steps per particle per temperature; None (default): adaptive —
            steps in blocks of 2 until the rank correlation of every coordinate (and of the log
            density) between the particles before and after the move is below
            max(0.1, 3/√N), at most 50 (``diagnostics["num_mcmc_steps"]`` records them).
        target_accept: acceptance the step size is steered to (0.65 for HMC, the kernel's own
            otherwise).
        temperatures: a fixed increasing ladder from 0 to 1 instead of the adaptive one.
        max_steps: bound on the number of temperatures.
        waste_free: a chain length P to run waste-free SMC (Dau & Chopin 2022): N / P
            resampled particles each run P − 1 kernel steps and all N states are kept; N must
            be a multiple of P. None (default): resample-then-move with ``num_mcmc_steps``.
        annealing: ``"temperature"`` (likelihood tempering, π_λ ∝ p(θ) p(D | θ)^λ) or ``"data"``
            (data annealing: λ = k/N is the posterior of the first k data points, the datum in
            between tempered; needs ``data`` marked and every observed site in the data plate).
            The adaptive ladder and ``temperatures`` work with both.
        reference: where the path starts — ``"prior"``, or ``"gaussian"``: a mean-field
            Gaussian fitted by ADVI (:func:`probinfer.meanfield.fit_mean_field`, minibatched
            when the data are marked), and the path
            ``q^(1−λ) (p L)^λ`` (:mod:`~probinfer.inference.smc.tempering`; the evidence is
            unchanged). None (default): ``"gaussian"`` above 100 dimensions or from 10,000
            marked data rows (``data=`` at compile), ``"prior"`` otherwise. From the prior the ladder needs about √dim × log(prior-to-posterior
            contraction) temperatures — on a 501-dimensional item-response model hundreds, each
            moving 1,000 particles through 30,000 rows — while the Gaussian start needed 10
            (``experiments/bench/scale.py``). The prior stays the default at low dimension,
            where it is cheap and covers every mode: a Gaussian reference at one mode of a
            multimodal posterior can miss the others.
        block_size: move and evaluate the particles in blocks of this many (``lax.map``), so a
            million particles fit in memory; None (default) does all at once.
        progress: ``True``, ``False`` or ``"auto"``: a bar of the temperature's progress to 1
            on a terminal; off one (``"auto"``), a line on stderr each minute once the run has
            taken a minute (:class:`probinfer.progress.Heartbeat`).
        devices: where the particles live (:mod:`probinfer.devices`; None: all local devices,
            when N is a multiple of their number); the result equals one device's up to float
            reduction order.
        checkpoint: a folder (the particle system goes to ``<folder>/smc.npz``) or an ``.npz``
            path, saved after every ``checkpoint_every`` temperatures (default 10); a run
            started on an existing checkpoint resumes from it and gives the uninterrupted
            result (:mod:`probinfer.checkpoint`).

    Returns:
        Posterior with draws ``(1, N, *site_shape)``, normalised ``log_weights``,
        ``log_evidence`` and diagnostics ``temperatures``, ``ess``, ``resampled``,
        ``acceptance_rate``, ``num_steps``, ``step_size``, ``inverse_mass_matrix``.

    Example:
        >>> post = pi.smc(target, key=0, num_particles=2000)    # doctest: +SKIP
        >>> post.log_evidence                                    # doctest: +SKIP
    """
    settings = _settings(
        num_particles=num_particles,
        kernel=kernel,
        target_ess=target_ess,
        resampling=resampling,
        resample_threshold=resample_threshold,
        num_mcmc_steps=num_mcmc_steps,
        target_accept=target_accept,
        temperatures=temperatures,
        max_steps=max_steps,
        waste_free=waste_free,
        annealing=annealing,
        block_size=block_size,
        reference=reference,
        dim=target.dim,
        num_data=target.num_data,
    )
    target.check_continuous()
    target.check_proper()
    if annealing == "data":
        target.check_minibatchable()
    reference = _fit_reference(target, as_key(key), settings)
    if reference is None and settings["reference"] == "gaussian":
        settings["reference"] = "prior"  # the fit failed and said so: the prior's path instead
    sharding = _devices.leading_sharding(settings["num_particles"], devices)
    # On a terminal a bar; off one ("auto"), a log line a minute once the run passes a minute.
    bar_shown = should_show(progress, 500)
    show = bar_shown or progress == "auto"
    program, bar = cached_program(
        target,
        ("smc", tuple(settings.items()), sharding, show),
        lambda: _jitted(
            target, lambda t, bar: _program(t, bar, sharding=sharding, show=show, **settings)
        ),
        share=True,
    )
    bar.restart(show, log_only=not bar_shown)
    key = as_key(key)
    carry, key_loop, census = program.start(key, reference)
    census = failures.Census(*(np.asarray(x) for x in census))
    broken_sites = (
        failures.nonfinite_sites(target, census) if census.nan + census.positive_inf else []
    )
    if int(carry[3]) == failures.OK and census.nan + census.positive_inf:
        failures.warn_zero_weight(target, census, settings["num_particles"], broken_sites)
    _raise_at_start(int(carry[3]), target, settings, census)
    path = path_for(checkpoint, "smc")
    max_steps = settings["max_steps"]
    every = max_steps if path is None else int(checkpoint_every or 10)
    record = fingerprint(  # plain values only: a resumed run may be another process
        key,
        target,
        **{k: repr(v) for k, v in settings.items() if k != "kernel"},
        kernel=[settings["kernel"].name, list(settings["kernel"].options)],
    )
    carry, _ = run_chunks(
        lambda carry, start, stop: (program.advance(carry, key_loop, stop), []),
        carry,
        boundaries(max_steps, every),
        path=path,
        fingerprint=record,
        done=lambda carry: bool(carry[0].temperature >= 1.0) or int(carry[3]) != failures.OK,
    )
    state, trace, num_steps, error = program.finish(carry)
    num_steps, error = int(num_steps), int(error)
    trace = jax.tree.map(lambda x: np.asarray(x)[:num_steps], trace)
    failures.raise_for(error, target, trace, num_steps, settings, census)
    constrain = cached_program(
        target, "constrain", lambda: target.jit(lambda t: jax.vmap(t.constrain)), share=True
    )
    constrained = constrain(state.position)
    kernel = settings["kernel"]
    diagnostics = {
        "temperatures": np.concatenate([[0.0], trace.temperature]),
        "ess": trace.ess,
        "resampled": trace.resampled,
        "acceptance_rate": trace.acceptance_rate,
        "num_mcmc_steps": trace.num_mcmc_steps,
        "log_evidence_increments": trace.log_evidence_increment,
        "num_steps": num_steps,
        # Prior particles given weight zero at λ = 0 because their log likelihood was not finite.
        "nonfinite_prior_draws": {
            "nan": int(census.nan),
            "+inf": int(census.positive_inf),
            "-inf": int(census.negative_inf),
        },
        "nonfinite_sites": broken_sites,
        # One particle system = one chain: the chain axis first, as every runner's diagnostics.
        "step_size": np.asarray(state.step_size).reshape(1),
        "inverse_mass_matrix": np.asarray(state.inverse_mass)[None],
    }
    recorded = {
        **{k: v for k, v in settings.items() if k not in ("kernel", "temperatures")},
        "kernel": kernel.name,
        **dict(kernel.options),
        "fixed_ladder": temperatures is not None,
        "devices": 1 if sharding is None else _devices.num_devices(devices),
    }
    post = Posterior(
        jax.tree.map(lambda x: x[None], _devices.to_host(constrained)),
        method="smc",
        log_weights=_devices.to_host(state.log_weights)[None],
        log_evidence=float(state.log_evidence),
        diagnostics=diagnostics,
        settings=recorded,
    )
    return health.attach(post)


def _fit_reference(target, key, settings, traced=False):
    """``(mean, scale)`` of the Gaussian reference, or None for the prior (also when the fit
    diverged: a warning says so). ``traced``: the pure fit, inside a traced program
    (``smc_draws``)."""
    if settings["reference"] == "prior":
        return None
    key = jax.random.fold_in(key, 1)
    if traced:
        start = target.draw_z(jax.random.fold_in(key, 2), strategy="uniform")
        mean, scale = meanfield.fit_mean_field_traced(target, start, key, **REFERENCE_FIT)
    else:
        try:
            mean, scale = meanfield.fit_mean_field(target, key=key, **REFERENCE_FIT)
        except ProbinferError as error:
            warnings.warn(
                f"smc: {error} The path starts at the prior instead (reference='prior'; slower "
                "above 100 dimensions).",
                health.ProbinferWarning,
                stacklevel=3,
            )
            return None
    return mean, scale


def _raise_at_start(error, target, settings, census):
    """Failures the prior particles already show are raised before the loop is compiled: a NaN
    log prior, too few finite likelihoods, and — under likelihood tempering, where λ > 0 gives
    every particle weight λ log L — every particle impossible (log L = −inf). Under data
    annealing a particle impossible for later data may still move into the support first."""
    if error == failures.OK and settings["annealing"] == "temperature":
        if int(census.negative_inf) == settings["num_particles"]:
            error = failures.ALL_IMPOSSIBLE
    if error != failures.OK:
        failures.raise_for(error, target, None, 0, settings, census)


def _settings(
    *,
    num_particles,
    kernel,
    target_ess,
    resampling,
    resample_threshold,
    num_mcmc_steps,
    target_accept,
    temperatures,
    max_steps,
    waste_free,
    annealing,
    block_size,
    reference,
    dim,
    num_data=None,
):
    """Checked, hashable static settings of a run (the kernel resolved to an object; the
    reference resolved for a target of ``dim`` dimensions and ``num_data`` marked rows)."""
    if isinstance(kernel, str) and kernel in kernels.NAMES:
        kernel = kernels.get(kernel, **_named_options(kernel, dim))
    kernel = kernels.get(kernel)
    if kernels.is_nuts(kernel):
        not_a_transition()  # raises: NUTS has no standalone transition to move particles with
    if kernel.name == "mclmc":
        raise ProbinferError(
            "smc cannot move particles with the mclmc kernel: it is unadjusted (no Metropolis "
            "step), so its moves leave the tempered distributions invariant only approximately "
            "and the weights and evidence would be biased; use kernel='mams' (its adjusted twin)."
        )
    if target_accept is None:
        target_accept = _TARGET_ACCEPT.get(kernel.name, kernel.target_accept)
    if int(num_particles) < 2:
        raise ProbinferError(
            f"SMC needs at least 2 particles (got {num_particles}); use a few hundred or more."
        )
    if not 0.0 < target_ess < 1.0:
        raise ProbinferError(f"target_ess is a fraction in (0, 1), got {target_ess}.")
    if resampling not in resampling_module.RESAMPLERS:
        raise ProbinferError(
            f"resampling must be one of {sorted(resampling_module.RESAMPLERS)}, got '{resampling}'."
        )
    if num_mcmc_steps is not None and int(num_mcmc_steps) < 1:
        raise ProbinferError(
            f"num_mcmc_steps must be ≥ 1 or None (adaptive), got {num_mcmc_steps}."
        )
    if not 0.0 <= float(resample_threshold) <= 1.0:
        raise ProbinferError(
            f"resample_threshold is a fraction of N in [0, 1], got {resample_threshold}."
        )
    if annealing not in ("temperature", "data"):
        raise ProbinferError(f"annealing must be 'temperature' or 'data', got '{annealing}'.")
    if waste_free is not None and (int(waste_free) < 2 or int(num_particles) % int(waste_free)):
        raise ProbinferError(
            f"waste_free is a chain length P ≥ 2 dividing num_particles; got P={waste_free} "
            f"for N={num_particles}."
        )
    if reference is None:
        large = int(dim) > HIGH_DIMENSION or (num_data or 0) >= LARGE_DATA
        gaussian = large and annealing == "temperature"
        reference = "gaussian" if gaussian else "prior"
    if reference not in ("prior", "gaussian"):
        raise ProbinferError(f"reference must be 'prior' or 'gaussian', got {reference!r}.")
    if reference == "gaussian" and annealing == "data":
        raise ProbinferError(
            "reference='gaussian' tempers the whole likelihood; with annealing='data' the path "
            "starts at the prior (reference='prior')."
        )
    if temperatures is not None:
        ladder = np.asarray(temperatures, np.float64)
        if ladder[0] != 0.0 or ladder[-1] != 1.0 or np.any(np.diff(ladder) <= 0):
            raise ProbinferError("temperatures must increase strictly from 0 to 1.")
        temperatures, max_steps = tuple(ladder.tolist()), len(ladder) - 1
    return {
        "num_particles": int(num_particles),
        "kernel": kernel,
        "target_ess": float(target_ess),
        "resampling": resampling,
        "resample_threshold": float(resample_threshold),
        "num_mcmc_steps": None if num_mcmc_steps is None else int(num_mcmc_steps),
        "target_accept": float(target_accept),
        "temperatures": temperatures,
        "max_steps": int(max_steps),
        "waste_free": None if waste_free is None else int(waste_free),
        "annealing": annealing,
        "block_size": None if block_size is None else int(block_size),
        "reference": reference,
    }


class _Program(NamedTuple):
    """The run in pieces: ``start(key) -> (carry, key_loop, first NaN particle)``;
    ``advance(carry, key_loop, limit) -> carry`` runs temperatures until λ = 1, an error or
    ``limit`` steps in all (chunks for checkpoints); ``finish(carry) -> (state, trace,
    num_steps, error)``."""

    start: object
    advance: object
    finish: object


def _program(
    target,
    bar,
    *,
    num_particles,
    kernel,
    max_steps,
    temperatures,
    annealing,
    waste_free,
    reference,
    sharding=None,
    show=False,
    **step_settings,
):
    """The pure pieces of a run (:class:`_Program`; a NaN log density at a prior particle stops
    it before the first step and reports that particle); their callback advances ``bar`` (each
    run restarts it). ``reference`` names the start; its (mean, scale), or None for the prior,
    is an argument of ``start`` and rides in the carry (a resumed run keeps its reference)."""
    del reference
    step_size = kernel.initial_step_size(target.dim)
    ladder = None if temperatures is None else jnp.asarray(temperatures)
    block_size = step_settings["block_size"]

    def start(key, reference):
        key_init, key_loop = jax.random.split(key)
        keys = jax.random.split(key_init, num_particles)
        if reference is None:
            positions = jax.vmap(target.draw_z)(keys)
        else:
            mean, scale = reference
            positions = mean + scale * jax.vmap(lambda k: jax.random.normal(k, mean.shape))(keys)
        positions = _devices.constrain_leading(positions.astype(target.dtype), sharding)
        terms = terms_fn(target, annealing, reference)
        state = init(positions, terms, step_size, block_size)
        state, census, error = failures.admit(state, num_particles)
        dtype = positions.dtype
        trace = SMCInfo(
            temperature=jnp.zeros((max_steps,), dtype),
            ess=jnp.zeros((max_steps,), dtype),
            resampled=jnp.zeros((max_steps,), bool),
            acceptance_rate=jnp.zeros((max_steps,), dtype),
            log_evidence_increment=jnp.zeros((max_steps,), dtype),
            num_mcmc_steps=jnp.zeros((max_steps,), jnp.int32),
        )

        carry = (state, trace, jnp.zeros((), jnp.int32), error, reference)
        return carry, key_loop, census._replace(position=positions[census.first])

    def advance(carry, key_loop, limit):
        """Temperatures until λ = 1, an error, or ``limit`` steps in all."""

        def cond(carry):
            state, _, i, error, _ = carry
            return (
                (state.temperature < 1.0)
                & (error == failures.OK)
                & (i < jnp.minimum(limit, max_steps))
            )

        def body(carry):
            state, trace, i, _, reference = carry
            fixed = None if ladder is None else ladder[jnp.minimum(i + 1, ladder.shape[0] - 1)]
            new_state, info = step(
                jax.random.fold_in(key_loop, i),
                state,
                terms_fn(target, annealing, reference),
                kernel=kernel,
                temperature=fixed,
                chain_length=waste_free,
                **step_settings,
            )
            # Every particle with weight has log L = −inf: any λ > 0 kills them all.
            finite = jnp.isfinite(state.log_likelihood)
            finite = finite if finite.ndim == 1 else jnp.all(finite, axis=-1)
            live = jnp.isfinite(state.log_weights) & finite
            dead = ~jnp.any(live)
            new_state = jax.tree.map(lambda old, new: jnp.where(dead, old, new), state, new_state)
            new_state = new_state._replace(
                position=_devices.constrain_leading(new_state.position, sharding)
            )
            trace = jax.tree.map(lambda t, v: t.at[i].set(v), trace, info)
            error = jnp.where(dead, failures.ALL_IMPOSSIBLE, failures.OK)
            stalled = (new_state.temperature - state.temperature) <= 1e-12
            error = jnp.where((error == failures.OK) & stalled, failures.STALLED, error)
            if show:
                percent = jnp.floor(100 * new_state.temperature).astype(jnp.int32)
                jax.debug.callback(bar.update, percent - 1, new_state.temperature, i + 1)
            return new_state, trace, i + 1, error, reference

        return jax.lax.while_loop(cond, body, carry)

    def finish(carry):
        state, trace, num_steps, error, _ = carry
        error = jnp.where(
            (error == failures.OK) & (state.temperature < 1.0), failures.TOO_MANY_STEPS, error
        )
        return state, trace, num_steps, error

    return _Program(start, advance, finish)


def _jitted(target, make):
    """Every piece of ``make(target, bar)`` compiled with the data as its argument
    (:meth:`Target.jit`): one program per model and settings, shared by its conditioned
    targets; the bar its callbacks advance is made here, once."""
    bar = ProgressBar(100, "smc: temperature (%)", enabled=False)
    bar.describe = lambda _, temperature, steps: (
        f"temperature {float(temperature):.3g} after {int(steps)} steps"
    )
    pieces = [target.jit(lambda t, i=i: make(t, bar)[i]) for i in range(len(_Program._fields))]
    return _Program(*pieces), bar


_SETTING_NAMES = (
    "num_particles kernel target_ess resampling resample_threshold num_mcmc_steps target_accept "
    "temperatures max_steps waste_free annealing block_size reference"
).split()


def smc_draws(target, key, n, **settings):
    """Pure, traceable core of :func:`smc`: ``n`` constrained draws resampled from the final
    weighted particles (no host checks; used by :func:`probinfer.calibrate`, vmapped over data
    sets). Takes :func:`smc`'s settings with its defaults, except ``num_particles``, which
    defaults to ``max(n, 500)``. A run that fails (stalls, every particle impossible, too many
    steps, a NaN at the start) returns NaN draws, which :func:`~probinfer.calibrate` reports
    with the simulation's index — never plausible-looking draws.
    """
    unknown = set(settings) - set(_SETTING_NAMES)
    if unknown:
        raise ProbinferError(
            f"unknown SMC setting(s) {sorted(unknown)}; smc_draws takes {sorted(_SETTING_NAMES)}."
        )
    defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(smc).parameters.items()
        if name in _SETTING_NAMES
    }
    defaults["num_particles"] = max(int(n), 500)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resolved = _settings(**{**defaults, **settings}, dim=target.dim, num_data=target.num_data)
    program = _program(target, None, **resolved)  # no bar: show is False
    key_run, key_draw = jax.random.split(key)
    reference = _fit_reference(target, key_run, resolved, traced=True)
    carry, key_loop, _ = program.start(key_run, reference)
    state, _, _, error = program.finish(program.advance(carry, key_loop, resolved["max_steps"]))
    index = resampling_module.multinomial(key_draw, state.log_weights, n)
    draws = target.constrain(state.position[index])
    return jax.tree.map(lambda x: jnp.where(error == failures.OK, x, jnp.nan), draws)
