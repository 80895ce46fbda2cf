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


def test_loo_without_a_data_plate_uses_the_observed_sites_elementwise(example, fit):
    """A Target compiled without ``data=`` leaves out each element of its observed site: the same
    pointwise log likelihood, to float rounding, as the data plate gives."""
    post, target = fit
    plain = pi.compile(conjugate.normal_normal, y=example.kwargs["y"])
    assert not plain.data_names
    with_plate, _ = pointwise_log_likelihood(post, target, num_draws=200)
    without, _ = pointwise_log_likelihood(post, plain, num_draws=200)
    assert with_plate.shape == (4, 50, example.kwargs["y"].size)
    np.testing.assert_allclose(without, with_plate, rtol=1e-5, atol=1e-5)


def test_loo_names_the_fix_for_sites_of_different_shapes():
    def two_sites(y=None, w=None):
        mu = pi.sample("mu", pi.dist.Normal(0, 1))
        pi.sample("y", pi.dist.Normal(mu, 1).expand([3]), obs=y)
        pi.sample("w", pi.dist.Normal(mu, 1).expand([2]), obs=w)

    target = pi.compile(two_sites, y=np.zeros(3), w=np.zeros(2))
    post = pi.Posterior({"mu": np.zeros((1, 10))}, method="mcmc")
    with pytest.raises(pi.DataError, match=r"different shapes.*data=\("):
        post.loo(target)


def test_the_report_shows_loo_a_predictive_check_and_warns_of_influential_points(tmp_path):
    """One gross outlier among 20 points under a normal model: its Pareto k̂ is far above 0.7, and
    the report says so in a sentence, beside the LOO table and the predictive plot."""
    y = np.random.default_rng(1).normal(0, 1, 20)
    y[3] = 25.0
    target = pi.compile(conjugate.normal_normal, y=y, prior_sd=10.0)
    post = pi.mcmc(target, key=0, num_draws=500, num_warmup=300, progress=False)
    with pytest.warns(pi.ProbinferWarning, match=r"1 of 20 data points have Pareto k̂"):
        pi.loo(post, target)
    # compare warns the same sentence and still ranks every model (ArviZ's own loo inside compare
    # would warn its own, or under an error filter drop the model with "Encountered error").
    with pytest.warns(pi.ProbinferWarning, match=r"1 of 20 data points have Pareto k̂"):
        table = pi.compare({"a": (post, target), "b": (post, target)})
    assert sorted(table.index) == ["a", "b"]
    paths = pi.report.write_report(post, tmp_path, target=target, max_components=2)
    assert (tmp_path / "ppc.png").stat().st_size > 0 and "ppc.png" in paths
    page = (tmp_path / "report.html").read_text()
    assert "elpd_loo" in page and "leave-one-out" in page
    found = post.diagnostics["loo"]
    assert found["num_data"] == 20 and found["num_high_pareto_k"] >= 1
    assert "Pareto k̂ &gt;" in page and "1 of 20 data points" in page
    assert "elpd_loo" in (tmp_path / "report.md").read_text()


def test_a_model_check_that_fails_is_a_sentence_in_a_written_report(tmp_path, monkeypatch, fit):
    """A report comes at the end of a long run: a check that breaks says so, in the report."""
    import importlib

    model_checks = importlib.import_module("probinfer.report.model_checks")

    def broken(*args):
        raise RuntimeError("simulator exploded")

    monkeypatch.setattr(model_checks, "_replicates", broken)
    post, target = fit
    pi.report.write_report(post, tmp_path, target=target, max_components=1)
    page = (tmp_path / "report.html").read_text()
    assert "Posterior predictive plot not drawn (RuntimeError: simulator exploded)" in page
    assert "elpd_loo" in page and not (tmp_path / "ppc.png").exists()
