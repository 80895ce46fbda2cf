"""The path of distributions SMC travels, ``π_λ ∝ p(θ) L(θ)^λ``, and the data-annealed path.

*Tempering* (``annealing="temperature"``): ``log L`` is a scalar per particle and ``π_λ`` raises the
whole likelihood to ``λ``. *Data annealing* (``annealing="data"``, Chopin 2002): ``log L`` is the
vector of per-datum log likelihoods ``(N_data,)``; datum i enters linearly while ``λ N`` passes from
``i`` to ``i + 1``, so ``λ = k / N`` is exactly the posterior of the first ``k`` data points and
the datum in between is tempered. Both give incremental weights ``log π_λ' − log π_λ``; a zero
exponent contributes exactly 0, even where ``log L = −∞`` (never ``0 · ∞ = NaN``).
"""

import jax.numpy as jnp

__all__ = ["terms_fn", "tempered", "increments"]


def terms_fn(target, annealing="temperature"):
    """``z -> (log prior, log L)``; log L is a scalar, or ``(N_data,)`` per datum for the
    data-annealing path."""
    if annealing == "data":

        def per_datum(z):
            return target.log_prior(z), target.log_likelihood_per_datum(z)

        return per_datum

    return target.log_terms


def _exponents(log_likelihood, temperature):
    """How much of each likelihood term π_λ holds: λ for a scalar log L (tempering); for per-datum
    log L (N,), datum i enters linearly while λN passes from i to i + 1 (data annealing; a
    fractional datum is tempered), so λ = k/N is the posterior of the first k data points."""
    if log_likelihood.ndim == 0:
        return temperature
    num_data = log_likelihood.shape[-1]
    return jnp.clip(temperature * num_data - jnp.arange(num_data), 0.0, 1.0)


def _weighted(log_likelihood, exponents):
    """Σ exponent · log L with a zero exponent contributing exactly 0 (even where log L = −∞)."""
    terms = jnp.where(exponents > 0, exponents * log_likelihood, 0.0)
    return terms if log_likelihood.ndim == 0 else jnp.sum(terms, -1)


def tempered(log_prior, log_likelihood, temperature):
    """``log p + λ log L`` (per particle) with ``λ = 0`` contributing exactly 0."""
    return log_prior + _weighted(log_likelihood, _exponents(log_likelihood, temperature))


def increments(log_likelihood, old, new):
    """Incremental log weights from λ = old to new: (N_particles,) from log L (N_particles,) or
    (N_particles, N_data)."""
    if log_likelihood.ndim == 1:
        return jnp.where(new - old > 0, (new - old) * log_likelihood, 0.0)
    exponents = _exponents(log_likelihood, new) - _exponents(log_likelihood, old)
    return _weighted(log_likelihood, exponents)
