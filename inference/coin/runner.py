"""Particle inference by coin betting (Sharrock & Nemeth 2023, "Coin Sampling: Gradient-Based
Bayesian Inference without Learning Rates"), and SVGD, the baseline it removes the learning rate
from.

Every runner moves N particles on the Target's unconstrained space along a direction c(x):

* ``svgd``: c = φ, the SVGD direction (:mod:`.stein`), fed to an optax optimiser with a learning
  rate (``optax.adam`` by default, as most SVGD code; ``optax.sgd`` gives plain SVGD);
* ``coin_svgd``: c = φ fed to a coin-betting update with no learning rate;
* ``coin_ksdd``: c = −∇_x KSD²(x) (kernel Stein discrepancy descent, Korba et al. 2021), fed to
  the same betting update.

The betting update (ALGORITHMS §3), per particle and coordinate, with x₀ the starting point:

    L_t = max(L_{t−1}, |c_t|),   A_t = A_{t−1} + |c_t|,   R_t = max(R_{t−1} + c_t (x_t − x₀), 0),
    x_{t+1} = x₀ + (Σ_{s≤t} c_s) / (L_t (A_t + L_t)) · (L_t + R_t).

This is exactly ``optax.contrib.cocob`` with ``alpha=0`` (its denominator is
L · max(A + L, α L), which is L (A + L) for α ≤ 1; its default α = 100 bets less in the first
~100 steps, which the paper does not do) and the gradient −c: cocob's reward
max(R − g (x − x₀), 0) and cumulative −Σ g are the paper's with g = −c. So the update is cocob's,
not a copy of it.

Particles are split over ``devices`` (:mod:`probinfer.devices`): each step gathers all particles
and scores once and every device computes the direction for its own rows (the kernel sum is
all-to-all). Long runs checkpoint (``checkpoint=``, :mod:`probinfer.checkpoint`) after every
``checkpoint_every`` KSD records and resume bit-identically.

A particle whose score is NaN or infinite (or whose position left the finite numbers) is restarted
from a fresh prior draw with a fresh betting (or optimiser) state; restarts are counted per step in
``diagnostics["restarts"]``, never silent.

The module passes our ~400-line rule by the three runners' docstrings: they share one program
(:func:`_program`), which is clearer here than split across files.

>>> post = pi.coin_svgd(target, key=0)                   # doctest: +SKIP
>>> post.diagnostics["ksd"][-1]                          # doctest: +SKIP
"""

import warnings
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from probinfer import devices as _devices
from probinfer import health
from probinfer._utils import as_key, defaults_of, positive_number
from probinfer.checkpoint import boundaries, fingerprint, path_for, run_chunks
from probinfer.diagnostics import ksd
from probinfer.errors import DataError, ProbinferError
from probinfer.inference.coin.stein import (
    BLOCK,
    KERNELS,
    bandwidth,
    ksd_descent,
    particle_scores,
    sharded_direction,
)
from probinfer.posterior import Posterior
from probinfer.programs import cached_program
from probinfer.progress import ProgressBar, should_show

__all__ = ["coin_svgd", "svgd", "coin_ksdd", "coin_draws", "svgd_draws", "ksdd_draws"]

_RECORDS = 100  # points of the KSD trace


class _Settings(NamedTuple):
    """What a particle run computes (the compiled program's identity, with the update)."""

    method: str
    num_particles: int
    num_steps: int
    stein_kernel: str
    batch_size: int | None


class _Place(NamedTuple):
    """Where and how a run is kept: devices, checkpoint file and period, progress bar."""

    devices: object = None
    checkpoint: object = None
    checkpoint_every: int | None = None
    progress: object = "auto"


def _betting():
    """The coin-betting update as an optax transformation (see the module docstring)."""
    return optax.contrib.cocob(learning_rate=1.0, alpha=0.0, eps=1e-8)


