"""``mcmc``: adaptive MCMC chains (NUTS by default; HMC, MALA or random walk) on a
:class:`~probinfer.Target`.

NUTS is NumPyro's, with its own Stan-style warm-up (:mod:`probinfer.kernels.nuts`). For the
fixed-length kernels the warm-up follows Stan too: the step size is tuned by dual averaging to an acceptance target (Hoffman &
Gelman 2014), and a diagonal inverse mass matrix is estimated from the chain in doubling windows
(Stan reference manual). Chains are independent and vmapped; warm-up and sampling are one jitted
``lax.scan`` each. The kernels are the shared ones in :mod:`probinfer.kernels`.
"""

import hashlib

import jax
import jax.numpy as jnp
import numpy as np

from probinfer import devices as _devices
from probinfer import health, kernels
from probinfer._utils import as_key, defaults_of, renamed_keywords
from probinfer.checkpoint import boundaries, fingerprint, path_for, run_chunks
from probinfer.errors import ProbinferError
from probinfer.kernels import adaptation
from probinfer.kernels.nuts import tree_depth
from probinfer.kernels.program import Program, warmed_up, whole_run
from probinfer.kernels.program import program as _chain_program
from probinfer.posterior import Posterior
from probinfer.programs import cached_program
from probinfer.progress import should_show

__all__ = ["mcmc", "mcmc_draws"]


