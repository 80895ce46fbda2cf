"""Draws from the model: the prior, the prior predictive, and data sets at given parameters (how
calibration, NPE and the Distribution Transformer simulate). :class:`~probinfer.Target` exposes
each as a method (``target.simulate(key, n)``).

>>> params, observations = simulate(target, key, 100)   # doctest: +SKIP
"""

import jax
import jax.numpy as jnp

from probinfer._utils import as_key
from probinfer.programs import cached_program

__all__ = ["sample_prior", "simulate", "observations", "simulate_observations"]


def sample_prior(target, key, n):
    """``n`` prior draws: ``{site: (n, *shape)}`` for latent and deterministic sites
    (constrained). Observed sites stay at their data."""
    target.check_proper()
    run = cached_program(target, "sample_prior", lambda: target.jit(_prior_draws), share=True)
    return run(jax.random.split(as_key(key), int(n)))


def _prior_draws(target):
    names = tuple(target.latent_sites) + target.discrete_sites + target.deterministic_sites

    def one(key):
        tr = target._trace(key)
        return {name: tr[name]["value"] for name in names}

    return jax.vmap(one)


def simulate(target, key, n):
    """``n`` draws from the prior predictive: ``(params, observations)``.

    ``params``: ``{latent or deterministic site: (n, *shape)}``; ``observations``:
    ``{observed site: (n, *shape)}`` simulated from the likelihood given ``params``
    (the model's non-data arguments, such as covariates, stay fixed).
    """
    target.check_proper()
    run = cached_program(target, "simulate", lambda: target.jit(_simulations), share=True)
    return run(jax.random.split(as_key(key), int(n)))


def _simulations(target):
    names = tuple(target.latent_sites) + target.discrete_sites + target.deterministic_sites

    def one(key):
        tr = target._trace(key, uncondition=True)
        params = {name: tr[name]["value"] for name in names}
        simulated = {name: tr[name]["value"] for name in target.observed_sites}
        return params, simulated

    return jax.vmap(one)


def observations(target):
    """``{observed site: array}``: the data the model was compiled with — the ``x`` an
    amortized estimator (``pi.npe``) is asked about when a job runs it on this target."""
    _, substitute_fn = target._substitute_fn(jnp.zeros(target.dim, target.dtype))
    tr = target._trace(jax.random.PRNGKey(0), substitute_fn=substitute_fn)
    return {name: tr[name]["value"] for name in target.observed_sites}


def simulate_observations(target, key, z):
    """One data set from the likelihood at the unconstrained point ``z (dim,)``:
    ``{observed site: array}`` (traceable; vmap it over points). This is how a method whose
    parameters come from somewhere other than the model's prior (a Distribution
    Transformer's random priors) simulates data."""
    _, substitute_fn = target._substitute_fn(jnp.asarray(z))
    tr = target._trace(as_key(key), substitute_fn=substitute_fn, uncondition=True)
    return {name: tr[name]["value"] for name in target.observed_sites}