def coin_svgd(
    target,
    *,
    key,
    num_particles=100,
    num_steps=1000,
    stein_kernel="rbf",
    batch_size=None,
    init=None,
    devices=None,
    checkpoint=None,
    checkpoint_every=None,
    progress="auto",
):
    """Coin SVGD: SVGD's direction, moved by coin betting — no learning rate.

    Args:
        target: a compiled :class:`~probinfer.Target` with continuous latents.
        key: int seed or PRNG key.
        num_particles: N (≥ 2).
        num_steps: iterations (each: N scores and the N × N kernel work).
        stein_kernel: the RKHS kernel, ``"rbf"`` (median heuristic) or ``"imq"``.
        batch_size: data points per minibatch for the scores (one minibatch per step shared by
            all particles, likelihood scaled by N_data / batch_size); None for full data.
        init: starting points (as :meth:`~probinfer.Target.starting_points`); None: prior draws.
        devices: where the particles live (:mod:`probinfer.devices`; None: every local device,
            when N divides evenly).
        checkpoint: a folder (``<folder>/coin_svgd.npz``) or ``.npz`` path; the run is saved
            every ``checkpoint_every`` of its 100 KSD records (default 10) and resumes from it.
        progress: progress bar (True, False or ``"auto"``).

    Returns:
        A :class:`~probinfer.Posterior` with the particles as one chain of ``num_particles``
        draws; diagnostics ``ksd`` (IMQ KSD of the particles, 100 points over the run, the last
        at the end), ``ksd_steps``, ``restarts`` (per step), ``bandwidth`` (last) and
        ``spread_ratio`` (:func:`stein_spread_ratio`; a warning below 0.8).

    Example:
        >>> post = pi.coin_svgd(pi.compile(model, x, y=y), key=0, num_particles=200)  # doctest: +SKIP
    """
    settings = _Settings("coin_svgd", num_particles, num_steps, stein_kernel, batch_size)
    place = _Place(devices, checkpoint, checkpoint_every, progress)
    return _run(target, key, settings, init, place)


def coin_ksdd(
    target,
    *,
    key,
    num_particles=100,
    num_steps=1000,
    stein_kernel="imq",
    batch_size=None,
    init=None,
    devices=None,
    checkpoint=None,
    checkpoint_every=None,
    progress="auto",
):
    """Coin KSDD: particles descend the kernel Stein discrepancy KSD²(x₁ … x_N) (IMQ by default,
    Korba et al. 2021), moved by coin betting — no learning rate. Needs second derivatives of the
    log density (the KSD's gradient contains ∇ of the scores). Arguments and result as
    :func:`coin_svgd`.

    Example:
        >>> post = pi.coin_ksdd(target, key=0)            # doctest: +SKIP
    """
    settings = _Settings("coin_ksdd", num_particles, num_steps, stein_kernel, batch_size)
    place = _Place(devices, checkpoint, checkpoint_every, progress)
    return _run(target, key, settings, init, place)


def svgd(
    target,
    *,
    key,
    num_particles=100,
    num_steps=1000,
    stein_kernel="rbf",
    learning_rate=0.1,
    optimizer=None,
    batch_size=None,
    init=None,
    devices=None,
    checkpoint=None,
    checkpoint_every=None,
    progress="auto",
):
    """Stein variational gradient descent (Liu & Wang 2016): x ← x + optimiser step along φ(x).

    Args:
        learning_rate: the optimiser's step (the number Coin SVGD does without).
        optimizer: an ``optax.GradientTransformation`` (minimising −φ); None for
            ``optax.adam(learning_rate)``.
        Others as :func:`coin_svgd`.

    Example:
        >>> post = pi.svgd(target, key=0, learning_rate=0.05)  # doctest: +SKIP
    """
    cache = None
    if optimizer is None:
        learning_rate = positive_number("learning_rate", learning_rate)
        optimizer, cache = optax.adam(learning_rate), ("adam", learning_rate)
    settings = _Settings("svgd", num_particles, num_steps, stein_kernel, batch_size)
    place = _Place(devices, checkpoint, checkpoint_every, progress)
    return _run(target, key, settings, init, place, optimizer, cache)


