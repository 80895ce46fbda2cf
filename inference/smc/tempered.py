"""Adaptive tempered SMC: particles move from the prior to the posterior through
``π_λ(θ) ∝ p(θ) p(D | θ)^λ``, ``0 = λ_0 < λ_1 < … < λ_T = 1`` (Del Moral, Doucet & Jasra 2006;
Jasra et al. 2011 for the adaptive ladder; Zhou, Johansen & Aston 2016 for the conditional ESS).

One step, on the particles as the previous move left them:

1. next temperature: the largest ``λ' ≤ 1`` whose incremental weights ``g_i = (λ' − λ) log L_i``
   keep the conditional ESS at ``target_ess · N`` (bisection; a fixed ladder may be given instead);
2. reweight ``log w_i += g_i`` and accumulate ``log Z += log Σ_i W_i exp(g_i)`` (``W``: normalised
   previous weights) — ``log L = −∞`` gives ``g = −∞``, never ``0 · ∞ = NaN``;
3. resample (systematic by default) when the ESS falls below ``resample_threshold · N`` (by
   default at every step: the adaptive ladder lowers the ESS to ``target_ess · N`` anyway) or a
   particle has weight zero;
4. move every particle with MCMC steps of a kernel invariant for ``π_λ'`` — until the particles
   have decorrelated from where the move started (rank correlation, see ``_BLOCK`` below), or a
   fixed ``num_mcmc_steps`` — (any
   :class:`~probinfer.kernels.Kernel`: HMC, MALA, RWM or a user's own) whose diagonal scale is the
   particles' weighted variance and whose step size follows the previous move's acceptance rate
   towards ``target_accept``.

``log Z`` is kept in the state (the sum of step 2 over the ladder estimates ``log p(D)``, unbiased
on the natural scale). This module is the kernel layer (:func:`init`, :func:`step`); the path
``π_λ`` is in :mod:`~probinfer.inference.smc.tempering`, the runner :func:`smc` in
:mod:`~probinfer.inference.smc.runner`.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from probinfer._utils import map_blocks
from probinfer.inference.smc import resampling as resampling_module
from probinfer.inference.smc.tempering import increments as _increments
from probinfer.inference.smc.tempering import tempered as _tempered

__all__ = ["SMCState", "SMCInfo", "init", "next_temperature", "step", "rank_correlation"]


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
    of the move (mean over particles and steps); log_evidence_increment; num_mcmc_steps: kernel
    steps each particle took at this temperature."""

    temperature: jax.Array
    ess: jax.Array
    resampled: jax.Array
    acceptance_rate: jax.Array
    log_evidence_increment: jax.Array
    num_mcmc_steps: jax.Array


# Adaptive move length (num_mcmc_steps=None): kernel steps are taken in blocks of _BLOCK until the
# largest rank correlation between the particles where the temperature's move started and where
# they are now — over every coordinate and the tempered log density — is below
# max(_DECORRELATED, 3 / √N) (3 / √N: above the noise of N pairs), or _MAX_MOVES steps were taken.
# Buchholz, Chopin & Jacob (2021) tune HMC inside SMC from the same kind of before/after statistic.
# Coordinates alone miss a slow direction that is a combination of many of them (a correlated
# regression: each coordinate carries a small share of it), so the projections on the _PRINCIPAL
# leading principal axes of the scaled particle cloud are watched too, and the first _MIN_MOVES
# steps run as one block before the statistic is first read (it is noisy at small N, and reading
# it costs as much as a step on a cheap model).
_BLOCK = 2
_MIN_MOVES = 10
_PRINCIPAL = 2
_DECORRELATED = 0.1
_DENSE_AXES = 64
_MAX_MOVES = 50
_GAIN = 1.0


