"""The default SG-MCMC step size: a short pilot that minimises the kernel Stein discrepancy.

A step from the curvature at the mode alone (ε₀ = 0.1 / λ_max of the preconditioned Hessian) is
safe for a Gaussian posterior and far too small for a neural network: there λ_max belongs to a
handful of stiff directions, bounded by the likelihood's non-linearity away from the mode, while
thousands of soft directions move a distance ∝ ε per step (on scikit-learn's digits, ε₀ left the
chains drifting after 20,000 steps). The pilot measures instead (Gorham & Mackey 2017 select
SGLD's step size by the same discrepancy):

1. run the chains for ``pilot_length(num_steps)`` steps — 1/20 of the run, between 100 and
   ``PILOT_STEPS`` = 1,000, so the five candidates together cost at most a quarter of the run —
   at each candidate ``ε₀ · m``, m ∈ ``MULTIPLIERS`` (all candidates' chains vmapped in one
   program), from the run's own starting points;
2. keep ``PILOT_DRAWS`` draws per chain from the pilot's second half and evaluate the full-data
   score ∇ log π at each (minibatch scores made the discrepancy of the hottest candidates
   noise-dominated);
3. the kernel Stein discrepancy (:func:`probinfer.diagnostics.ksd`, IMQ kernel, V-statistic as
   Gorham & Mackey, on coordinates scaled by the preconditioner's root; one lengthscale for every
   candidate: the median distance of the smallest step's draws) of each candidate's draws;
4. take the candidate with the smallest KSD — a step too small leaves the draws where they
   started (too concentrated or too correlated), a step too large inflates the stiff directions;
   both raise the discrepancy — or the largest step within ``TIE`` (20 %) of it, as 100
   correlated draws do not tell such candidates apart and the larger step mixes faster over the
   long run the pilot does not see. A candidate whose chains left the finite numbers loses.
   The band is the estimator's noise, measured: on the digits BNN the KSD ratio of the 30× and
   10× candidates was 1.19, 1.00 and 1.11 over three seeds of the same model (sd ≈ 0.09), so a
   10 % band chose 10× on two seeds and 30× on the third, and the ESS per second of the runs
   varied tenfold (3.5, 32, 5.7); with 20 % ≈ 2 sd all three take 30×. On the zoo's linear
   regression and normal–normal the larger candidates sit outside either band (ratios 1.6–6.3),
   so their steps do not change; on the breast-cancer regression 1×–10× tie within 5 % under
   either band, and item 5 decides.

5. no candidate above the minibatch-noise bound ``ε ≤ 4 κ τ / λ`` may win, λ the largest
   eigenvalue of the minibatch gradient's covariance in the preconditioned coordinates
   (:func:`~.preconditioning.gradient_noise_eigenvalue`, τ the temperature, κ = ``NOISE_RATIO``
   = 1): above it the gradient noise outweighs the injected noise in some direction, and the
   chain's spread there grows with ε in a way 100 pilot draws do not show. Measured on the
   breast-cancer logistic regression (31 dimensions, Laplace-preconditioned): the KSDs of 1×, 3×
   and 10× the curvature step were within 5 % of each other at batch 128, and the 10× chosen
   gave posterior sds 1.2–2.2× NUTS's (noise ratio (ε/4) λ = 1.9); 3× (ratio 0.58) stayed within
   17 %, and at batch 64, 3× (ratio 1.16) reached 37 % while 1× (0.39) stayed within 9 %. On the
   digits BNN the bound is 30–35× the curvature step, so the 30× the KSD prefers there stands. When
   every candidate is above the bound, the bound itself is the step. Not applied to full-data
   gradients. With control variates (their noise vanishes at the centre and grows with the
   squared distance from it) λ is averaged over the chains' starting points, draws of the
   Laplace approximation, and κ = ``NOISE_RATIO_CONTROL_VARIATES`` = 0.5: the draws in the
   tails meet more noise than the average. Measured on the 500-group random-effects logistic
   regression (:mod:`probinfer.models.sparse`, seed 1): κ = 1 left the group scale τ 0.46
   posterior sds off with its sd 29 % wide (the noise, not the posterior, sets its spread),
   κ = 0.5 0.25 sds / 14 %, κ = 0.25 mixed too slowly (the group effects 0.33 sds off in
   10,000 steps); on the 500-dimensional item-response model the KSD's choice is below either
   bound.

The table of candidates and discrepancies is kept in the Posterior's diagnostics
(``step_size_pilot``, with ``max_step``, the bound) so a user can see why that step was chosen.
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from probinfer.diagnostics import ksd, median_lengthscale
from probinfer.programs import cached_program

__all__ = [
    "pilot_step_size",
    "pilot_length",
    "MULTIPLIERS",
    "NOISE_RATIO",
    "NOISE_RATIO_CONTROL_VARIATES",
]

MULTIPLIERS = (1.0, 3.0, 10.0, 30.0, 100.0)
PILOT_STEPS = 1000
PILOT_DRAWS = 25
TIE = 0.2
NOISE_RATIO = 1.0
NOISE_RATIO_CONTROL_VARIATES = 0.5


def pilot_length(num_steps):
    """Pilot steps per candidate for a run of ``num_steps``: ``num_steps // 20`` within
    [4 · PILOT_DRAWS, PILOT_STEPS] = [100, 1,000]."""
    return int(min(PILOT_STEPS, max(4 * PILOT_DRAWS, int(num_steps) // 20)))


def pilot_step_size(
    step,
    init,
    starts,
    key,
    curvature_step,
    *,
    target,
    scale,
    params,
    cache=None,
    num_steps=PILOT_STEPS,
    max_step=float("inf"),
):
    """``(ε, table)``: the step the pilot chooses among ``curvature_step · m``, m ∈ ``MULTIPLIERS``.

    Args:
        step: the runner's ``(target, key, state, t, ε, noise, params) -> state``.
        init: ``position -> kernel state``.
        starts: (C, dim) starting points (the run's chains).
        key: PRNG key of the pilot.
        curvature_step: ε₀, the step from the curvature at the mode.
        target: the Target; the KSD uses its full-data score ∇ log π (its data are an argument
            of the compiled pilot).
        scale: (dim,) the coordinates' scale (root of the diagonal preconditioner, or ones).
        params: the arrays ``step`` reads.
        cache: a hashable key under which the compiled pilot is kept for the target's model
            (None: not kept).
        max_step: no candidate above it wins (the minibatch-noise bound, item 5 above).

    Returns:
        ε and ``{"step_size": [...], "ksd": [...], "max_step": bound}`` over the candidates
        (``inf`` where the chains left the finite numbers).
    """
    every = max(1, num_steps // (2 * PILOT_DRAWS))

    def build():  # the target's data are an argument of the program: Target.jit
        return target.jit(
            lambda t: partial(
                _pilot,
                partial(step, t),
                init,
                jax.grad(t.log_density),
                num_steps=num_steps,
                every=every,
            )
        )

    run = (
        build()
        if cache is None
        else cached_program(target, ("sgmcmc-pilot", cache, num_steps), build, share=True)
    )
    candidates = jnp.asarray([curvature_step * m for m in MULTIPLIERS], starts.dtype)
    values = np.asarray(run(starts, key, candidates, scale, params), np.float64)
    values = np.where(np.isfinite(values), values, np.inf)
    table = {
        "step_size": np.asarray(candidates).tolist(),
        "ksd": values.tolist(),
        "max_step": float(max_step),
    }
    allowed = np.asarray(candidates) <= max_step
    if not allowed.any():
        return float(max_step), table
    values = np.where(allowed, values, np.inf)
    # Within TIE of the smallest discrepancy the candidates are not told apart by 100 correlated
    # draws: the largest such step mixes fastest in the long run the pilot cannot see.
    best = int(np.flatnonzero(values <= (1 + TIE) * values.min())[-1])
    return float(candidates[best]), table


def _pilot(step, init, score, starts, key, candidates, scale, params, *, num_steps, every):
    """(M,) KSDs of the candidates' pilot draws (NaN where a chain left the finite numbers)."""
    num_blocks = num_steps // every

    def one_candidate(epsilon, key):
        def one_chain(z, key):
            def block(state, b):
                def body(state, j):
                    t = b * every + j
                    return step(jax.random.fold_in(key, t), state, t, epsilon, None, params), None

                state, _ = jax.lax.scan(body, state, jnp.arange(every))
                return state, state.position

            _, path = jax.lax.scan(block, init(z), jnp.arange(num_blocks))
            return path[-PILOT_DRAWS:]

        draws = jax.vmap(one_chain)(starts, jax.random.split(key, starts.shape[0]))
        return draws.reshape(-1, starts.shape[1])

    keys = jax.random.split(key, candidates.shape[0])
    draws = jax.vmap(one_candidate)(candidates, keys)  # (M, C · PILOT_DRAWS, dim)
    scores = jax.vmap(jax.vmap(score))(draws)
    scaled, scaled_scores = draws / scale, scores * scale
    finite = jnp.isfinite(scaled).all((1, 2)) & jnp.isfinite(scaled_scores).all((1, 2))
    # One kernel for every candidate: the median distance of the smallest step's draws.
    lengthscale = median_lengthscale(scaled[0])

    def discrepancy(x, s, ok):
        x, s = jnp.where(ok, x, 0.0), jnp.where(ok, s, 0.0)
        return jnp.where(ok, ksd(x, s, lengthscale=lengthscale), jnp.nan)

    return jax.vmap(discrepancy)(scaled, scaled_scores, finite)