def _check(target, settings):
    method, num_particles, num_steps, stein_kernel, batch_size = settings
    target.check_continuous()
    if method == "coin_ksdd" and stein_kernel != "imq":
        raise DataError(
            "coin_ksdd descends the kernel Stein discrepancy with the IMQ kernel (the RBF one "
            f"does not detect non-convergence); stein_kernel must be 'imq', got '{stein_kernel}'."
        )
    if int(num_particles) < 2:
        raise DataError(
            f"{method} needs at least 2 particles (they interact); got {num_particles}."
        )
    if int(num_steps) < 1:
        raise DataError(f"num_steps must be at least 1, got {num_steps}.")
    if stein_kernel not in KERNELS:
        raise DataError(f"stein_kernel must be one of {KERNELS}, got '{stein_kernel}'.")
    if batch_size is not None:
        target.check_batch_size(batch_size)


def _run(target, key, settings, init, place, optimizer=None, cache=("betting",)):
    """``optimizer``: None for the betting update; ``cache``: what identifies the update in the
    compiled-program cache (None: a user's optimiser object, compiled afresh)."""
    _check(target, settings)
    method = settings.method
    settings = settings._replace(
        num_particles=int(settings.num_particles),
        num_steps=int(settings.num_steps),
        batch_size=None if settings.batch_size is None else int(settings.batch_size),
    )
    key_init, key_run = jax.random.split(as_key(key))
    starts = target.starting_points(init, settings.num_particles, key=key_init)
    sharding = _devices.leading_sharding(settings.num_particles, place.devices)
    build = partial(_compiled, target, settings, optimizer, sharding)
    program = (
        build()
        if cache is None
        else cached_program(target, ("coin", cache, settings, sharding), build, share=True)
    )
    every, num_records = _records(settings.num_steps)
    # On a terminal a bar; off one ("auto"), a log line a minute once the run passes a minute.
    shown = should_show(place.progress, settings.num_steps)
    program.bar.restart(shown or place.progress == "auto", log_only=not shown)
    place_particles = partial(_place_particles, settings.num_particles, sharding)
    carry = place_particles(program.init(starts, key_run))
    path = path_for(place.checkpoint, method)
    period = num_records if path is None else int(place.checkpoint_every or 10)
    record = fingerprint(
        key_run,
        target,
        dim=int(starts.shape[1]),
        update="custom" if cache is None else list(cache),
        **settings._asdict(),
    )

    def advance(carry, start, stop):
        carry, outputs = program.segment(carry, jnp.arange(start, stop))
        return carry, list(outputs)

    carry, (trace, restarts, scales) = run_chunks(
        advance,
        carry,
        boundaries(num_records, period),
        path=path,
        fingerprint=record,
        restore=place_particles,
    )
    restarts = np.asarray(restarts).reshape(-1)[: settings.num_steps]
    return _posterior(target, settings, carry[0], trace, restarts, scales[-1], place)


def _place_particles(num_particles, sharding, carry):
    """Split the particle-shaped leaves of the carry (positions, per-particle optimiser or
    betting state) over the devices; scalars and the key stay replicated."""
    if sharding is None:
        return carry
    return jax.tree.map(
        lambda a: jax.device_put(a, sharding) if jnp.ndim(a) and a.shape[0] == num_particles else a,
        carry,
    )


def _posterior(target, settings, x, trace, restarts, scale, place):
    method = settings.method
    x = np.asarray(x)
    if not np.isfinite(x).all():
        raise ProbinferError(
            f"{method} on '{target.name}': particles left the finite numbers although restarts "
            "were made; check the model's log density for overflow (e.g. exp of a large value)."
        )
    draws = jax.vmap(target.constrain)(jnp.asarray(x))
    if restarts.sum():
        warnings.warn(
            f"{method} on '{target.name}': {int(restarts.sum())} particle restart(s) after a "
            "NaN or infinite score (see diagnostics['restarts'] for the steps).",
            RuntimeWarning,
            stacklevel=4,
        )
    diagnostics = {
        "ksd": np.asarray(trace),
        "ksd_steps": _record_steps(settings.num_steps),
        "restarts": restarts,
        "bandwidth": float(scale),
        "spread_ratio": stein_spread_ratio(target, x),
    }
    run = {k: v for k, v in settings._asdict().items() if k != "method"}
    run["devices"] = _devices.devices_used(settings.num_particles, place.devices)
    post = Posterior(
        {k: np.asarray(v)[None] for k, v in draws.items()},
        method=method,
        diagnostics=diagnostics,
        settings=dict(run),  # no "kernel": a particle method has no transition kernel
    )
    return health.attach(post)


