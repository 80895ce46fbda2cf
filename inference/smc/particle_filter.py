"""Particle filters for state-space models in Feynman–Kac form (Chopin & Papaspiliopoulos 2020,
"An Introduction to Sequential Monte Carlo", ch. 5 and 10).

A model is three per-particle functions: ``initial(key) -> x_0``, ``transition(key, x, t) ->
x_t`` (a draw from ``f_t(· | x_{t−1})``), and ``log_potential(x_t, y_t, t) -> log g_t(y_t | x_t)``.
The bootstrap filter proposes from the transition; a guided filter proposes from
``proposal(key, x_prev, y_t, t)`` and weights by ``g f / q``, which needs ``log_transition(x_t,
x_prev, t)`` and ``log_proposal(x_t, x_prev, y_t, t)``. With ``W_{t−1}`` the normalised weights
after (optional) resampling,

    log p̂(y_t | y_{<t}) = log Σ_i W_{t−1}^i w_t^i,     log p̂(y_{0:T−1}) = Σ_t log p̂(y_t | y_{<t}),

which is unbiased for the likelihood on the natural scale. Resampling happens when the ESS falls
below ``ess_threshold · N``. :func:`backward_sample` draws smoothed paths (forward filtering,
backward sampling; Godsill, Doucet & West 2004) from the stored particle history.

>>> result = particle_filter(ssm, observations, key=0, num_particles=1000)     # doctest: +SKIP
>>> result.log_likelihood, result.filtering_mean                                # doctest: +SKIP
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from probinfer._utils import as_key, renamed_keywords
from probinfer.errors import NonFiniteError, ProbinferError
from probinfer.inference.smc import resampling as resampling_module
from probinfer.progress import ProgressBar, should_show
from probinfer.ssm import StateSpaceModel

__all__ = ["StateSpaceModel", "FilterResult", "particle_filter", "backward_sample"]


class FilterResult(NamedTuple):
    """log_likelihood: scalar estimate of log p(y_{0:T−1}); log_likelihood_increments: (T,);
    filtering_mean, filtering_var: (T, dx) weighted moments of the filtering distributions;
    ess: (T,) after weighting; resampled: (T,) whether step t resampled before moving;
    particles: (T, N, dx) history; log_weights: (T, N) normalised weights at each t."""

    log_likelihood: jax.Array
    log_likelihood_increments: jax.Array
    filtering_mean: jax.Array
    filtering_var: jax.Array
    ess: jax.Array
    resampled: jax.Array
    particles: jax.Array
    log_weights: jax.Array


def _moments(particles, log_weights):
    weights = jnp.exp(log_weights)
    mean = weights @ particles
    return mean, weights @ (particles - mean) ** 2


def _filter(model, observations, key, num_particles, resampler, ess_threshold, guided, bar=None):
    n = num_particles
    log_n = jnp.log(n)
    key_init, key_loop = jax.random.split(key)
    x = jax.vmap(model.initial)(jax.random.split(key_init, n))
    y0 = jax.tree.map(lambda o: o[0], observations)
    log_g = jax.vmap(lambda xi: model.log_potential(xi, y0, 0))(x)
    increment0 = logsumexp(log_g) - log_n
    log_w = resampling_module.normalise(log_g)
    mean, var = _moments(x, log_w)
    first = (increment0, mean, var, resampling_module.ess(log_w), jnp.array(False), x, log_w)

    def body(carry, inputs):
        x_prev, log_w_prev = carry
        t, key, y_t = inputs
        if bar is not None:
            bar.tick(t)
        key_resample, key_move = jax.random.split(key)
        resample = resampling_module.ess(log_w_prev) < ess_threshold * n
        ancestors = resampler(key_resample, log_w_prev)
        ancestors = jnp.where(resample, ancestors, jnp.arange(n))
        x_prev = x_prev[ancestors]
        log_w_prev = jnp.where(resample, -log_n, log_w_prev)
        keys = jax.random.split(key_move, n)
        if guided:
            x = jax.vmap(lambda k, xp: model.proposal(k, xp, y_t, t))(keys, x_prev)
            log_g = jax.vmap(
                lambda xi, xp: (
                    model.log_potential(xi, y_t, t)
                    + model.log_transition(xi, xp, t)
                    - model.log_proposal(xi, xp, y_t, t)
                )
            )(x, x_prev)
        else:
            x = jax.vmap(lambda k, xp: model.transition(k, xp, t))(keys, x_prev)
            log_g = jax.vmap(lambda xi: model.log_potential(xi, y_t, t))(x)
        increment = logsumexp(log_w_prev + log_g)
        log_w = resampling_module.normalise(log_w_prev + log_g)
        mean, var = _moments(x, log_w)
        out = (increment, mean, var, resampling_module.ess(log_w), resample, x, log_w)
        return (x, log_w), out

    num_steps = jax.tree.leaves(observations)[0].shape[0]
    rest = jax.tree.map(lambda o: o[1:], observations)
    inputs = (jnp.arange(1, num_steps), jax.random.split(key_loop, num_steps - 1), rest)
    _, outs = jax.lax.scan(body, (x, log_w), inputs)
    stacked = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, outs)
    increments, means, variances, ess, resampled, particles, log_weights = stacked
    return FilterResult(
        jnp.sum(increments), increments, means, variances, ess, resampled, particles, log_weights
    )


@renamed_keywords("particle_filter")
def particle_filter(
    model,
    observations,
    *,
    key,
    num_particles=1000,
    resampling="systematic",
    ess_threshold=0.5,
    guided=False,
    progress="auto",
):
    """Run a bootstrap (or guided) particle filter over ``observations``.

    Args:
        model: :class:`StateSpaceModel`.
        observations: array (or pytree of arrays) with time as the leading axis, T ≥ 1.
        key: int seed or PRNG key.
        num_particles: N ≥ 2.
        resampling: ``"systematic"`` (default), ``"stratified"``, ``"residual"`` or
            ``"multinomial"``.
        ess_threshold: resample when ESS < threshold · N (1.0: at every step).
        guided: propose from ``model.proposal`` (needs ``log_transition`` and ``log_proposal``).
        progress: ``True``, ``False`` or ``"auto"``: a bar over the time steps (long series).

    Returns:
        :class:`FilterResult` (jitted; vmap over keys for independent replicates).

    Example:
        >>> ssm, y = linear_gaussian.feynman_kac(), linear_gaussian.simulate(0, 100)[1]  # doctest: +SKIP
        >>> particle_filter(ssm, y, key=0).log_likelihood                                 # doctest: +SKIP
    """
    if int(num_particles) < 2:
        raise ProbinferError(f"a particle filter needs at least 2 particles, got {num_particles}.")
    if resampling not in resampling_module.RESAMPLERS:
        raise ProbinferError(
            f"resampling must be one of {sorted(resampling_module.RESAMPLERS)}, got '{resampling}'."
        )
    if guided and (
        model.proposal is None or model.log_proposal is None or model.log_transition is None
    ):
        raise ProbinferError(
            "guided=True needs the model's proposal, log_proposal and log_transition functions."
        )
    leaves = jax.tree.leaves(observations)
    if not leaves or jnp.ndim(leaves[0]) == 0 or leaves[0].shape[0] < 1:
        raise ProbinferError("observations need a leading time axis with at least one step.")
    num_steps = leaves[0].shape[0]
    bar = ProgressBar(num_steps, "particle filter", enabled=should_show(progress, num_steps))
    run = jax.jit(_filter, static_argnums=(0, 3, 4, 5, 6, 7))
    result = run(
        model,
        jax.tree.map(jnp.asarray, observations),
        as_key(key),
        int(num_particles),
        resampling_module.RESAMPLERS[resampling],
        float(ess_threshold),
        bool(guided),
        bar if bar.enabled else None,
    )
    increments = np.asarray(result.log_likelihood_increments)
    bad = ~np.isfinite(increments)
    if bad.any():
        t = int(np.argmax(bad))
        if np.isnan(increments[t]):
            raise NonFiniteError(
                f"particle filter: the log potential is NaN at time step {t}; check the "
                "observation density and the states the transition produces at that step."
            )
        raise NonFiniteError(
            f"particle filter: every particle has zero potential at time step {t} (the system "
            "degenerated); use more particles or a guided proposal that looks at y_t."
        )
    return result


def backward_sample(key, result, log_transition, num_paths=100):
    """Smoothed state paths ``(num_paths, T, dx)`` by backward sampling from a filter's history:
    ``x_{T−1} ~ W_{T−1}``, then ``x_t ~ W_t^i f(x_{t+1} | x_t^i)`` going back in time.

    ``log_transition(x_t, x_{t−1}, t)`` is the model's transition log density (per particle).
    Cost O(T · N · num_paths).
    """
    key = as_key(key)
    particles, log_weights = result.particles, result.log_weights
    num_steps = particles.shape[0]
    key_last, key_back = jax.random.split(key)
    last = jax.random.categorical(key_last, log_weights[-1], shape=(num_paths,))
    x_last = particles[-1][last]

    def body(x_next, inputs):
        t, key, x_t, log_w_t = inputs

        def one(key, x_next_path):
            log_f = jax.vmap(lambda xi: log_transition(x_next_path, xi, t + 1))(x_t)
            return x_t[jax.random.categorical(key, log_w_t + log_f)]

        x = jax.vmap(one)(jax.random.split(key, num_paths), x_next)
        return x, x

    times = jnp.arange(num_steps - 2, -1, -1)
    inputs = (
        times,
        jax.random.split(key_back, num_steps - 1),
        particles[times],
        log_weights[times],
    )
    _, path = jax.jit(lambda x, i: jax.lax.scan(body, x, i))(x_last, inputs)
    path = jnp.concatenate([path[::-1], x_last[None]])  # (T, num_paths, dx)
    return jnp.swapaxes(path, 0, 1)
