"""Posterior: summary, ArviZ conversion, atomic save/load, unweighted sampling."""

import numpy as np
import pytest

import probinfer as pi


@pytest.fixture()
def posterior():
    rng = np.random.default_rng(0)
    draws = {"a": rng.normal(size=(2, 500)), "b": rng.normal(2.0, 3.0, size=(2, 500, 3))}
    diagnostics = {
        "acceptance_rate": np.array([0.8, 0.7]),
        "step_size": 0.1,
        "log_density": rng.normal(size=(2, 500)),
        "nonfinite_prior_draws": {"nan": 2, "-inf": 0},  # a dict, as SMC records it
    }
    return pi.Posterior(draws, method="test", diagnostics=diagnostics, settings={"x": 1})


def test_summary_has_every_component_and_column(posterior):
    table = posterior.summary()
    assert list(table.index) == ["a", "b[0]", "b[1]", "b[2]"]
    assert list(table.columns) == [
        "mean",
        "sd",
        "q5",
        "q50",
        "q95",
        "ess_bulk",
        "ess_tail",
        "r_hat",
    ]
    np.testing.assert_allclose(table.loc["b[1]", "mean"], posterior.draws["b"][..., 1].mean())
    assert (table["r_hat"] < 1.05).all() and (table["ess_bulk"] > 500).all()


def test_to_arviz_keeps_shapes_and_stats(posterior):
    idata = posterior.to_arviz()
    assert idata.posterior["b"].shape == (2, 500, 3)
    assert "log_density" in idata.sample_stats
    assert idata.attrs["method"] == "test"


def test_save_load_round_trip_is_exact(posterior, tmp_path):
    path = tmp_path / "post.npz"
    posterior.save(path)
    loaded = pi.Posterior.load(path)
    for name in posterior.draws:
        np.testing.assert_array_equal(loaded.draws[name], posterior.draws[name])
    np.testing.assert_array_equal(loaded.diagnostics["acceptance_rate"], [0.8, 0.7])
    assert loaded.diagnostics["step_size"] == 0.1 and loaded.settings == {"x": 1}
    assert loaded.diagnostics["nonfinite_prior_draws"] == {"nan": 2, "-inf": 0}
    assert [p.name for p in tmp_path.iterdir()] == ["post.npz"]  # no temporary file left behind


def test_sample_returns_requested_shape_without_weights(posterior):
    draws = posterior.sample(key=0, n=100)
    assert draws["a"].shape == (100,) and draws["b"].shape == (100, 3)
    assert posterior.sample(key=0, n=5000)["a"].shape == (5000,)


def test_weighted_posterior_resamples_by_weight():
    values = np.array([[0.0, 1.0, 2.0, 3.0]])
    log_weights = np.log(np.array([[0.1, 0.2, 0.3, 0.4]]))
    post = pi.Posterior({"x": values}, method="is", log_weights=log_weights, log_evidence=-1.5)
    n = 20000
    draws = post.sample(key=1, n=n)["x"]
    frequencies = np.bincount(draws.astype(int), minlength=4) / n
    np.testing.assert_allclose(frequencies, [0.1, 0.2, 0.3, 0.4], atol=4 * np.sqrt(0.25 / n))
    table = post.summary()
    np.testing.assert_allclose(table.loc["x", "mean"], 2.0)
    np.testing.assert_allclose(
        table.loc["x", "ess_bulk"], 1 / np.sum(np.square([0.1, 0.2, 0.3, 0.4]))
    )
    assert post.to_arviz(key=0).posterior["x"].shape == (1, 4)


def test_bad_posterior_inputs_are_reported():
    with pytest.raises(pi.ProbinferError, match="leading"):
        pi.Posterior({"a": np.zeros((2, 3)), "b": np.zeros((2, 4))}, method="x")
    with pytest.raises(pi.ProbinferError, match="NaN"):
        pi.Posterior({"a": np.zeros((1, 2))}, method="x", log_weights=np.array([[0.0, np.nan]]))