def init(positions, terms_fn, step_size, block_size=None):
    """State at λ = 0 from ``positions`` (N, dim) drawn from the prior; ``terms_fn(z) ->
    (log prior, log L)`` (:func:`~probinfer.inference.smc.tempering.terms_fn`)."""
    log_prior, log_likelihood = map_blocks(terms_fn, positions, block_size=block_size)
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

    # Particles whose log L is −inf (or was NaN at λ = 0) drop out at any λ' > λ: the ESS target
    # is relative to the weight that survives an infinitesimal step, else no λ' would do.
    goal = target_ess * _surviving_mass(state)

    def cess(delta):
        increments = _increments(state.log_likelihood, state.temperature, state.temperature + delta)
        return resampling_module.conditional_ess(state.log_weights, increments) / n

    def bisect(_, bounds):
        low, high = bounds
        middle = 0.5 * (low + high)
        ok = cess(middle) >= goal
        return jnp.where(ok, middle, low), jnp.where(ok, high, middle)

    low, _ = jax.lax.fori_loop(0, num_bisections, bisect, (jnp.zeros_like(remaining), remaining))
    delta = jnp.where(cess(remaining) >= goal, remaining, low)
    return jnp.minimum(state.temperature + delta, 1.0)


def _surviving_mass(state):
    """Normalised weight on particles whose incremental weight stays finite as ``λ' ↓ λ``: those
    with finite log L (tempering), or finite log L for the datum entering next (data annealing)."""
    log_likelihood = state.log_likelihood
    if log_likelihood.ndim == 2:
        num_data = log_likelihood.shape[1]
        entering = jnp.clip(jnp.floor(state.temperature * num_data), 0, num_data - 1)
        log_likelihood = log_likelihood[:, entering.astype(jnp.int32)]
    weights = jnp.exp(resampling_module.normalise(state.log_weights))
    return jnp.sum(jnp.where(jnp.isfinite(log_likelihood), weights, 0.0))


def _weighted_variance(positions, log_weights):
    weights = jnp.exp(resampling_module.normalise(log_weights))
    mean = weights @ positions
    variance = weights @ (positions - mean) ** 2
    return jnp.where(variance > 0, variance, 1.0)


def step(
    key,
    state,
    terms_fn,
    *,
    kernel,
    target_accept,
    temperature=None,
    target_ess=0.5,
    resampling="systematic",
    resample_threshold=1.0,
    num_mcmc_steps=None,
    chain_length=None,
    block_size=None,
):
    """One tempering step: choose λ', reweight, maybe resample, move. Returns ``(state, info)``.

    ``kernel``: a :class:`~probinfer.kernels.Kernel` (invariant for ``π_λ'`` by construction).
    ``chain_length``: P for waste-free SMC (N / P chains of P states each; ``num_mcmc_steps``
    and ``resample_threshold`` are then unused); None for the standard move. ``block_size``: move
    and evaluate particles in blocks of this size (``lax.map``) instead of all at once.

    ``temperature``: the next λ for a fixed ladder (None: adaptive from ``target_ess``).
    """
    n = state.position.shape[0]
    key_resample, key_move = jax.random.split(key)
    new_temperature = (
        next_temperature(state, target_ess) if temperature is None else jnp.asarray(temperature)
    )
    increments = _increments(state.log_likelihood, state.temperature, new_temperature)
    log_increment = logsumexp(resampling_module.normalise(state.log_weights) + increments)
    log_weights = state.log_weights + increments
    ess = resampling_module.ess(log_weights)
    resampler = resampling_module.RESAMPLERS[resampling]
    if chain_length is None:
        # Zero-weight particles (log L = −inf, or NaN at the prior) are never moved: resample.
        resample = (ess < resample_threshold * n) | jnp.any(log_weights == -jnp.inf)
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

    if chain_length is None and num_mcmc_steps is None:
        position, acceptance_rate, num_moves, step_size = _move_until_decorrelated(
            key_move,
            starts,
            kernel,
            log_density,
            (state.step_size, target_accept),
            inverse_mass,
            block_size,
        )
        paths = position[:, None]
    else:
        paths, acceptance = map_blocks(
            _fixed_move(kernel, log_density, state.step_size, inverse_mass, num_moves),
            jax.random.split(key_move, num_chains),
            starts,
            block_size=block_size,
        )
        acceptance_rate = jnp.mean(acceptance)
        step_size = _adapt(state.step_size, acceptance_rate, target_accept)
    position = paths[:, -1] if chain_length is None else paths.reshape(n, -1)
    log_prior, log_likelihood = map_blocks(terms_fn, position, block_size=block_size)
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
    steps = jnp.asarray(num_moves, jnp.int32)
    info = SMCInfo(new_temperature, ess, resample, acceptance_rate, log_increment, steps)
    return new_state, info


