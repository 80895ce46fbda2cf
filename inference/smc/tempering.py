"""The path of distributions SMC travels, ``π_λ ∝ p(θ) L(θ)^λ``, and the data-annealed path.

*Tempering* (``annealing="temperature"``): ``log L`` is a scalar per particle and ``π_λ`` raises the
whole likelihood to ``λ``. *Data annealing* (``annealing="data"``, Chopin 2002): ``log L`` is the
vector of per-datum log likelihoods ``(N_data,)``; datum i enters linearly while ``λ N`` passes from
``i`` to ``i + 1``, so ``λ = k / N`` is exactly the posterior of the first ``k`` data points and
the datum in between is tempered. Both give incremental weights ``log π_λ' − log π_λ``; a zero
exponent contributes exactly 0, even where ``log L = −∞`` (never ``0 · ∞ = NaN``).

*A Gaussian reference* (``reference=(m, s)``): the path starts at ``q = N(m, diag s²)`` instead of
the prior, ``π_λ ∝ q^{1−λ} (p L)^λ`` — the same tempering with ``q`` in the prior's place and
``p L / q`` in the likelihood's. ``q`` is normalised, so the evidence estimate is unchanged
(``Z = E_q[p L / q]``, telescoped along the ladder). When ``q`` sits in the posterior's bulk the
ladder is short: the number of temperatures grows with ``√dim`` times the log of how much the
posterior contracts from the start, and a mean-field fit contracts very little.
"""

import jax.numpy as jnp

__all__ = ["terms_fn", "tempered", "increments", "reference_log_density"]


def reference_log_density(reference, z):
    """``log N(z; m, diag s²)`` for ``reference = (m, s)`` (each ``(dim,)``)."""
    mean, scale = reference
    standard = (z - mean) / scale
    return (
        -0.5 * jnp.sum(standard**2) - jnp.sum(jnp.log(scale)) - 0.5 * z.size * jnp.log(2 * jnp.pi)
    )


def terms_fn(target, annealing="temperature", reference=None):
    """``z -> (log prior, log L)``; log L is a scalar, or ``(N_data,)`` per datum for the
    data-annealing path. With a Gaussian ``reference = (m, s)`` (tempering only): ``z ->
    (log q, log p + log L − log q)``."""
    if reference is not None:

        def from_reference(z):
            log_prior, log_likelihood = target.log_terms(z)
            log_q = reference_log_density(reference, z)
            return log_q, log_prior + log_likelihood - log_q

        return from_reference
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