def stein_spread_ratio(target, x):
    """How wide the particles are against the posterior, from Stein's identity: for draws of
    π, ``−E[s_j(x) (x_j − E x_j)] = 1`` per coordinate j (s = ∇ log π, integration by parts);
    for a Gaussian π and particles of sd ``c σ_j`` the same average is ``c²``. Returns
    ``√median_j(−mean_i s_ij (x_ij − x̄_j))`` over the (N, d) particles ``x`` with full-data
    scores: an estimate of the particles' sd over the posterior's (1 when they spread as
    π does; exact for a Gaussian π with the particles' covariance proportional to π's, an
    estimate otherwise — a guide to the order of the shortfall, not a correction: on the
    501-dimensional item-response model (:mod:`probinfer.models.sparse`, 100 particles, rank
    99 in 501 dimensions) it gave 8 % where the particles' sds were a median 19 % of NUTS's).
    Kernelised particle methods under-disperse when d is large against N (Ba et al. 2021).
    NaN when a score is not finite."""
    x = jnp.asarray(x)
    scores = jax.vmap(jax.grad(target.log_density))(x)
    moment = -jnp.mean(scores * (x - x.mean(0)), axis=0)
    value = float(jnp.sqrt(jnp.maximum(jnp.median(moment), 0.0)))
    return value if np.isfinite(value) else float("nan")