def _adapt(step_size, acceptance_rate, target_accept):
    """Robbins–Monro on log ε towards the acceptance target, bounded per update."""
    return step_size * jnp.exp(jnp.clip(_GAIN * (acceptance_rate - target_accept), -1, 1))


def _fixed_move(kernel, log_density, step_size, inverse_mass, num_moves):
    """``(key, z) -> (path (num_moves + 1, dim), mean acceptance)``: one particle's chain."""

    def move(key, z):
        kernel_state = kernel.init(z, log_density)

        def one(kernel_state, key):
            kernel_state, info = kernel.step(
                key, kernel_state, log_density, step_size, inverse_mass
            )
            return kernel_state, (kernel_state.position, info.acceptance_rate)

        kernel_state, (path, acceptance) = jax.lax.scan(
            one, kernel_state, jax.random.split(key, num_moves)
        )
        return jnp.concatenate([z[None], path]), acceptance.mean()

    return move


def _principal_axes(positions, inverse_mass, iterations=30):
    """(dim, k): the leading ``_PRINCIPAL`` eigenvectors of the covariance of the particles scaled
    by the kernel's scale (the directions a diagonally preconditioned kernel explores slowest):
    from the dim × dim covariance (``eigh``) up to ``_DENSE_AXES`` dimensions, else by subspace
    iteration — N × dim work per iteration, no dim × dim matrix."""
    dim = positions.shape[1]
    k = min(_PRINCIPAL, dim)
    scaled = positions / jnp.sqrt(inverse_mass)
    scaled = scaled - jnp.mean(scaled, axis=0)
    if dim <= _DENSE_AXES:
        basis = jnp.linalg.eigh(scaled.T @ scaled)[1][:, ::-1][:, :k]
    else:

        def iterate(_, basis):
            return jnp.linalg.qr(scaled.T @ (scaled @ basis))[0]

        start = jnp.linalg.qr(jnp.eye(dim, k, dtype=positions.dtype) + 1.0 / dim)[0]
        basis = jax.lax.fori_loop(0, iterations, iterate, start)
    return basis / jnp.sqrt(inverse_mass)[:, None]


def _summaries(kernel_states, axes):
    """(N, dim + k [+ 1]): the positions, their projections on ``axes`` (dim, k), and the log
    density when the kernel state carries one."""
    columns = [kernel_states.position, kernel_states.position @ axes]
    if hasattr(kernel_states, "log_density"):
        columns.append(kernel_states.log_density[:, None])
    return jnp.concatenate(columns, axis=1)


class _RankReference(NamedTuple):
    """The starting particles' summaries, ranked once: ``scores`` (N, k) their ranks
    standardised, ``sorted`` (N, k) each column in increasing order (its empirical CDF)."""

    scores: jax.Array
    sorted: jax.Array


def _cdf_scores(sorted_columns, x):
    """(N, k): each column of ``x`` through the empirical CDF whose sorted sample is the matching
    column of ``sorted_columns`` (a binary search: 15× cheaper than ranking by sorting on a
    CPU), standardised to mean 0 and variance 1; a constant column scores 0, never NaN."""
    position = jax.vmap(jnp.searchsorted, in_axes=(1, 1), out_axes=1)(sorted_columns, x)
    position = position.astype(x.dtype)
    centred = position - jnp.mean(position, axis=0)
    spread = jnp.sqrt(jnp.mean(centred**2, axis=0))
    return centred / jnp.where(spread > 0, spread, 1.0)