@renamed_keywords("mcmc")
def mcmc(
    target,
    *,
    key,
    kernel="nuts",
    num_chains=4,
    num_draws=1000,
    num_warmup=1000,
    step_size=None,
    target_accept=None,
    thinning=1,
    init=None,
    restart=True,
    progress="auto",
    devices=None,
    checkpoint=None,
    checkpoint_every=None,
):
    """Run ``num_chains`` adaptive MCMC chains and return a :class:`~probinfer.Posterior`.

    Args:
        target: a compiled :class:`~probinfer.Target` (continuous latents).
        key: int seed or JAX PRNG key.
        kernel: ``"nuts"`` (default: NumPyro's No-U-Turn Sampler), ``"mams"`` (Metropolis-
            adjusted microcanonical HMC, BlackJAX's; its trajectory length tuned in warm-up),
            ``"hmc"`` (16 leapfrog steps), ``"mala"``, ``"rwm"`` or a
            :class:`~probinfer.kernels.Kernel`
            (``probinfer.kernels.nuts(dense_mass=True)``,
            ``probinfer.kernels.hmc(num_integration_steps=32)``, or your own).
        num_chains: independent chains (vmapped; sharded over ``devices``; R-hat needs ≥ 2).
        num_draws: kept draws per chain (after thinning).
        num_warmup: adaptation steps per chain (discarded).
        step_size: initial step size; adapted during warm-up (a dimension-based guess if None).
        target_accept: acceptance rate the step size is tuned to (the kernel's own by default:
            0.8 NUTS and HMC, 0.9 MAMS, 0.57 MALA, 0.234 RWM).
        thinning: keep every ``thinning``-th draw.
        init: starting points — ``"uniform"`` (default: every unconstrained coordinate uniform
            on (−2, 2), as Stan and NumPyro; redrawn until the density is finite), ``"prior"``
            (prior draws), a dict of constrained site values (``site_shape`` or
            ``(num_chains, *site_shape)``) or unconstrained ``z`` (``(dim,)`` or
            ``(num_chains, dim)``). Prior draws of heavy-tailed priors start chains where
            warm-up can adapt to nothing (``experiments/mcmc/starts.py`` measures it).
        restart: after warm-up, re-start each chain that adapted to nothing
            (:func:`probinfer.health.stuck_chains`: a step size under a hundredth of the median
            chain's, or a log density far below the others') from another chain's position and
            warm it up again; ``diagnostics["restarted_chains"]`` counts them. A chain still stuck
            after that is named in the run's warnings.
        progress: ``True``, ``False`` or ``"auto"`` (a bar on a terminal for long runs; off
            one, a line on stderr each minute once the run has taken a minute).
        devices: where the chains run (:mod:`probinfer.devices`; None: all local devices).
        checkpoint: a folder (the state goes to ``<folder>/mcmc.npz``) or an ``.npz`` path; the
            run is saved after every ``checkpoint_every`` steps (default a tenth of the run) and
            a run started on an existing checkpoint resumes from it, with the draws of an
            uninterrupted run (:mod:`probinfer.checkpoint`).

    Returns:
        Posterior with draws ``(num_chains, num_draws, *site_shape)`` and diagnostics
        ``acceptance_rate`` (per chain), ``step_size`` (per chain), ``inverse_mass_matrix``
        ``(num_chains, dim)`` (NUTS: the diagonal, or the dense matrix ``(num_chains, dim,
        dim)``), ``num_divergent`` (per chain), ``log_density`` and ``is_divergent`` (per draw);
        NUTS adds ``num_integration_steps``, ``tree_depth`` and ``energy`` per draw and
        ``e_bfmi`` per chain; MAMS adds ``num_integration_steps`` per draw (two gradients each)
        and the tuned ``trajectory_length`` per chain. ``warnings``: the run's health sentences
        (:mod:`probinfer.health`), each also raised as a ``ProbinferWarning``.

    Example:
        >>> target = pi.compile(pi.models.eight_schools.noncentered, *pi.models.eight_schools.DATA)  # doctest: +SKIP
        >>> post = pi.mcmc(target, key=0, num_chains=4)                                             # doctest: +SKIP
    """
    kernel = kernels.get(kernel)
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
    positions = target.starting_points(init, num_chains, key=key_init, default="uniform")
    target_accept, step_size = _defaults(kernel, target.dim, target_accept, step_size)
    show = should_show(progress, num_warmup + num_draws * thinning)
    if not show and progress == "auto":  # off a terminal: a log line a minute after a minute
        show = "log"
    settings = {
        "kernel": kernel.name,
        **dict(kernel.options),
        "num_chains": num_chains,
        "num_draws": num_draws,
        "num_warmup": num_warmup,
        "target_accept": target_accept,
        "thinning": thinning,
    }
    state, (positions, log_density, acceptance, divergent, *extra), final_step, restarted = (
        _run_chunked(
            target,
            kernel,
            positions,
            key_warmup,
            key_sample,
            settings={**settings, "step_size": step_size},
            show=show,
            devices=devices,
            checkpoint=checkpoint,
            checkpoint_every=checkpoint_every,
            restart=restart,
        )
    )
    constrain = cached_program(
        target,
        "constrain-chains",
        lambda: target.jit(lambda t: jax.vmap(jax.vmap(t.constrain))),
        share=True,
    )
    constrained = constrain(positions)
    inverse_mass = state.adapt_state.inverse_mass_matrix if kernels.is_nuts(kernel) else state[3]
    acceptance = np.asarray(acceptance)
    diagnostics = {
        "acceptance_rate": acceptance.mean(axis=1),
        "step_size": np.asarray(final_step),
        "inverse_mass_matrix": np.asarray(inverse_mass),
        "num_divergent": np.asarray(divergent).sum(axis=1),
        "log_density": np.asarray(log_density),
        "is_divergent": np.asarray(divergent),
        "restarted_chains": restarted.astype(np.int32),
    }
    if not kernels.is_nuts(kernel) and hasattr(state[0], "trajectory_length"):
        diagnostics["trajectory_length"] = np.asarray(state[0].trajectory_length)
    if extra and not kernels.is_nuts(kernel):
        diagnostics["num_integration_steps"] = np.asarray(extra[0])
    elif extra:
        steps, energy = np.asarray(extra[0]), np.asarray(extra[1])
        diagnostics["num_integration_steps"] = steps
        diagnostics["tree_depth"] = np.asarray(tree_depth(steps))
        diagnostics["energy"] = energy
        diagnostics["e_bfmi"] = health.e_bfmi(energy)
    settings["devices"] = _devices.devices_used(num_chains, devices)
    settings["restart"] = bool(restart)
    post = Posterior(constrained, method="mcmc", diagnostics=diagnostics, settings=settings)
    return health.attach(post)


