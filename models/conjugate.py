"""Conjugate models with exact posteriors and exact log evidences — the ground truth for tests.

* normal–normal: ``μ ~ N(m₀, τ₀²)``, ``y_i ~ N(μ, σ²)`` (σ known).
* beta–binomial: ``p ~ Beta(a, b)``, ``k_i ~ Binomial(n_i, p)``.
* Bayesian linear regression: ``w ~ N(0, τ² I)``, ``y ~ N(X w, σ² I)`` (σ known).

The evidences use the candidate's formula ``log p(y) = log p(y | θ) + log p(θ) − log p(θ | y)``,
exact at any θ; we evaluate it at the posterior mean.
"""

import numpy as np
from scipy import special, stats

from probinfer.language import dist, plate, sample
from probinfer.models._example import Example

__all__ = [
    "normal_normal",
    "normal_normal_posterior",
    "normal_normal_log_evidence",
    "normal_normal_example",
    "beta_binomial",
    "beta_binomial_posterior",
    "beta_binomial_log_evidence",
    "beta_binomial_example",
    "linear_regression",
    "linear_regression_posterior",
    "linear_regression_log_evidence",
    "linear_regression_example",
]


# -- normal–normal ----------------------------------------------------------------------------------


def normal_normal(y=None, *, num_data=None, sigma=1.0, prior_mean=0.0, prior_sd=1.0):
    """Normal mean with known noise ``sigma``; ``y``: (N,) observations (or ``num_data`` to simulate)."""
    mu = sample("mu", dist.Normal(prior_mean, prior_sd))
    with plate("data", num_data if y is None else y.shape[0]):
        sample("y", dist.Normal(mu, sigma), obs=y)


def normal_normal_posterior(y, sigma=1.0, prior_mean=0.0, prior_sd=1.0):
    """Exact posterior ``(mean, sd)`` of μ."""
    y = np.asarray(y, np.float64)
    precision = 1.0 / prior_sd**2 + y.shape[-1] / sigma**2
    mean = (prior_mean / prior_sd**2 + y.sum(-1) / sigma**2) / precision
    return mean, np.sqrt(1.0 / precision)


def normal_normal_log_evidence(y, sigma=1.0, prior_mean=0.0, prior_sd=1.0):
    """Exact ``log p(y)``."""
    y = np.asarray(y, np.float64)
    mean, sd = normal_normal_posterior(y, sigma, prior_mean, prior_sd)
    return (
        stats.norm.logpdf(y, mean, sigma).sum()
        + stats.norm.logpdf(mean, prior_mean, prior_sd)
        - stats.norm.logpdf(mean, mean, sd)
    )


def normal_normal_example(num_data=20, seed=0):
    """Simulated data (μ = 0.7) with exact answers in ``exact``."""
    y = np.random.default_rng(seed).normal(0.7, 1.0, num_data)
    mean, sd = normal_normal_posterior(y)
    exact = {"mu_mean": mean, "mu_sd": sd, "log_evidence": normal_normal_log_evidence(y)}
    return Example(
        "normal_normal",
        normal_normal,
        (),
        {"y": y},
        data=("y",),
        description="normal mean, known variance (exact posterior)",
        exact=exact,
    )


# -- beta–binomial ----------------------------------------------------------------------------------


def beta_binomial(trials, successes=None, *, a=1.0, b=1.0):
    """``trials``: (N,) numbers of trials; ``successes``: (N,) observed counts."""
    p = sample("p", dist.Beta(a, b))
    with plate("data", trials.shape[0]):
        sample("successes", dist.Binomial(total_count=trials, probs=p), obs=successes)


def beta_binomial_posterior(trials, successes, a=1.0, b=1.0):
    """Exact posterior Beta parameters ``(a', b')``."""
    k, n = np.sum(successes), np.sum(trials)
    return a + k, b + n - k


def beta_binomial_log_evidence(trials, successes, a=1.0, b=1.0):
    """Exact ``log p(successes | trials)`` including the binomial coefficients."""
    trials, successes = np.asarray(trials, np.float64), np.asarray(successes, np.float64)
    log_choose = (
        special.gammaln(trials + 1)
        - special.gammaln(successes + 1)
        - special.gammaln(trials - successes + 1)
    ).sum()
    a_post, b_post = beta_binomial_posterior(trials, successes, a, b)
    return log_choose + special.betaln(a_post, b_post) - special.betaln(a, b)


def beta_binomial_example(num_data=10, seed=0):
    """Ten groups of 5–15 trials with success probability 0.3."""
    rng = np.random.default_rng(seed)
    trials = rng.integers(5, 16, num_data).astype(np.float32)
    successes = rng.binomial(trials.astype(int), 0.3).astype(np.float32)
    a_post, b_post = beta_binomial_posterior(trials, successes)
    exact = {
        "p_mean": a_post / (a_post + b_post),
        "p_sd": np.sqrt(a_post * b_post / ((a_post + b_post) ** 2 * (a_post + b_post + 1))),
        "log_evidence": beta_binomial_log_evidence(trials, successes),
    }
    return Example(
        "beta_binomial",
        beta_binomial,
        (trials,),
        {"successes": successes},
        data=("trials", "successes"),
        description="binomial probability, Beta prior (exact posterior)",
        exact=exact,
    )


# -- Bayesian linear regression -----------------------------------------------------------------------


def linear_regression(x, y=None, *, sigma=1.0, prior_sd=1.0):
    """``x``: (N, D) covariates; ``y``: (N,) responses; known noise ``sigma``."""
    w = sample("w", dist.Normal(0.0, prior_sd).expand([x.shape[1]]).to_event(1))
    with plate("data", x.shape[0]):
        sample("y", dist.Normal(x @ w, sigma), obs=y)


def linear_regression_posterior(x, y, sigma=1.0, prior_sd=1.0):
    """Exact posterior ``(mean (D,), covariance (D, D))`` of w."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    precision = np.eye(x.shape[1]) / prior_sd**2 + x.T @ x / sigma**2
    covariance = np.linalg.inv(precision)
    return covariance @ x.T @ y / sigma**2, covariance


def linear_regression_log_evidence(x, y, sigma=1.0, prior_sd=1.0):
    """Exact ``log p(y | x)``."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    mean, covariance = linear_regression_posterior(x, y, sigma, prior_sd)
    dim = x.shape[1]
    return (
        stats.norm.logpdf(y, x @ mean, sigma).sum()
        + stats.multivariate_normal.logpdf(mean, np.zeros(dim), prior_sd**2 * np.eye(dim))
        - stats.multivariate_normal.logpdf(mean, mean, covariance)
    )


def linear_regression_example(num_data=50, dim=3, seed=0):
    """Correlated covariates, w = (1, -0.5, 0.25, ...), σ = 1."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(num_data, dim))
    x[:, 1:] += 0.5 * x[:, :1]
    w = np.array([1.0, -0.5, 0.25, 0.0, 0.5][:dim] + [0.0] * max(0, dim - 5))
    y = x @ w + rng.normal(size=num_data)
    mean, covariance = linear_regression_posterior(x, y)
    exact = {
        "w_mean": mean,
        "w_cov": covariance,
        "log_evidence": linear_regression_log_evidence(x, y),
    }
    return Example(
        "linear_regression",
        linear_regression,
        (x.astype(np.float32),),
        {"y": y.astype(np.float32)},
        data=("x", "y"),
        description="Bayesian linear regression, known noise (exact posterior)",
        exact=exact,
    )