def _records(num_steps):
    """``(every, num_records)``: the KSD is recorded every ``every`` steps and at the end."""
    every = max(1, num_steps // _RECORDS)
    return every, -(-num_steps // every)


def _record_steps(num_steps):
    every, num_records = _records(num_steps)
    return np.minimum(np.arange(1, num_records + 1) * every, num_steps)


class _Program(NamedTuple):
    init: object  # (starts (N, dim), key) -> carry
    segment: object  # (carry, record indices) -> (carry, (KSD, restarts per step, scale))
    bar: object  # the ProgressBar the compiled callback advances (each run restarts it)


def _compiled(target, settings, optimizer, sharding):
    """:func:`_program` with ``segment`` compiled, the data its argument (:meth:`Target.jit`:
    one program per model, shared by its conditioned targets), and one bar for every run."""
    bar = ProgressBar(_records(settings.num_steps)[1], settings.method, enabled=False)
    program = _program(target, settings, optimizer, sharding, bar)
    segment = target.jit(lambda t: _program(t, settings, optimizer, sharding, bar).segment)
    return program._replace(segment=segment)


def _program(target, settings, optimizer, sharding, bar=None):
    """The run as pure pieces: ``init`` and ``segment``, which runs the KSD records whose
    indices it is given (``every`` steps each; steps past ``num_steps`` leave the particles
    alone). ``bar=None`` leaves the bar's callback out (for :func:`calibrate`'s vmap)."""
    method, num_particles, num_steps, stein_kernel, batch_size = settings
    update = _betting() if optimizer is None else optimizer
    score_fn = particle_scores(target, batch_size)
    every, num_records = _records(num_steps)
    progress = bar is not None
    phi_fn = sharded_direction(stein_kernel, sharding)

    def direction(x, key):
        scores = score_fn(x, key)
        bad = ~(jnp.isfinite(scores).all(1) & jnp.isfinite(x).all(1))
        safe_x = jnp.where(bad[:, None], 0.0, x)
        safe_scores = jnp.where(bad[:, None], 0.0, scores)
        scale = bandwidth(safe_x, stein_kernel)
        if method == "coin_ksdd":  # stein_kernel is "imq": scale is ℓ²
            c = ksd_descent(safe_x, key, scale, score_fn)
        else:
            c = phi_fn(safe_x, safe_scores, scale)
        return jnp.where(bad[:, None], 0.0, c), bad, safe_scores, scale

    def step(carry, t):
        x, state, key = carry
        key_score, key_fresh = jax.random.split(jax.random.fold_in(key, t))
        c, bad, scores, scale = direction(x, key_score)
        updates, new_state = update.update(-c, state, x)
        new_x = optax.apply_updates(x, updates)
        bad = bad | ~jnp.isfinite(new_x).all(1)

        def restart(args):
            x, state = args
            fresh, _ = target.init_fn(key_fresh, x.shape[0])
            x = jnp.where(bad[:, None], fresh, x)
            renewed = update.init(x)
            state = jax.tree.map(
                lambda old, new: (
                    jnp.where(bad[:, None], new, old) if jnp.shape(old) == x.shape else old
                ),
                state,
                renewed,
            )
            return x, state

        new_x, new_state = jax.lax.cond(
            jnp.any(bad), restart, lambda args: args, (new_x, new_state)
        )
        live = t < num_steps  # the last record may run past the end
        carry = jax.tree.map(
            lambda a, b: jnp.where(live, a, b), (new_x, new_state, key), (x, state, key)
        )
        carry = (_devices.constrain_leading(carry[0], sharding), *carry[1:])
        return carry, (jnp.where(live, jnp.sum(bad), 0), scores, scale)

    def record(carry, r):
        carry, (restarts, scores, scale) = jax.lax.scan(step, carry, r * every + jnp.arange(every))
        if progress:
            jax.lax.cond(
                ((r + 1) % max(1, num_records // 100) == 0) | (r == num_records - 1),
                lambda: jax.debug.callback(bar.update, r),
                lambda: None,
            )
        x = carry[0]
        return carry, (ksd(x, scores[-1], block_size=BLOCK), restarts, scale[-1])

    def init(starts, key):
        return (starts, update.init(starts), key)

    def segment(carry, records):
        return jax.lax.scan(record, carry, records)

    return _Program(init, segment, bar)


def _draws(method, target, key, n, **settings):
    """Pure, traceable form of a particle runner for :func:`probinfer.calibrate` (vmapped over
    data sets): ``n`` constrained particles ``{site: (n, ...)}`` of a run with
    ``num_particles = max(n, num_particles)`` (particles are exchangeable: the first n; the
    other defaults are the runner's). No host checks,
    no warnings: a run whose particles are not finite returns them as they are (NaN), which
    ``calibrate`` reports with the simulation's index."""
    allowed = {"num_particles", "num_steps", "stein_kernel", "batch_size"}
    if method == "svgd":
        allowed |= {"learning_rate", "optimizer"}
    unknown = set(settings) - allowed
    if unknown:
        raise ProbinferError(
            f"unknown {method} setting(s) {sorted(unknown)}; it takes {sorted(allowed)}."
        )
    runner = {"coin_svgd": coin_svgd, "coin_ksdd": coin_ksdd, "svgd": svgd}[method]
    settings = {**defaults_of(runner, allowed - {"optimizer"}), **settings}
    num_particles = max(int(n), int(settings["num_particles"]))
    optimizer = None
    if method == "svgd":
        optimizer = settings.get("optimizer") or optax.adam(settings["learning_rate"])
    run = _Settings(
        method,
        num_particles,
        int(settings["num_steps"]),
        settings["stein_kernel"],
        settings["batch_size"],
    )
    program = _program(target, run, optimizer, None)
    key_init, key_run = jax.random.split(key)
    starts, _ = target.init_fn(key_init, num_particles)
    _, num_records = _records(run.num_steps)
    (x, _, _), _ = program.segment(program.init(starts, key_run), jnp.arange(num_records))
    return jax.vmap(target.constrain)(x[: int(n)])


coin_draws = partial(_draws, "coin_svgd")
svgd_draws = partial(_draws, "svgd")
ksdd_draws = partial(_draws, "coin_ksdd")
