"""PSIS-LOO against brute-force leave-one-out posteriors of a conjugate model, and the comparison
table on a right and a wrong noise model."""

import arviz as az
import numpy as np
import pytest
from scipy import stats

import probinfer as pi
from probinfer.comparison import pointwise_log_likelihood
from probinfer.models import conjugate


@pytest.fixture(scope="module")
def example():
    return pi.models.get("normal_normal")


@pytest.fixture(scope="module")
def fit(example):
    target = example.compile()
    return pi.mcmc(target, key=0, num_draws=1000, num_warmup=500), target


def test_loo_matches_the_exact_leave_one_out_predictive(example, fit):
    """Exact: ``Σ_i log N(y_i; m_−i, √(1 + s_−i²))`` from the conjugate posterior without point i.
    The estimate's Monte Carlo error, by the delta method on all points at once, is
    ``sd(g) / √ESS(g)`` with ``g_s = Σ_i r_is / r̄_i`` and ``r_is = 1 / p(y_i | θ_s)`` (the
    importance ratios); the estimate must lie within 4 of those."""
    post, target = fit
    y = np.asarray(example.kwargs["y"])
    exact = 0.0
    for i in range(y.size):
        mean, sd = conjugate.normal_normal_posterior(np.delete(y, i))
        exact += stats.norm.logpdf(y[i], mean, np.sqrt(1 + sd**2))
    result = post.loo(target)
    log_lik, _ = pointwise_log_likelihood(post, target)
    ratios = np.exp(-(log_lik - log_lik.max((0, 1))))
    g = (ratios / ratios.mean((0, 1))).sum(-1)
    se = g.std() / np.sqrt(float(az.ess(g)))
    assert abs(float(result.elpd_loo) - exact) < 4 * se, (float(result.elpd_loo), exact, se)
    assert log_lik.shape == (4, 1000, y.size) and np.max(result.pareto_k.values) < 0.5
    assert post.diagnostics["loo"]["elpd_loo"] == pytest.approx(float(result.elpd_loo))


def test_compare_ranks_the_true_noise_level_first(example, fit):
    """The data were simulated with σ = 1; a model with σ = 3 predicts them worse."""
    wide = pi.compile(conjugate.normal_normal, y=example.kwargs["y"], sigma=3.0, data=("y",))
    table = pi.compare(
        {"sigma=1": fit, "sigma=3": (pi.mcmc(wide, key=1, num_draws=1000, num_warmup=500), wide)}
    )
    assert list(table.index) == ["sigma=1", "sigma=3"]
    assert table.loc["sigma=3", "elpd_diff"] > 2 * table.loc["sigma=3", "dse"]
