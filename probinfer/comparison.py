"""Model comparison by PSIS-LOO, through ArviZ.

Vehtari, Gelman & Gabry (2017), "Practical Bayesian model evaluation using leave-one-out
cross-validation and WAIC": ``elpd_loo = Σ_i log p(y_i | y_−i)``, each term estimated from the
posterior draws by Pareto-smoothed importance sampling with ratios ``1 / p(y_i | θ_s)``; the
Pareto k̂ of each point says whether its estimate can be trusted (k̂ > 0.7: refit without it).
The pointwise log likelihood comes from :meth:`Target.log_likelihood_per_datum` (the data plate of
a Target compiled with ``data=``) or, for a Target compiled without ``data=``, from the observed
sites' elementwise log densities (one observed site, or several of one shape, summed per element);
ArviZ's ``loo`` and ``compare`` do the rest.

>>> result = pi.loo(post, target)           # doctest: +SKIP
>>> result.elpd_loo, result.se, result.pareto_k                        # doctest: +SKIP
>>> pi.compare({"a": (post_a, target_a), "b": (post_b, target_b)})  # doctest: +SKIP
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np

from probinfer._utils import import_arviz, user_stacklevel
from probinfer.errors import DataError
from probinfer.health import ProbinferWarning, loo_checks

__all__ = ["pointwise_log_likelihood", "loo", "compare"]


def _unweighted(post, key, num_draws=None):
    """``{site: (chains, draws, ...)}`` of equally weighted draws: weighted ones resampled (to
    ``num_draws``, default all), unweighted ones thinned evenly within each chain to about
    ``num_draws`` in all."""
    total = post.num_chains * post.num_draws
    if post.log_weights is not None:
        flat = post.sample(key=0 if key is None else key, n=num_draws or total)
        return {k: np.asarray(v)[None] for k, v in flat.items()}
    if num_draws is None or num_draws >= total:
        return post.draws
    per_chain = max(1, -(-num_draws // post.num_chains))
    index = np.linspace(0, post.num_draws - 1, per_chain).round().astype(int)
    return {k: np.asarray(v)[:, index] for k, v in post.draws.items()}


def pointwise_log_likelihood(post, target, *, key=None, num_draws=None):
    """``log p(y_i | θ_s)`` for every draw and data point: ``(chains, draws, N)``. Weighted
    posteriors (SMC, importance-weighted VI) are resampled first (with ``key``); ``num_draws``
    uses about that many draws (evenly spaced) instead of all."""
    draws = _unweighted(post, key, num_draws)
    chains, n = next(iter(draws.values())).shape[:2]
    latent = {
        k: jnp.asarray(draws[k]).reshape((chains * n,) + draws[k].shape[2:])
        for k in target.latent_sites
    }
    per_datum = _per_datum_function(target)

    def one(values):
        return per_datum(target.unconstrain(values))

    values = jax.jit(jax.lax.map, static_argnums=0)(one, latent)
    return np.asarray(values).reshape(chains, n, -1), draws


def _per_datum_function(target):
    """``z -> (N,)`` log likelihood of each data point: the data plate when ``data=`` was given,
    else the observed sites' elementwise terms (the unit LOO leaves out)."""
    if target.data_names:
        return target.log_likelihood_per_datum
    observed = list(target.observed_sites)
    if not observed:
        raise DataError(
            f"Target '{target.name}' has no observed sites, so there is nothing to leave out; "
            "LOO needs a model compiled with observed data."
        )

    def per_datum(z):
        terms, _ = target.log_prob_terms(target.unravel(z))
        shapes = {name: tuple(jnp.shape(terms[name])) for name in observed}
        if len(set(shapes.values())) > 1:
            raise DataError(
                f"Target '{target.name}' observes sites of different shapes {shapes}; name the "
                "data plate for LOO with pi.compile(..., data=('x', 'y')) (the arguments whose "
                "leading axis indexes data points)."
            )
        return jnp.reshape(sum(terms[name] for name in observed), (-1,))

    return per_datum


def _inference_data(post, target, key, num_draws=None):
    az = import_arviz()
    log_lik, draws = pointwise_log_likelihood(post, target, key=key, num_draws=num_draws)
    return az.from_dict(posterior=draws, log_likelihood={"y": log_lik})


def loo(post, target, *, key=None, num_draws=None):
    """PSIS-LOO of ``post`` (drawn from ``target``'s posterior): ArviZ's ``ELPDData`` with
    ``elpd_loo``, its ``se`` over data points, ``p_loo`` and the Pareto k̂ of every point
    (``pareto_k``). Also stored in ``post.diagnostics["loo"]`` (elpd, se, p_loo, max k̂, how many k̂ exceed ArviZ's threshold).
    ``num_draws`` bounds the draws used (memory ``num_draws × N``); ``key`` resamples weighted
    draws."""
    idata = _inference_data(post, target, key, num_draws)
    with warnings.catch_warnings():
        # ArviZ's high-k̂ warning is replaced by ours below (it names the points and the fixes).
        warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto")
        result = import_arviz().loo(idata, pointwise=True)
    pareto_k = np.asarray(result.pareto_k)
    # ArviZ's threshold for S draws: min(1 − 1/log10 S, 0.7) (Vehtari et al. 2024).
    good_k = float(getattr(result, "good_k", 0.7))
    post.diagnostics["loo"] = {
        "elpd_loo": float(result.elpd_loo),
        "se": float(result.se),
        "p_loo": float(result.p_loo),
        "max_pareto_k": float(np.max(pareto_k)),
        "good_pareto_k": good_k,
        "num_high_pareto_k": int(np.sum(pareto_k > good_k)),
        "num_data": int(pareto_k.size),
    }
    for sentence in loo_checks(post.diagnostics["loo"]):
        warnings.warn(sentence, ProbinferWarning, stacklevel=user_stacklevel())
    return result


def compare(fits, *, key=None):
    """ArviZ's LOO comparison table (elpd, differences, their se, stacking weights) of
    ``fits = {name: (Posterior, Target)}``; every Target must have the same data points."""
    # Our loo per fit: its k̂ warning names the model, the points and the fixes, where ArviZ's
    # compare would re-run loo and emit its own (or, under an error filter, drop the model).
    data = {name: loo(post, target, key=key) for name, (post, target) in fits.items()}
    with warnings.catch_warnings():
        # ArviZ 0.23 sorts with pandas' deprecated ``inplace=``: not the user's to act on.
        warnings.filterwarnings("ignore", message=".*inplace keyword", module="pandas")
        warnings.filterwarnings("ignore", message=".*inplace keyword")
        return import_arviz().compare(data, ic="loo")
