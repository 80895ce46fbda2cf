"""Particle-marginal Metropolis–Hastings (Andrieu, Doucet & Holenstein 2010, "Particle Markov
chain Monte Carlo methods").

Static parameters θ of a state-space model are sampled by random-walk Metropolis in which the
intractable likelihood ``p(y | θ)`` is replaced by a particle filter's unbiased estimate
``p̂(y | θ)``; the estimate of the current state is kept (never recomputed), which makes the chain
exact for ``p(θ | y)`` whatever the number of particles — fewer particles only mix worse (aim for a
log-likelihood estimate with sd ≈ 1–1.5; Doucet et al. 2015). During warm-up the proposal scale is
steered (Robbins–Monro on log scale) to the acceptance target, then frozen.

>>> post = pmmh(model_fn, log_prior, y, key=0, init=jnp.zeros(1))    # doctest: +SKIP
"""

import jax
import jax.numpy as jnp
import numpy as np

from probinfer._utils import as_key
from probinfer.errors import NonFiniteError, ProbinferError
from probinfer.inference.smc import resampling
from probinfer.inference.smc.particle_filter import _filter
from probinfer.posterior import Posterior

__all__ = ["pmmh"]


def pmmh(
    model_fn,
    log_prior,
    observations,
    *,
    key,
    init,
    num_samples=2000,
    num_warmup=1000,
    num_chains=4,
    num_particles=200,
    scale=None,
    target_accept=0.25,
    resampling_scheme="systematic",
    names=None,
):
    """Sample static parameters of a state-space model by particle-marginal MH.

    Args:
        model_fn: ``θ (d,) -> StateSpaceModel`` (traceable: θ is a JAX array).
        log_prior: ``θ (d,) -> scalar`` log prior density of θ in the space it is sampled in
            (include the Jacobian if θ is a transformed parameter).
        observations: time-leading array or pytree for the filter.
        key: int seed or PRNG key.
        init: ``(d,)`` starting point (shared by all chains, which then diverge).
        num_samples, num_warmup: kept draws and warm-up steps per chain.
        num_chains: independent chains (vmapped).
        num_particles: particles per likelihood estimate.
        scale: initial random-walk scale, scalar or (d,) (default 2.38 / √d × 0.1).
        target_accept: acceptance rate the warm-up steers the scale to.
        resampling_scheme: resampler of the filter.
        names: optional list of d names for the draws (default ``theta``, shape (d,)).

    Returns:
        Posterior with draws ``(num_chains, num_samples, …)`` and diagnostics
        ``acceptance_rate`` (per chain), ``scale`` and ``log_likelihood`` (the kept estimates).
    """
    init = jnp.atleast_1d(jnp.asarray(init, jnp.result_type(float)))
    dim = init.shape[0]
    if int(num_particles) < 2:
        raise ProbinferError(f"PMMH needs at least 2 particles, got {num_particles}.")
    if int(num_samples) < 1 or int(num_warmup) < 0 or int(num_chains) < 1:
        raise ProbinferError("num_samples and num_chains must be ≥ 1 and num_warmup ≥ 0.")
    if resampling_scheme not in resampling.RESAMPLERS:
        raise ProbinferError(f"unknown resampling scheme '{resampling_scheme}'.")
    resampler = resampling.RESAMPLERS[resampling_scheme]
    observations = jax.tree.map(jnp.asarray, observations)
    scale0 = (0.1 * 2.38 / np.sqrt(dim)) if scale is None else scale
    scale0 = jnp.broadcast_to(jnp.asarray(scale0, init.dtype), (dim,))

    def log_target(key, theta):
        log_lik = _filter(
            model_fn(theta), observations, key, int(num_particles), resampler, 0.5, False
        )
        log_lik = log_lik.log_likelihood
        value = log_prior(theta) + log_lik
        return jnp.where(jnp.isnan(value), -jnp.inf, value), log_lik

    def transition(carry, inputs):
        theta, log_post, log_lik, log_scale = carry
        key, adapting, step = inputs
        key_move, key_filter, key_accept = jax.random.split(key, 3)
        proposal = theta + jnp.exp(log_scale) * jax.random.normal(key_move, (dim,), theta.dtype)
        new_log_post, new_log_lik = log_target(key_filter, proposal)
        log_ratio = new_log_post - log_post
        accept_prob = jnp.exp(
            jnp.minimum(0.0, jnp.where(jnp.isnan(log_ratio), -jnp.inf, log_ratio))
        )
        accept = jax.random.uniform(key_accept) < accept_prob
        theta = jnp.where(accept, proposal, theta)
        log_post = jnp.where(accept, new_log_post, log_post)
        log_lik = jnp.where(accept, new_log_lik, log_lik)
        gain = jnp.where(adapting, 1.0 / jnp.sqrt(step + 1.0), 0.0)
        log_scale = log_scale + gain * (accept_prob - target_accept)
        return (theta, log_post, log_lik, log_scale), (theta, log_lik, accept_prob)

    total = int(num_warmup) + int(num_samples)

    def chain(key):
        key_start, key_steps = jax.random.split(key)
        log_post, log_lik = log_target(key_start, init)
        steps = jnp.arange(total)
        inputs = (jax.random.split(key_steps, total), steps < num_warmup, steps.astype(init.dtype))
        carry = (init, log_post, log_lik, jnp.log(scale0))
        (_, _, _, log_scale), trace = jax.lax.scan(transition, carry, inputs)
        start_ok = jnp.isfinite(log_post)
        return jax.tree.map(lambda x: x[num_warmup:], trace), jnp.exp(log_scale), start_ok

    keys = jax.random.split(as_key(key), int(num_chains))
    (thetas, log_liks, accepts), scales, start_ok = jax.jit(jax.vmap(chain))(keys)
    if not bool(np.all(np.asarray(start_ok))):
        raise NonFiniteError(
            "PMMH: the log prior plus the estimated log likelihood is not finite at `init`; start "
            "where the prior has support and the filter keeps particles alive."
        )
    names = names or ["theta"]
    thetas = np.asarray(thetas)
    if len(names) == 1:
        draws = {names[0]: thetas}
    elif len(names) == dim:
        draws = {name: thetas[..., i] for i, name in enumerate(names)}
    else:
        raise ProbinferError(f"names has {len(names)} entries for a {dim}-dimensional θ.")
    return Posterior(
        draws,
        method="pmmh",
        diagnostics={
            "acceptance_rate": np.asarray(accepts).mean(1),
            "scale": np.asarray(scales),
            "log_likelihood": np.asarray(log_liks),
        },
        settings={
            "num_particles": int(num_particles),
            "num_samples": int(num_samples),
            "num_warmup": int(num_warmup),
            "num_chains": int(num_chains),
            "target_accept": target_accept,
        },
    )
