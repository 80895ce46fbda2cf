"""Pathfinder against the exact posterior of a conjugate regression, and as a start for MCMC."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

import probinfer as pi
from probinfer import models
from probinfer.pathfinder import pathfinder_starts


@pytest.fixture(scope="module")
def regression():
    return models.get("linear_regression")


@pytest.fixture(scope="module")
def multi_path(regression):
    return pi.pathfinder(regression.compile(), key=0)


def test_weighted_draws_have_the_exact_posterior_moments(multi_path, regression):
    """The pool's draws are independent draws of the paths' Gaussians, so the PSIS-weighted
    means have the importance-sampling error of the weights' Kish ESS: every mean within 4 of
    those standard errors; k̂ below 0.5 on a Gaussian posterior."""
    post = multi_path
    assert post.draws["w"].shape == (1, 4000, 3) and post.method == "pathfinder"
    w = np.exp(post.log_weights[0] - post.log_weights.max())
    w /= w.sum()
    ess = 1 / np.sum(w**2)
    assert ess > 1000, ess
    mean = w @ post.draws["w"][0]
    exact_mean, exact_cov = regression.exact["w_mean"], regression.exact["w_cov"]
    sd = np.sqrt(np.diag(exact_cov))
    np.testing.assert_array_less(np.abs(mean - exact_mean), 4 * sd / np.sqrt(ess))
    assert post.diagnostics["pareto_k"] < 0.5
    assert post.diagnostics["elbo"].shape == (4,) and post.diagnostics["num_iterations"].min() > 1
    assert post.diagnostics["warnings"] == []


def test_one_path_is_close_to_the_gaussian_posterior_and_its_weights_give_log_z(regression):
    """On a Gaussian posterior one path's Gaussian is nearly exact: log π − log q varies little
    (measured sd 0.12: L-BFGS's inverse Hessian from six pairs, not the exact one), and the
    importance-sampling estimate log mean exp(log π − log q) is log Z within 4 of its delta-method
    standard errors (sd of the weights / their mean / √n)."""
    post = pi.pathfinder(regression.compile(), key=1, num_paths=1, num_draws=4000)
    log_w = post.diagnostics["log_weights_raw"]
    assert log_w.std() < 0.3, log_w.std()
    w = np.exp(log_w - log_w.max())
    se = w.std() / w.mean() / np.sqrt(w.size)
    log_z = logsumexp(log_w) - np.log(w.size)
    assert abs(log_z - regression.exact["log_evidence"]) < 4 * se, (log_z, se)
    assert np.mean(log_w) <= regression.exact["log_evidence"] + 4 * log_w.std() / np.sqrt(w.size)


def test_pathfinder_starts_lie_in_the_posterior_bulk(regression):
    """``init="pathfinder"`` starting points: finite, and each inside the exact posterior's
    central region of probability 1 − 1e-6 (for a 3-D Gaussian, 2 (log π_max − log π) is χ²₃),
    and no two alike (drawn without replacement: chains started at one point blind R-hat)."""
    target = regression.compile()
    z = np.asarray(pathfinder_starts(target, jax.random.PRNGKey(2), 8))
    assert z.shape == (8, 3) and np.all(np.isfinite(z))
    assert len(np.unique(z, axis=0)) == 8
    mean, cov = regression.exact["w_mean"], regression.exact["w_cov"]
    d = z - mean
    distance = np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov), d)
    assert np.all(distance < stats.chi2.ppf(1 - 1e-6, 3)), distance
    post = pi.mcmc(target, key=3, init="pathfinder", num_draws=100, num_warmup=50)
    assert post.draws["w"].shape == (4, 100, 3)


def test_bad_input_is_named():
    def discrete():
        pi.sample("k", pi.dist.Poisson(3.0))

    with pytest.raises(pi.ProbinferError, match="num_paths must be a positive integer"):
        pi.pathfinder(models.get("linear_regression").compile(), key=0, num_paths=0)
    with pytest.raises(pi.ProbinferError, match="'k'"):
        pi.pathfinder(pi.compile(discrete), key=0)
    with pytest.raises(pi.DataError, match="'pathfinder'"):
        models.get("linear_regression").compile().starting_points("pathfindr", 2, key=0)


def test_a_funnel_gets_a_pareto_k_warning_naming_pathfinder():
    """Neal's funnel has no Gaussian approximation: k̂ is large and the warning says what to do."""
    with pytest.warns(pi.ProbinferWarning, match=r"pathfinder: Pareto k̂ .*init='pathfinder'"):
        post = pi.pathfinder(models.get("funnel").compile(), key=0)
    assert post.diagnostics["pareto_k"] > 0.7
    assert np.all(np.isfinite(jnp.asarray(post.log_weights)))
