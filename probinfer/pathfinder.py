"""Pathfinder: Gaussian approximations along an L-BFGS path, single- and multi-path.

Zhang, Carpenter, Gelman & Vehtari (2022), "Pathfinder: Parallel quasi-Newton variational
inference" (JMLR 23). From a start, L-BFGS climbs ``log π``; at every iterate θ_l the L-BFGS
inverse-Hessian factors define a Gaussian ``q_l = N(θ_l + Σ_l ∇log π(θ_l), Σ_l)``, and the one
whose Monte Carlo ELBO (``num_elbo_draws`` draws) is highest is that path's approximation.
Multi-path Pathfinder (the paper's Algorithm 2) runs ``num_paths`` paths from independent starts
(vmapped), draws ``num_draws`` from each path's best ``q``, and weights the pooled draws by Pareto-
smoothed importance sampling (PSIS, ArviZ's ``psislw``) of ``π / q_path``, which reports k̂.

The path and the Gaussians are BlackJAX's (:func:`blackjax.vi.pathfinder.approximate` and
``sample``); the starts, the pooling, PSIS, the Posterior and the warnings are ours. As a start for
other runners, ``init="pathfinder"`` (:func:`probinfer.starts.starting_points`) draws the chains'
starting points from the PSIS-resampled pool: close to the bulk, spread as the posterior is.

>>> post = pi.pathfinder(target, key=0)                    # doctest: +SKIP
>>> post.diagnostics["pareto_k"], post.summary()            # doctest: +SKIP
>>> pi.mcmc(target, key=1, init="pathfinder")               # doctest: +SKIP
"""

import jax
import jax.numpy as jnp
import numpy as np

from probinfer import devices as _devices
from probinfer import health
from probinfer._utils import as_key, import_arviz
from probinfer.errors import ProbinferError
from probinfer.posterior import Posterior
from probinfer.programs import cached_program

__all__ = ["pathfinder", "pathfinder_starts"]


def pathfinder(
    target,
    *,
    key,
    num_paths=4,
    num_draws=1000,
    num_steps=200,
    num_elbo_draws=25,
    history_size=6,
    init=None,
    progress="auto",
    devices=None,
):
    """Multi-path Pathfinder (see the module docstring); returns a weighted
    :class:`~probinfer.Posterior`.

    Args:
        target: a compiled :class:`~probinfer.Target` (continuous latents).
        key: int seed or JAX PRNG key.
        num_paths: independent L-BFGS paths (vmapped); 1 is single-path Pathfinder.
        num_draws: draws from each path's best Gaussian (the pool has ``num_paths × num_draws``).
        num_steps: the most L-BFGS iterations per path (BlackJAX evaluates the ELBO at all
            ``num_steps + 1`` slots of the path, so its cost grows with this cap, not with the
            iterations taken: 200 where Stan has 1,000; on the 10-D funnel 1,000 took 10 s).
        num_elbo_draws: draws per iterate for its ELBO (Stan's default 25).
        history_size: L-BFGS's memory (Stan's default 6).
        init: starting points (:meth:`Target.starting_points`; default uniform(−2, 2) on the
            unconstrained space, one per path).
        progress: accepted for the calling convention (Pathfinder is one compiled call, a few
            seconds; nothing to show).
        devices: where the paths run (:mod:`probinfer.devices`; None: all local devices),
            sharded over the leading (path) axis.

    Returns:
        Posterior with draws ``(1, num_paths × num_draws, *site_shape)`` and ``log_weights``
        (PSIS-smoothed, normalised); diagnostics ``pareto_k`` (over the pool: above 0.7 warns),
        ``elbo`` (each path's best, shape ``(num_paths,)``), ``num_iterations`` per path and
        ``log_weights_raw`` (log π − log q before smoothing).

    Example:
        >>> post = pi.pathfinder(pi.compile(model, x, y=y), key=0, num_paths=8)  # doctest: +SKIP
    """
    del progress
    settings = _settings(num_paths, num_draws, num_steps, num_elbo_draws, history_size)
    key_init, key_run = jax.random.split(as_key(key))
    starts = target.starting_points(init, settings["num_paths"], key=key_init, default="uniform")
    starts = _devices.shard_leading(starts, devices)
    elbo, iterations, z, log_w, smoothed, k_hat = _fit(target, key_run, starts, settings)
    draws = jax.jit(jax.vmap(target.constrain))(jnp.asarray(z))
    post = Posterior(
        {k: np.asarray(v)[None] for k, v in draws.items()},
        method="pathfinder",
        log_weights=smoothed[None],
        diagnostics={
            "pareto_k": k_hat,
            "elbo": elbo,
            "num_iterations": iterations,
            "log_weights_raw": log_w,
        },
        settings={**settings, "devices": _devices.devices_used(settings["num_paths"], devices)},
    )
    return health.attach(post)