def _rank_reference(before):
    """One sort per column; tied values (resampled copies) share their rank."""
    ordered = jnp.sort(before, axis=0)
    return _RankReference(_cdf_scores(ordered, before), ordered)


def _correlation_with(reference, after):
    """(k,): Pearson's correlation of the starting ranks and ``F(after)``, ``F`` each column's
    empirical CDF at the start. When the move keeps the marginal — it is invariant for π_λ' —
    ``F(after)`` are the ranks of ``after`` up to noise, so this is Spearman's ρ;
    ``after == before`` gives exactly 1."""
    return jnp.mean(reference.scores * _cdf_scores(reference.sorted, after), axis=0)


def rank_correlation(before, after):
    """Spearman's ρ of each column of ``before`` and ``after`` (N, k) -> (k,), the ranks of
    ``after`` read from ``before``'s empirical CDF (:func:`_correlation_with`): exact for a map
    that keeps the values' distribution (a permutation of them), the stopping statistic of the
    adaptive move."""
    return _correlation_with(_rank_reference(before), after)


def _move_until_decorrelated(key, starts, kernel, log_density, tuning, inverse_mass, blocks):
    """Blocks of ``_BLOCK`` kernel steps for every particle until the largest rank correlation with
    the starting points is below the threshold (or ``_MAX_MOVES``). ``tuning``: (ε, target
    acceptance); ε follows the population's acceptance after every block (each block's kernel is
    invariant for π_λ', its ε a function of the whole particle system, as the scale is). Returns
    ``(positions (N, dim), mean acceptance, steps taken, ε for the next temperature)``."""
    n = starts.shape[0]
    step_size, target_accept = tuning
    threshold = max(_DECORRELATED, 3.0 / float(n) ** 0.5)
    states = map_blocks(lambda z: kernel.init(z, log_density), starts, block_size=blocks)
    axes = _principal_axes(starts, inverse_mass)
    before = _rank_reference(_summaries(states, axes))  # ranked once, not every block

    def run_block(key, kernel_state, step_size, length):
        def one(kernel_state, key):
            kernel_state, info = kernel.step(
                key, kernel_state, log_density, step_size, inverse_mass
            )
            return kernel_state, info.acceptance_rate

        kernel_state, acceptance = jax.lax.scan(one, kernel_state, jax.random.split(key, length))
        return kernel_state, acceptance.sum()

    def advance(carry, length):
        states, steps, accepted, _, step_size = carry
        keys = jax.random.split(jax.random.fold_in(key, steps), n)
        states, acceptance = map_blocks(
            lambda k, s: run_block(k, s, step_size, length), keys, states, block_size=blocks
        )
        correlation = jnp.max(jnp.abs(_correlation_with(before, _summaries(states, axes))))
        total = jnp.mean(acceptance)  # acceptance summed over the block's steps
        step_size = _adapt(step_size, total / length, target_accept)
        return states, steps + length, accepted + total, correlation, step_size

    def cond(carry):
        _, steps, _, correlation, _ = carry
        return (steps < _MAX_MOVES) & (correlation > threshold)

    one = jnp.ones((), starts.dtype)
    # The first _MIN_MOVES steps in one block (the statistic is only read after them), then
    # blocks of _BLOCK until decorrelated.
    carry = advance((states, jnp.zeros((), jnp.int32), 0.0 * one, one, step_size), _MIN_MOVES)
    carry = jax.lax.while_loop(cond, lambda carry: advance(carry, _BLOCK), carry)
    states, steps, accepted, _, step_size = carry
    return states.position, accepted / steps, steps, step_size
