"""Posterior: summary, ArviZ conversion, atomic save/load, unweighted sampling."""

import os

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


def test_summary_sd_and_quantiles_have_their_known_values():
    """Draws 0, 1, …, 999 (shuffled over two chains): sd (ddof 1) = √(n(n+1)/12) and NumPy's
    linear quantiles at q(n − 1); weighted draws 0, 1, 2, 3 with weights 0.1 … 0.4: mean 2,
    sd 1, and the weighted quantile is the smallest value whose cumulative weight reaches q."""
    n = 1000
    values = np.random.default_rng(1).permutation(n).astype(float).reshape(2, n // 2)
    row = pi.Posterior({"x": values}, method="test").summary().loc["x"]
    np.testing.assert_allclose(row["sd"], np.sqrt(n * (n + 1) / 12), rtol=1e-12)
    np.testing.assert_allclose(row[["q5", "q50", "q95"]], [49.95, 499.5, 949.05], rtol=1e-12)
    weighted = (
        pi.Posterior(
            {"x": np.arange(4.0).reshape(1, 4)},
            method="test",
            log_weights=np.log([[0.1, 0.2, 0.3, 0.4]]),
        )
        .summary()
        .loc["x"]
    )
    np.testing.assert_allclose(weighted[["mean", "sd"]], [2.0, 1.0], rtol=1e-12)
    assert weighted[["q5", "q50", "q95"]].tolist() == [0.0, 2.0, 3.0]  # cdf 0.1, 0.3, 0.6, 1
    np.testing.assert_allclose(weighted["ess_bulk"], 1 / (0.01 + 0.04 + 0.09 + 0.16))


def test_sample_draws_whole_stored_draws():
    """Every sampled draw is one stored draw, all its sites together (b = 2a, c = −a per
    draw); without replacement when n ≤ the number stored; a weight on one draw alone gives
    only that draw; two equal weights give each about half (5 standard errors)."""
    a = np.arange(100.0).reshape(2, 50)
    draws = {"a": a, "b": np.stack([2 * a, 2 * a], -1), "c": -a}
    posterior = pi.Posterior(draws, method="test")
    few = posterior.sample(key=0, n=60)
    assert np.unique(few["a"]).size == 60 and set(few["a"]) <= set(a.ravel())
    np.testing.assert_array_equal(few["b"], np.stack([2 * few["a"]] * 2, -1))
    np.testing.assert_array_equal(few["c"], -few["a"])
    many = posterior.sample(key=0, n=500)
    assert set(many["a"]) <= set(a.ravel())  # with replacement: 500 of the 100 stored
    np.testing.assert_array_equal(many["c"], -many["a"])
    log_weights = np.full((2, 50), -np.inf)
    log_weights[1, 7] = 0.0
    one = pi.Posterior(draws, method="test", log_weights=log_weights).sample(key=1, n=200)
    assert set(one["a"]) == {57.0}
    log_weights[0, 3] = 0.0
    two = pi.Posterior(draws, method="test", log_weights=log_weights).sample(key=2, n=4000)
    assert set(two["a"]) == {3.0, 57.0}
    share = np.mean(two["a"] == 3.0)
    assert abs(share - 0.5) < 5 * np.sqrt(0.25 / 4000), share


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


def test_arviz_daily_refactor_warning_does_not_reach_users(tmp_path):
    """ArviZ 0.2x announces its refactor once a day (a stamp file in the user cache); its message
    starts with a newline, which a plain ``.*`` filter does not cross. A fresh cache folder makes
    ArviZ warn; ``import_arviz`` must swallow it."""
    import subprocess
    import sys

    code = "from probinfer._utils import import_arviz; import_arviz()"
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-W", "error::FutureWarning", "-c", code],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-1000:]
    assert "ArviZ is undergoing" not in result.stderr


def test_a_damaged_or_foreign_posterior_file_gets_one_sentence_naming_it(posterior, tmp_path):
    good = tmp_path / "post.npz"
    posterior.save(good)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:200])
    text = tmp_path / "notes.npz"
    text.write_text("not a zip file")
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, x=np.zeros(3))
    for path in (truncated, text, foreign):
        with pytest.raises(pi.DataError, match=f"'{path}'.*write it again"):
            pi.Posterior.load(path)
    with pytest.raises(FileNotFoundError):
        pi.Posterior.load(tmp_path / "missing.npz")


def test_a_damaged_checkpoint_or_one_of_another_shape_is_refused_naming_it(tmp_path):
    import jax.numpy as jnp

    from probinfer import checkpoint

    state = {"a": jnp.zeros((3, 2)), "b": jnp.ones(4, jnp.int32)}
    path = str(tmp_path / "run.npz")
    checkpoint.save(path, {"run": 1}, 5, state, [np.arange(3)])
    progress, restored, outputs = checkpoint.load(path, {"run": 1}, state)
    assert progress == 5 and restored["a"].shape == (3, 2) and outputs[0].tolist() == [0, 1, 2]
    with pytest.raises(
        pi.ProbinferError, match="state leaf 0 is float32\\[3, 2\\].*float32\\[5, 2\\]"
    ):
        checkpoint.load(path, {"run": 1}, {"a": jnp.zeros((5, 2)), "b": state["b"]})
    with pytest.raises(pi.ProbinferError, match="state leaf 1 is int32\\[4\\].*float32\\[4\\]"):
        checkpoint.load(path, {"run": 1}, {"a": state["a"], "b": jnp.ones(4)})
    with open(path, "r+b") as fh:
        fh.truncate(100)
    with pytest.raises(pi.ProbinferError, match=f"'{path}'.*delete it"):
        checkpoint.load(path, {"run": 1}, state)


def test_summary_columns_are_the_pooled_moments_quantiles_and_chain_diagnostics():
    rng = np.random.default_rng(5)
    draws = {"a": rng.normal(size=(3, 200)), "b": rng.gamma(2.0, size=(3, 200, 2, 2))}
    table = pi.Posterior(draws, method="mcmc").summary()
    assert list(table.index) == ["a", "b[0,0]", "b[0,1]", "b[1,0]", "b[1,1]"]
    columns = np.concatenate([draws["a"][..., None], draws["b"].reshape(3, 200, 4)], axis=-1)
    pooled = columns.reshape(600, 5)
    np.testing.assert_allclose(table["mean"], pooled.mean(0), rtol=1e-12)
    np.testing.assert_allclose(table["sd"], pooled.std(0, ddof=1), rtol=1e-12)
    for column, q in (("q5", 0.05), ("q50", 0.5), ("q95", 0.95)):
        np.testing.assert_allclose(table[column], np.quantile(pooled, q, axis=0), rtol=1e-12)
    r_hat, bulk, tail = pi.diagnostics.chain_diagnostics(columns)
    np.testing.assert_allclose(table["r_hat"], r_hat, rtol=1e-12)
    np.testing.assert_allclose(table["ess_bulk"], bulk, rtol=1e-12)
    np.testing.assert_allclose(table["ess_tail"], tail, rtol=1e-12)
