"""Model comparison by PSIS-LOO, through ArviZ.

Vehtari, Gelman & Gabry (2017), "Practical Bayesian model evaluation using leave-one-out
cross-validation and WAIC": ``elpd_loo = Σ_i log p(y_i | y_−i)``, each term estimated from the
posterior draws by Pareto-smoothed importance sampling with ratios ``1 / p(y_i | θ_s)``; the
Pareto k̂ of each point says whether its estimate can be trusted (k̂ > 0.7: refit without it).
The pointwise log likelihood comes from :meth:`Target.log_likelihood_per_datum` (the data plate of
a Target compiled with ``data=``); ArviZ's ``loo`` and ``compare`` do the rest.

>>> result = pi.loo(post, target)           # doctest: +SKIP
>>> result.elpd_loo, result.se, result.pareto_k                        # doctest: +SKIP
>>> pi.compare({"a": (post_a, target_a), "b": (post_b, target_b)})  # doctest: +SKIP
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np

from probinfer._utils import import_arviz

__all__ = ["pointwise_log_likelihood", "loo", "compare"]


def _unweighted(post, key):
    """``{site: (chains, draws, ...)}`` of equally weighted draws (weighted ones resampled)."""
    if post.log_weights is None:
        return post.draws
    n = post.num_chains * post.num_draws
    flat = post.sample(key=0 if key is None else key, n=n)
    return {k: np.asarray(v)[None] for k, v in flat.items()}


def pointwise_log_likelihood(post, target, *, key=None):
    """``log p(y_i | θ_s)`` for every draw and data point: ``(chains, draws, N)``. Weighted
    posteriors (SMC, importance-weighted VI) are resampled first (with ``key``)."""
    draws = _unweighted(post, key)
    chains, n = next(iter(draws.values())).shape[:2]
    latent = {
        k: jnp.asarray(draws[k]).reshape((chains * n,) + draws[k].shape[2:])
        for k in target.latent_sites
    }

    def one(values):
        return target.log_likelihood_per_datum(target.unconstrain(values))

    values = jax.jit(jax.lax.map, static_argnums=0)(one, latent)
    return np.asarray(values).reshape(chains, n, -1), draws


def _inference_data(post, target, key):
    az = import_arviz()
    log_lik, draws = pointwise_log_likelihood(post, target, key=key)
    return az.from_dict(posterior=draws, log_likelihood={"y": log_lik})


def loo(post, target, *, key=None):
    """PSIS-LOO of ``post`` (drawn from ``target``'s posterior): ArviZ's ``ELPDData`` with
    ``elpd_loo``, its ``se`` over data points, ``p_loo`` and the Pareto k̂ of every point
    (``pareto_k``). Also stored in ``post.diagnostics["loo"]`` (elpd, se, p_loo, max k̂)."""
    result = import_arviz().loo(_inference_data(post, target, key), pointwise=True)
    post.diagnostics["loo"] = {
        "elpd_loo": float(result.elpd_loo),
        "se": float(result.se),
        "p_loo": float(result.p_loo),
        "max_pareto_k": float(np.max(result.pareto_k)),
    }
    return result


def compare(fits, *, key=None):
    """ArviZ's LOO comparison table (elpd, differences, their se, stacking weights) of
    ``fits = {name: (Posterior, Target)}``; every Target must have the same data points."""
    data = {name: _inference_data(post, target, key) for name, (post, target) in fits.items()}
    with warnings.catch_warnings():
        # ArviZ 0.23 sorts with pandas' deprecated ``inplace=``: not the user's to act on.
        warnings.filterwarnings("ignore", message=".*inplace keyword", module="pandas")
        warnings.filterwarnings("ignore", message=".*inplace keyword")
        return import_arviz().compare(data, ic="loo")