def _settings(num_paths, num_draws, num_steps, num_elbo_draws, history_size):
    settings = {
        "num_paths": num_paths,
        "num_draws": num_draws,
        "num_steps": num_steps,
        "num_elbo_draws": num_elbo_draws,
        "history_size": history_size,
    }
    for label, value in settings.items():
        if isinstance(value, bool) or int(value) != value or int(value) < 1:
            raise ProbinferError(f"pathfinder: {label} must be a positive integer, got {value}.")
    return {k: int(v) for k, v in settings.items()}


def _fit(target, key, starts, settings):
    """The paths from ``starts`` (num_paths, dim), pooled: ``(best ELBO per path, iterations per
    path, pool (num_paths × num_draws, dim), raw log weights, PSIS-smoothed normalised log
    weights, k̂)``."""
    target.check_continuous()
    run = cached_program(
        target,
        ("pathfinder", tuple(sorted(settings.items()))),
        lambda: target.jit(lambda t: _paths(t, **settings)),
        share=True,
    )
    elbo, iterations, z, log_w = (np.asarray(x) for x in run(key, starts))
    log_w = np.asarray(log_w, np.float64).ravel()
    finite = np.isfinite(log_w)
    if not finite.any():
        raise ProbinferError(
            f"pathfinder on '{target.name}': the log density is not finite at any draw of any "
            "path's Gaussian; start the paths elsewhere (init=) or check the model."
        )
    smoothed, k_hat = import_arviz().psislw(np.where(finite, log_w, -np.inf))
    z = z.reshape(-1, target.dim)
    return elbo, iterations, z, log_w, np.asarray(smoothed), float(k_hat)


def _paths(target, *, num_paths, num_draws, num_steps, num_elbo_draws, history_size):
    """The traced program: ``(key, starts (num_paths, dim)) -> (best ELBO per path, iterations
    per path, draws (num_paths, num_draws, dim), log π − log q of each draw)``."""
    from blackjax.vi.pathfinder import approximate, sample

    log_density = target.log_density

    def one(key, start):
        key_path, key_draws = jax.random.split(key)
        state, info = approximate(
            key_path,
            log_density,
            start,
            num_elbo_draws,
            maxiter=num_steps,
            maxcor=history_size,
        )
        z, log_q = sample(key_draws, state, num_draws)
        log_p = jax.vmap(log_density)(z)
        iterations = jnp.sum(jnp.isfinite(info.path.elbo))
        return state.elbo, iterations, z, log_p - log_q

    def run(key, starts):
        keys = jax.random.split(key, num_paths)
        return jax.vmap(one)(keys, starts)

    return run


def pathfinder_starts(target, key, n, num_paths=4):
    """``n`` starting points ``(n, dim)`` for other runners (``init="pathfinder"``): multi-path
    Pathfinder with its defaults from uniform(−2, 2) starts, then ``n`` distinct points drawn
    from the pool by the PSIS weights *without* replacement, so chains start where the
    posterior's mass is and never at the same point: with k̂ > 0.7 (28 of 30 fits in
    ``experiments/bench/pathfinder_init.py``) a few draws hold most of the weight, and draws with
    replacement started up to all four chains at one point, which blinds R-hat.
    (No warning on a large k̂ here: the runner that starts from these points judges its own run.)
    """
    key_init, key_run, key_pick = jax.random.split(as_key(key), 3)
    settings = _settings(num_paths, max(250, n), 200, 25, 6)
    starts = target.starting_points("uniform", num_paths, key=key_init)
    *_, z, _, smoothed, _ = _fit(target, key_run, starts, settings)
    weights = jnp.exp(jnp.asarray(smoothed))
    weights = jnp.where(weights > 0, weights, 0.0) + 1e-12  # every pool point stays drawable
    picks = jax.random.choice(key_pick, z.shape[0], (n,), replace=False, p=weights / weights.sum())
    return jnp.asarray(z)[picks].astype(target.dtype)
