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

from probinfer import devices as _devices
from probinfer import health, kernels
from probinfer._utils import as_key, renamed_keywords
from probinfer.errors import NonFiniteError, ProbinferError
from probinfer.inference.smc import resampling as resampling_module
from probinfer.inference.smc.particle_filter import _filter
from probinfer.posterior import Posterior
from probinfer.progress import ProgressBar, should_show

__all__ = ["pmmh"]


@renamed_keywords("pmmh")
def pmmh(
    model_fn,
    log_prior,
    observations,
    *,
    key,
    init,
    num_draws=2000,
    num_warmup=1000,
    num_chains=4,
    num_particles=200,
    scale=None,
    target_accept=0.25,
    resampling="systematic",
    names=None,
    progress="auto",
    devices=None,
):
    """Sample static parameters of a state-space model by particle-marginal MH.

    Args:
        model_fn: ``θ (d,) -> StateSpaceModel`` (traceable: θ is a JAX array).
        log_prior: ``θ (d,) -> scalar`` log prior density of θ in the space it is sampled in
            (include the Jacobian if θ is a transformed parameter).
        observations: time-leading array or pytree for the filter.
        key: int seed or PRNG key.
        init: ``(d,)`` starting point (shared by all chains, which then diverge).
        num_draws, num_warmup: kept draws and warm-up steps per chain.
        num_chains: independent chains (vmapped; sharded over ``devices``).
        num_particles: particles per likelihood estimate.
        scale: initial random-walk scale, scalar or (d,) (default 2.38 / √d × 0.1).
        target_accept: acceptance rate the warm-up steers the scale to.
        resampling: resampler of the filter.
        names: optional list of d names for the draws (default ``theta``, shape (d,)).
        progress: ``True``, ``False`` or ``"auto"`` (a bar on a terminal for long runs).
        devices: where the chains run (:mod:`probinfer.devices`; None: all local devices).

    Returns:
        Posterior with draws ``(num_chains, num_draws, …)`` and diagnostics
        ``acceptance_rate`` (per chain), ``scale`` and ``log_likelihood`` (the kept estimates).

    The proposal is the shared random-walk kernel (:func:`probinfer.kernels.rwm`) on the
    log target ``log p(θ) + log p̂(y | θ)``, a fresh filter run (its own key) for each proposal;
    the kernel's state keeps the current estimate.
    """
    init = jnp.atleast_1d(jnp.asarray(init, jnp.result_type(float)))
    if init.ndim != 1:
        raise ProbinferError(
            f"init must be one starting point θ of shape (d,) (every chain starts there); got "
            f"shape {init.shape}."
        )
    dim = init.shape[0]
    if not 0.0 < float(target_accept) < 1.0:
        raise ProbinferError(f"target_accept must lie in (0, 1), got {target_accept}.")
    if scale is not None and not bool(np.all(np.asarray(scale) > 0)):
        raise ProbinferError(
            f"scale must be positive (a scalar or one per dimension), got {scale}."
        )
    if int(num_particles) < 2:
        raise ProbinferError(f"PMMH needs at least 2 particles, got {num_particles}.")
    if int(num_draws) < 1 or int(num_warmup) < 0 or int(num_chains) < 1:
        raise ProbinferError("num_draws and num_chains must be ≥ 1 and num_warmup ≥ 0.")
    if resampling not in resampling_module.RESAMPLERS:
        raise ProbinferError(
            f"resampling must be one of {sorted(resampling_module.RESAMPLERS)}, got '{resampling}'."
        )
    resampler = resampling_module.RESAMPLERS[resampling]
    observations = jax.tree.map(jnp.asarray, observations)
    scale0 = (0.1 * 2.38 / np.sqrt(dim)) if scale is None else scale
    scale0 = jnp.broadcast_to(jnp.asarray(scale0, init.dtype), (dim,))

    kernel = kernels.rwm()
    ones = jnp.ones((dim,), init.dtype)

    def log_target(key, theta):
        log_lik = _filter(
            model_fn(theta), observations, key, int(num_particles), resampler, 0.5, False
        )
        value = log_prior(theta) + log_lik.log_likelihood
        return jnp.where(jnp.isnan(value), -jnp.inf, value)

    total = int(num_warmup) + int(num_draws)
    bar = ProgressBar(total, "pmmh", enabled=should_show(progress, total))

    def transition(carry, inputs):
        state, log_scale = carry
        key, adapting, step = inputs
        key_move, key_filter = jax.random.split(key)
        state, info = kernel.step(
            key_move, state, lambda theta: log_target(key_filter, theta), jnp.exp(log_scale), ones
        )
        gain = jnp.where(adapting, 1.0 / jnp.sqrt(step + 1.0), 0.0)
        log_scale = log_scale + gain * (info.acceptance_rate - target_accept)
        log_lik = state.log_density - log_prior(state.position)
        return (state, log_scale), (state.position, log_lik, info.acceptance_rate)

    def run(keys):
        starts = jax.vmap(lambda key: kernel.init(init, lambda t: log_target(key, t)))(keys)
        carry = (starts, jnp.broadcast_to(jnp.log(scale0), (keys.shape[0], dim)))

        def body(carry, i):
            bar.tick(i)
            step_keys = jax.vmap(lambda key: jax.random.fold_in(key, i))(keys)
            inputs = (step_keys, i < num_warmup, i.astype(init.dtype))
            return jax.vmap(transition, in_axes=(0, (0, None, None)))(carry, inputs)

        (_, log_scale), trace = jax.lax.scan(body, carry, jnp.arange(total))
        trace = jax.tree.map(lambda x: jnp.swapaxes(x[num_warmup:], 0, 1), trace)
        return trace, jnp.exp(log_scale), jnp.isfinite(starts.log_density)

    keys = _devices.shard_leading(jax.random.split(as_key(key), int(num_chains)), devices)
    (thetas, log_liks, accepts), scales, start_ok = jax.jit(run)(keys)
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
    post = Posterior(
        draws,
        method="pmmh",
        diagnostics={
            "acceptance_rate": np.asarray(accepts).mean(1),
            "scale": np.asarray(scales),
            "log_likelihood": np.asarray(log_liks),
        },
        settings={
            "num_particles": int(num_particles),
            "resampling": resampling,
            "kernel": kernel.name,
            "num_draws": int(num_draws),
            "num_warmup": int(num_warmup),
            "num_chains": int(num_chains),
            "target_accept": target_accept,
        },
    )
    return health.attach(post)
