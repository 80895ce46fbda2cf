"""A mean-field Gaussian fitted to a target by stochastic variational inference (ADVI).

Kucukelbir, Tran, Ranganath, Gelman & Blei (2017), "Automatic differentiation variational
inference" (JMLR 18): ``q = N(m, diag s²)`` on the unconstrained space maximises
``E_q[log π(z)] + Σ log s`` (the ELBO up to a constant) by Adam on one reparameterised draw per
step, the learning rate decayed to 0 by a cosine. With data marked (and every latent global) each
step reads a minibatch of ``min(N, batch_size)`` rows (:meth:`Target.minibatch_log_density`), so
the cost does not grow with N; otherwise the full log density.

Runners use it where a cheap Gaussian that sits in the posterior's bulk is needed: SG-MCMC's
control-variate centre (:func:`probinfer.inference.sgmcmc.preconditioning.find_mean`) and SMC's
reference distribution at high dimension (``pi.smc(..., reference="gaussian")``). It is not a
posterior: the fit under-disperses (it minimises KL(q ‖ π)), which both uses correct for.

>>> mean, scale = fit_mean_field(target, key=0)                  # doctest: +SKIP
"""

import jax
import jax.numpy as jnp
import optax

from probinfer._utils import as_key
from probinfer.errors import ProbinferError
from probinfer.nn.training import train_steps
from probinfer.programs import cached_program

__all__ = ["fit_mean_field", "fit_mean_field_traced"]


def fit_mean_field(target, *, key, start=None, num_steps=2000, batch_size=1024,
                   learning_rate=3e-2):  # fmt: skip
    """Mean-field ADVI on ``target`` (see the module docstring).

    Args:
        target: a compiled :class:`~probinfer.Target` (continuous latents).
        key: int seed or PRNG key.
        start: the initial mean ``(dim,)`` (e.g. the mode); None: a uniform(−2, 2) point on the
            unconstrained space. The initial scale is 0.1.
        num_steps: Adam steps (one draw each).
        batch_size: rows per minibatch when the target's data can be minibatched.
        learning_rate: Adam's initial rate (cosine-decayed to 0).

    Returns:
        ``(mean (dim,), scale (dim,))`` on the unconstrained space.
    """
    target.check_continuous()
    key_start, key_fit = jax.random.split(as_key(key))
    if start is None:
        start = target.init(key_start, 1, strategy="uniform")[0]
    settings = (_batch_size(target, batch_size), int(num_steps), float(learning_rate))
    search = cached_program(
        target,
        ("mean-field", settings),
        lambda: target.jit(lambda t: _search(t, *settings)),  # the data are an argument
        share=True,
    )
    mean, scale = search(jnp.asarray(start, target.dtype), key_fit)
    if not (jnp.all(jnp.isfinite(mean)) and jnp.all(jnp.isfinite(scale))):
        raise ProbinferError(
            f"the mean-field fit of '{target.name}' diverged (non-finite mean or scale after "
            f"{num_steps} steps); lower learning_rate or start it at the mode (start=)."
        )
    return mean, scale


def fit_mean_field_traced(target, start, key, *, num_steps=2000, batch_size=1024,
                          learning_rate=3e-2):  # fmt: skip
    """The pure, traceable form of :func:`fit_mean_field` (no checks, no cache): ``(mean,
    scale)`` from ``start (dim,)`` — for runs vmapped over data sets (``calibrate``)."""
    fit = _search(target, _batch_size(target, batch_size), int(num_steps), float(learning_rate))
    return fit(start, key)


def _batch_size(target, batch_size):
    """``batch_size`` when the target's data can be minibatched and exceed it, else None."""
    try:
        target.check_minibatchable()
    except ProbinferError:
        return None
    return int(batch_size) if target.num_data > int(batch_size) else None


def _search(target, batch_size, num_steps, learning_rate):
    def log_density(z, index):
        if batch_size is None:
            return target.log_density(z)
        return target.minibatch_log_density(z, target.batch(index))

    def negative_elbo(params, key, index):
        noise = jax.random.normal(key, params["mean"].shape, params["mean"].dtype)
        z = params["mean"] + jnp.exp(params["log_scale"]) * noise
        return -log_density(z, index) - params["log_scale"].sum()

    def run(start, key):
        params = {"mean": start, "log_scale": jnp.full_like(start, jnp.log(0.1))}
        schedule = optax.cosine_decay_schedule(learning_rate, num_steps)
        rows = None if batch_size is None else jnp.arange(target.num_data)
        params = train_steps(
            negative_elbo, params, key=key, num_steps=num_steps, optimizer=optax.adam(schedule),
            data=rows, batch_size=batch_size,
        )  # fmt: skip
        return params["mean"], jnp.exp(params["log_scale"])

    return run
