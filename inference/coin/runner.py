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

A particle whose score is NaN or infinite (or whose position left the finite numbers) is restarted
from a fresh prior draw with a fresh betting (or optimiser) state; restarts are counted per step in
``diagnostics["restarts"]``, never silent.

>>> post = pi.coin_svgd(target, key=0)                   # doctest: +SKIP
>>> post.diagnostics["ksd"][-1]                          # doctest: +SKIP
"""

import warnings
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

from probinfer._utils import as_key, cached_program
from probinfer.diagnostics import ksd
from probinfer.errors import DataError, ProbinferError
from probinfer.inference.coin.stein import KERNELS, bandwidth, stein_direction
from probinfer.posterior import Posterior
from probinfer.progress import ProgressBar, should_show

__all__ = ["coin_svgd", "svgd", "coin_ksdd", "coin_draws", "svgd_draws", "ksdd_draws"]

_RECORDS = 100  # points of the KSD trace
_BLOCK = 1024  # particles per row block of the N × N kernel work


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
        progress: progress bar (True, False or ``"auto"``).

    Returns:
        A :class:`~probinfer.Posterior` with the particles as one chain of ``num_particles``
        draws; diagnostics ``ksd`` (IMQ KSD of the particles, 100 points over the run),
        ``ksd_steps``, ``restarts`` (per step) and ``bandwidth`` (last).

    Example:
        >>> post = pi.coin_svgd(pi.compile(model, x, y=y), key=0, num_particles=200)  # doctest: +SKIP
    """
    return _run(
        target,
        key,
        "coin_svgd",
        num_particles,
        num_steps,
        stein_kernel,
        batch_size,
        init,
        progress,
        None,
    )


def coin_ksdd(
    target,
    *,
    key,
    num_particles=100,
    num_steps=1000,
    stein_kernel="imq",
    batch_size=None,
    init=None,
    progress="auto",
):
    """Coin KSDD: particles descend the kernel Stein discrepancy KSD²(x₁ … x_N) (IMQ by default,
    Korba et al. 2021), moved by coin betting — no learning rate. Needs second derivatives of the
    log density (the KSD's gradient contains ∇ of the scores). Arguments and result as
    :func:`coin_svgd`.

    Example:
        >>> post = pi.coin_ksdd(target, key=0)            # doctest: +SKIP
    """
    return _run(
        target,
        key,
        "coin_ksdd",
        num_particles,
        num_steps,
        stein_kernel,
        batch_size,
        init,
        progress,
        None,
    )


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
        if not learning_rate > 0:
            raise ProbinferError(f"learning_rate must be positive, got {learning_rate}.")
        optimizer, cache = optax.adam(learning_rate), ("adam", float(learning_rate))
    return _run(
        target,
        key,
        "svgd",
        num_particles,
        num_steps,
        stein_kernel,
        batch_size,
        init,
        progress,
        optimizer,
        cache,
    )


def _check(target, num_particles, num_steps, stein_kernel, batch_size, method):
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
        if not target.data_names:
            raise DataError(
                f"batch_size needs data marked on '{target.name}': compile with data=(...) naming "
                "the arguments whose leading axis indexes data points."
            )
        target.check_minibatchable()
        if not 1 <= int(batch_size) <= target.num_data:
            raise DataError(
                f"batch_size must be between 1 and the {target.num_data} data points, got "
                f"{batch_size}."
            )


def _run(
    target,
    key,
    method,
    num_particles,
    num_steps,
    stein_kernel,
    batch_size,
    init,
    progress,
    optimizer,
    cache=("betting",),
):
    """``cache``: what identifies the update in the compiled-program cache (None: a user's
    optimiser object, compiled afresh)."""
    _check(target, num_particles, num_steps, stein_kernel, batch_size, method)
    key_init, key_run = jax.random.split(as_key(key))
    starts = target.starting_points(init, int(num_particles), key=key_init)
    show = should_show(progress, num_steps)
    settings = (
        method,
        int(num_particles),
        int(num_steps),
        stein_kernel,
        None if batch_size is None else int(batch_size),
        show,
    )
    build = partial(_program, target, *settings, optimizer)
    program = (
        build() if cache is None else cached_program(target, ("coin", cache) + settings, build)
    )
    x, trace, restarts, scale = program(starts, key_run)
    x = np.asarray(x)
    if not np.isfinite(x).all():
        raise ProbinferError(
            f"{method} on '{target.name}': particles left the finite numbers although restarts "
            "were made; check the model's log density for overflow (e.g. exp of a large value)."
        )
    draws = jax.vmap(target.constrain)(jnp.asarray(x))
    diagnostics = {
        "ksd": np.asarray(trace),
        "ksd_steps": _record_steps(int(num_steps)),
        "restarts": np.asarray(restarts),
        "bandwidth": float(scale),
    }
    run = {
        "num_particles": int(num_particles),
        "num_steps": int(num_steps),
        "stein_kernel": stein_kernel,
        "batch_size": batch_size,
    }
    if restarts.sum():
        warnings.warn(
            f"{method} on '{target.name}': {int(np.sum(restarts))} particle restart(s) after a "
            "NaN or infinite score (see diagnostics['restarts'] for the steps).",
            RuntimeWarning,
            stacklevel=3,
        )
    return Posterior(
        {k: np.asarray(v)[None] for k, v in draws.items()},
        method=method,
        diagnostics=diagnostics,
        settings={"kernel": method, **run},
    )