def _run_chunked(
    target,
    kernel,
    positions,
    key_warmup,
    key_sample,
    *,
    settings,
    show,
    devices,
    checkpoint,
    checkpoint_every,
    restart,
):
    """Warm-up and sampling in jitted chunks (one per phase without a checkpoint), saved after
    each chunk when ``checkpoint`` is set; stuck chains re-started at the end of warm-up
    (:func:`_restart_stuck`) when ``restart``. Returns ``(state, trace (chains first), step
    size, restarted (num_chains,) bool)``."""
    num_warmup, thinning = settings["num_warmup"], settings["thinning"]
    total = settings["num_draws"] * thinning
    program = cached_program(
        target,
        ("mcmc", kernel, tuple(sorted(settings.items())), show, str(positions.dtype)),
        lambda: _jitted(
            target,
            lambda t: _chain_program(
                t,
                positions.dtype,
                kernel=kernel,
                show=show,
                **{
                    k: v
                    for k, v in settings.items()
                    if k not in ("kernel",) + tuple(dict(kernel.options))
                },
            ),
        ),
        share=True,
    )
    collect, window_end = adaptation.warmup_schedule(num_warmup)
    warm_keys = jax.random.split(key_warmup, num_warmup)
    sample_keys = jax.random.split(key_sample, total)

    restarted = np.zeros(positions.shape[0], bool)
    place = lambda x: _devices.shard_leading(x, devices)  # noqa: E731

    def advance(state, start, stop):
        nonlocal restarted
        if stop <= num_warmup:
            steps = slice(start, stop)
            state = program.warmup(
                state, jnp.arange(start, stop), warm_keys[steps], collect[steps], window_end[steps]
            )
            if stop == num_warmup and restart:
                state, restarted = _restart_stuck(
                    program, state, jax.random.fold_in(key_warmup, 1), num_warmup, place
                )
            return state, []
        steps = slice(start - num_warmup, stop - num_warmup)
        state, trace = program.sample(
            state, jnp.arange(steps.start, steps.stop), sample_keys[steps]
        )
        return state, list(trace)

    path = path_for(checkpoint, "mcmc")
    every = (
        num_warmup + total if path is None else int(checkpoint_every or (num_warmup + total) // 10)
    )
    every_draws = max(1, every // thinning)
    ends = boundaries(num_warmup, max(1, every)) + [
        num_warmup + e for e in boundaries(total, every_draws * thinning)
    ]
    state = program.start(place(positions), key_warmup)
    record = fingerprint(
        key_sample,
        target,
        **{
            **{k: repr(v) for k, v in settings.items()},
            **dict(kernel.options),
            "restart": bool(restart),
            "start": hashlib.sha1(np.asarray(positions).tobytes()).hexdigest(),
        },
    )
    state, trace = run_chunks(
        advance,
        state,
        ends,
        path=path,
        fingerprint=record,
        restore=place,
    )
    trace = [np.swapaxes(x, 0, 1) for x in trace]  # (chains, draws, ...)
    return state, trace, np.asarray(program.step_size(state)), restarted


def _restart_stuck(program, state, key, num_warmup, place):
    """Re-start the chains that adapted to nothing (:func:`probinfer.health.stuck_chains`) from
    the positions of randomly chosen healthy chains and run the whole warm-up again for them; the
    healthy chains keep their state exactly. Returns ``(state, restarted (num_chains,) bool)``.

    Every chain runs the second warm-up (the program is vmapped over all of them, so this costs
    the time of one warm-up and no recompilation) and only the stuck ones take its result.
    """
    positions, log_density = program.position(state)
    step = np.asarray(program.step_size(state))
    stuck = health.stuck_chains(step, np.asarray(log_density), positions.shape[-1])
    if not stuck.any() or stuck.all():
        return state, np.zeros(stuck.shape, bool)
    key_donor, key_warmup = jax.random.split(key)
    healthy = jnp.asarray(np.flatnonzero(~stuck))
    donors = jax.random.choice(key_donor, healthy, (positions.shape[0],))
    starts = jnp.where(jnp.asarray(stuck)[:, None], positions[donors], positions)
    fresh = warmed_up(program, place(starts), key_warmup, num_warmup)
    mask = jnp.asarray(stuck)

    def pick(new, old):
        return jnp.where(mask.reshape((-1,) + (1,) * (jnp.ndim(old) - 1)), new, old)

    return jax.tree.map(pick, fresh, state), stuck


def _jitted(target, make):
    """The compiled pieces of ``make(target)``: the data are their argument (:meth:`Target.jit`),
    so one program serves every conditioned target of the model; ``step_size`` and ``position``
    read the state only."""
    program = make(target)
    return Program(
        target.jit(lambda t: make(t).start),
        target.jit(lambda t: make(t).warmup),
        target.jit(lambda t: make(t).sample),
        program.step_size,
        program.position,
    )


_DRAWS_SETTINGS = ("kernel", "num_chains", "num_warmup", "step_size", "target_accept", "thinning")


def mcmc_draws(target, key, n, **settings):
    """Pure, traceable core of :func:`mcmc`: ``n`` pooled constrained draws.

    No host-side checks and no progress bar, so it can run under ``jit`` and ``vmap`` — the
    calibration layer vmaps it over simulated data sets (``target`` from
    :meth:`Target.condition`). Chains start at uniform(−2, 2) draws (:meth:`Target.init_fn`).
    ``settings``: any of ``kernel``, ``num_chains``, ``num_warmup``, ``step_size``,
    ``target_accept`` and ``thinning``, with :func:`mcmc`'s defaults (read from its signature,
    so the two cannot drift apart). Unlike :func:`mcmc` it does not re-start stuck chains (that
    decision is made on the host).

    Returns ``{site: (n, *site_shape)}``: the first ``n`` of the
    ``num_chains × ceil(n / num_chains)`` kept draws.

    >>> draws = jax.jit(lambda k: mcmc_draws(target, k, 1000))(key)   # doctest: +SKIP
    """
    unknown = set(settings) - set(_DRAWS_SETTINGS)
    if unknown:
        raise ProbinferError(
            f"unknown mcmc setting(s) {sorted(unknown)} for mcmc_draws; it takes "
            f"{list(_DRAWS_SETTINGS)}."
        )
    settings = {**defaults_of(mcmc, _DRAWS_SETTINGS), **settings}
    kernel, num_chains, num_warmup = (
        settings["kernel"],
        settings["num_chains"],
        settings["num_warmup"],
    )
    step_size, target_accept, thinning = (
        settings["step_size"],
        settings["target_accept"],
        settings["thinning"],
    )
    kernel = kernels.get(kernel)
    num_draws = -(-int(n) // int(num_chains))
    key_init, key_warmup, key_sample = jax.random.split(key, 3)
    positions, _ = target.init_fn(key_init, num_chains, strategy="uniform")
    target_accept, step_size = _defaults(kernel, target.dim, target_accept, step_size)
    program = _chain_program(
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
    _, trace = whole_run(
        program, key_warmup, key_sample, positions, num_warmup, num_draws * thinning
    )
    # trace rows are draws, then chains: pool chain by chain as the Posterior would.
    positions = jnp.swapaxes(trace[0], 0, 1).reshape(num_chains * num_draws, -1)[:n]
    return jax.vmap(target.constrain)(positions)


def _defaults(kernel, dim, target_accept, step_size):
    target_accept = kernel.target_accept if target_accept is None else target_accept
    step_size = kernel.initial_step_size(dim) if step_size is None else step_size
    return target_accept, step_size
