"""Posterior predictive summaries against closed forms."""

import numpy as np
import pytest
from scipy import stats
from scipy.special import expit

import probinfer as pi
from probinfer import DataError
from probinfer.inference.sgmcmc import entropy
from probinfer.models import conjugate, logistic_regression
from probinfer.predictive import expected_calibration_error


def test_gaussian_predictive_density_matches_the_closed_form():
    """Exact posterior draws of the conjugate regression: (1/S) Σ_s N(y | xθ_s, σ²) estimates
    p(y | x, D) = N(y | xμ, σ² + xΣxᵀ); its relative MC error per point is sd_s(p_s)/(√S p̄)."""
    example = conjugate.linear_regression_example()
    target = example.compile()
    mean, cov = example.exact["w_mean"], example.exact["w_cov"]
    rng = np.random.default_rng(0)
    draws = rng.multivariate_normal(mean, cov, size=(2, 2000)).astype(np.float32)
    post = pi.Posterior({"w": draws}, method="exact")
    x_test = rng.normal(size=(30, 3)).astype(np.float32)
    y_test = (x_test @ np.array([1.0, -0.5, 0.25]) + rng.normal(size=30)).astype(np.float32)
    pred = pi.predict(target, post, {"x": x_test, "y": y_test})
    sd = np.sqrt(1.0 + np.einsum("nd,de,ne->n", x_test, cov, x_test))
    exact = stats.norm.logpdf(y_test, x_test @ mean, sd)
    per_draw = stats.norm.pdf(y_test, draws.reshape(-1, 3) @ x_test.T, 1.0)  # (S, N)
    relative_se = per_draw.std(0) / per_draw.mean(0) / np.sqrt(per_draw.shape[0])
    assert np.all(np.abs(pred.log_predictive - exact) < 4 * relative_se + 1e-5)
    mean_error = 4 * np.sqrt(np.diag(x_test @ cov @ x_test.T) / 4000).max()
    np.testing.assert_allclose(pred.mean, x_test @ mean, atol=mean_error)
    # |rmse − exact rmse| ≤ the rms of the mean's error (triangle inequality) ≤ its maximum.
    exact_rmse = np.sqrt(np.mean((x_test @ mean - y_test) ** 2))
    assert abs(pred.rmse - exact_rmse) <= mean_error, (pred.rmse, exact_rmse)
    assert pred.accuracy is None and pred.num_draws == 4000


def test_bernoulli_predictive_probabilities_are_the_ensemble_average():
    x, y = logistic_regression.load_breast_cancer()
    x, y = x[:100, :3], y[:100]
    target = pi.compile(logistic_regression.logistic_regression, x, y=y, data=("x", "y"))
    rng = np.random.default_rng(1)
    w = rng.normal(size=(1, 50, 3)).astype(np.float32)
    b = rng.normal(size=(1, 50)).astype(np.float32)
    pred = pi.predict(target, pi.Posterior({"w": w, "b": b}, method="test"), {"x": x, "y": y})
    p = expit(w[0] @ x.T + b[0][:, None]).mean(0)
    np.testing.assert_allclose(pred.probs[:, 1], p, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pred.log_predictive, np.log(np.where(y == 1, p, 1 - p)), rtol=1e-4)
    assert pred.accuracy == pytest.approx(np.mean((p > 0.5) == y))
    assert pred.ece == pytest.approx(expected_calibration_error(np.stack([1 - p, p], 1), y))
    per_draw = expit(w[0] @ x.T + b[0][:, None])
    mean_log_lik = np.mean(np.log(np.where(y == 1, per_draw, 1 - per_draw)), axis=1)
    np.testing.assert_allclose(pred.draw_log_likelihood, mean_log_lik, rtol=1e-4)


def test_expected_calibration_error():
    """Labels drawn from the stated probabilities: ECE is only the binning noise, whose size
    (Σ_b (n_b/N) · sd of a bin's accuracy ≈ √(conf(1−conf)/n_b)) bounds it; a model that
    reports confidence 0.99 and is right 60 % of the time has ECE 0.39."""
    rng = np.random.default_rng(2)
    n = 20_000
    probs = rng.dirichlet(np.ones(4), size=n)
    labels = np.array([rng.choice(4, p=p) for p in probs])
    which = np.clip(np.digitize(probs.max(1), np.linspace(0, 1, 16)[1:-1]), 0, 14)
    noise = sum((which == b).mean() * np.sqrt(0.25 / max(1, (which == b).sum())) for b in range(15))
    assert expected_calibration_error(probs, labels) < 4 * noise
    confident = np.full((1000, 2), 0.01)
    confident[:, 0] = 0.99
    labels = (np.arange(1000) >= 600).astype(int)
    assert expected_calibration_error(confident, labels) == pytest.approx(0.39)


def test_entropy_anchors_join_the_ensemble_and_bad_input():
    example = conjugate.linear_regression_example()
    target = example.compile()
    post = pi.sgmcmc(target, key=0, kernel=entropy(coupling=0.1), num_steps=2_000, batch_size=10)
    data = {"x": np.asarray(example.args[0])[:5], "y": example.kwargs["y"][:5]}
    both = pi.predict(target, post, data, anchors=True)
    alone = pi.predict(target, post, data)
    anchor_draws = pi.Posterior(post.diagnostics["anchor_draws"], method="sgmcmc")
    anchors_only = pi.predict(target, anchor_draws, data)
    assert both.num_draws == 2 * alone.num_draws
    # The joint ensemble is the equal mixture of the θ and θ_a ensembles, point by point.
    mixture = np.logaddexp(alone.log_predictive, anchors_only.log_predictive) - np.log(2.0)
    np.testing.assert_allclose(both.log_predictive, mixture, rtol=1e-5)
    # θ_a is the posterior smoothed by N(0, 0.1 I): its predictive is wider than θ's, so its
    # density at the data differs from θ's (the anchors are not a copy of the draws).
    assert not np.allclose(anchors_only.log_predictive, alone.log_predictive, rtol=1e-3)
    with pytest.raises(DataError, match="Entropy-MCMC"):
        pi.predict(target, pi.Posterior({"w": np.zeros((1, 2, 3))}, method="x"), data, anchors=True)
    with pytest.raises(DataError, match="not an observed site"):
        pi.predict(target, post, data, site="z")