def _record_steps(num_steps):
    every = max(1, num_steps // _RECORDS)
    return np.arange(1, num_steps // every + 1) * every


def _program(target, method, num_particles, num_steps, stein_kernel, batch_size, show, optimizer):
    """The jitted ``(starts (N, dim), key) -> (particles, KSD trace, restarts per step, scale)``."""
    update = _betting() if optimizer is None else optimizer
    score_fn = _score(target, batch_size)
    every = max(1, num_steps // _RECORDS)
    num_records = num_steps // every
    tail = num_steps - every * num_records
    bar = ProgressBar(num_records, method, enabled=show)

    def direction(x, key):
        scores = score_fn(x, key)
        bad = ~(jnp.isfinite(scores).all(1) & jnp.isfinite(x).all(1))
        safe_x = jnp.where(bad[:, None], 0.0, x)
        safe_scores = jnp.where(bad[:, None], 0.0, scores)
        scale = bandwidth(safe_x, stein_kernel)
        if method == "coin_ksdd":  # stein_kernel is "imq": scale is ℓ²
            c = _ksd_descent(target, safe_x, key, scale, batch_size, score_fn)
        else:
            c = stein_direction(safe_x, safe_scores, scale, stein_kernel, _BLOCK)
        return jnp.where(bad[:, None], 0.0, c), bad, safe_scores, scale

    def step(carry, t):
        x, state, key = carry
        key, key_score, key_fresh = jax.random.split(jax.random.fold_in(key, t), 3)
        c, bad, scores, scale = direction(x, key_score)
        updates, state = update.update(-c, state, x)
        x = optax.apply_updates(x, updates)
        bad = bad | ~jnp.isfinite(x).all(1)

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

        x, state = jax.lax.cond(jnp.any(bad), restart, lambda args: args, (x, state))
        return (x, state, key), (jnp.sum(bad), scores, scale)

    def record(carry, r):
        carry, (restarts, scores, scale) = jax.lax.scan(step, carry, r * every + jnp.arange(every))
        bar.tick(r)
        x = carry[0]
        return carry, (ksd(x, scores[-1], block_size=_BLOCK), restarts, scale[-1])

    @jax.jit
    def run(starts, key):
        carry = (starts, update.init(starts), key)
        carry, (trace, restarts, scales) = jax.lax.scan(record, carry, jnp.arange(num_records))
        restarts = restarts.reshape(-1)
        if tail:
            start = num_records * every
            carry, (more, _, _) = jax.lax.scan(step, carry, start + jnp.arange(tail))
            restarts = jnp.concatenate([restarts, more])
        return carry[0], trace, restarts, scales[-1]

    return run


def _score(target, batch_size):
    """``(x (N, dim), key) -> scores (N, dim)``: full data, or one minibatch for all particles."""
    if batch_size is None:
        grad = jax.vmap(jax.grad(target.log_density))
        return lambda x, key: grad(x)
    n = target.num_data
    grad = jax.grad(target.minibatch_log_density)

    def scores(x, key):
        batch = target.batch(jax.random.choice(key, n, (batch_size,), replace=False))
        return jax.vmap(lambda z: grad(z, batch))(x)

    return scores


def _ksd_descent(target, x, key, scale, batch_size, score_fn):
    """c = −∇_x KSD²(x) (V-statistic, IMQ with ℓ² = ``scale``), scaled by N so that its size does
    not shrink with the number of particles."""

    def squared(x):
        s = score_fn(x, key)
        return ksd(x, s, lengthscale=jnp.sqrt(scale), block_size=_BLOCK) ** 2

    return -x.shape[0] * jax.grad(squared)(x)


def _draws(method, target, key, n, **settings):
    """Pure, traceable form of a particle runner for :func:`probinfer.calibrate` (vmapped over
    data sets): ``n`` constrained particles ``{site: (n, ...)}`` of a run with
    ``num_particles = max(n, 100)`` (particles are exchangeable: the first n). No host checks,
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
    num_particles = int(settings.get("num_particles", max(int(n), 100)))
    optimizer = None
    if method == "svgd":
        optimizer = settings.get("optimizer") or optax.adam(settings.get("learning_rate", 0.1))
    stein_kernel = settings.get("stein_kernel", "imq" if method == "coin_ksdd" else "rbf")
    program = _program(
        target,
        method,
        num_particles,
        int(settings.get("num_steps", 1000)),
        stein_kernel,
        settings.get("batch_size"),
        False,
        optimizer,
    )
    key_init, key_run = jax.random.split(key)
    starts, _ = target.init_fn(key_init, num_particles)
    x, _, _, _ = program(starts, key_run)
    return jax.vmap(target.constrain)(x[: int(n)])


coin_draws = partial(_draws, "coin_svgd")
svgd_draws = partial(_draws, "svgd")
ksdd_draws = partial(_draws, "coin_ksdd")
