"""PFNs: the bar distribution, the attention mask, training on a GP prior, the shipped GP PFN
against the exact GP posterior predictive, priors, save/load, checkpoints and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import optax
import pytest

import probinfer as pi
from probinfer.errors import DataError, ModelError
from probinfer.inference import pfn as pfn_module
from probinfer.inference.pfn import (
    BarDistribution,
    GPHyperPrior,
    GPPrior,
    ModelPrior,
    Transformer,
)


@pytest.fixture(scope="module")
def bar():
    borders = jnp.asarray(np.sort(np.random.default_rng(0).normal(size=13)), jnp.float32)
    logits = jax.random.normal(jax.random.PRNGKey(0), (3, 12)) * 2.0
    return BarDistribution(borders, logits)


def test_bar_integrates_to_one(bar):
    grid = np.linspace(float(bar.borders[0]) - 40, float(bar.borders[-1]) + 40, 800_001)
    density = np.exp(np.asarray(bar.log_prob(jnp.asarray(grid, jnp.float32)[:, None]), np.float64))
    integral = np.trapezoid(density, grid, axis=0)
    # Trapezoid error at the K − 2 jumps of a piecewise-constant density: ≤ Σ|jump| · dx / 2.
    dx = grid[1] - grid[0]
    bound = np.sum(np.abs(np.diff(density, axis=0)), axis=0) * dx / 2 + 1e-4  # + float32 sum
    np.testing.assert_array_less(np.abs(integral - 1.0), bound)


def test_bar_cdf_and_quantile_invert_each_other(bar):
    q = jnp.asarray([1e-4, 0.01, 0.2, 0.5, 0.77, 0.99, 0.9999])[:, None]
    np.testing.assert_allclose(bar.cdf(bar.quantile(q)), np.broadcast_to(q, (7, 3)), atol=2e-5)
    y = np.broadcast_to(np.linspace(-4.0, 4.0, 41)[:, None], (41, 3))
    c = np.asarray(bar.cdf(y))
    inside = (c > 1e-4) & (c < 1 - 1e-4)  # float32 cannot tell 1 − 10⁻⁷ from 1 further out
    assert inside.sum() > 60
    np.testing.assert_allclose(np.asarray(bar.quantile(c))[inside], y[inside], atol=2e-3)


def test_bar_mean_and_variance_match_its_samples(bar):
    draws = np.asarray(bar.sample(jax.random.PRNGKey(1), 400_000), np.float64)
    n = draws.shape[0]
    mean_se = draws.std(0) / np.sqrt(n)
    assert np.all(np.abs(draws.mean(0) - np.asarray(bar.mean())) < 4 * mean_se)
    centred = (draws - draws.mean(0)) ** 2
    var_se = centred.std(0) / np.sqrt(n)
    assert np.all(np.abs(centred.mean(0) - np.asarray(bar.variance())) < 4 * var_se)


def test_bar_tails_join_the_inner_buckets(bar):
    """No mass is lost or doubled where the half-normal tails meet the inner buckets: the CDF
    is continuous there, and the density is positive and finite on both sides."""
    for border in (bar.borders[1], bar.borders[-2]):
        eps = 1e-3
        below, above = bar.cdf(border - eps), bar.cdf(border + eps)
        density = np.exp(np.asarray(bar.log_prob(jnp.stack([border - eps, border + eps])[:, None])))
        assert np.all(np.isfinite(density)) and np.all(density > 0)
        np.testing.assert_allclose(above - below, 2 * eps * density.mean(0), rtol=0.05)
    assert np.all(np.asarray(bar.cdf(bar.borders[-1] + 50.0)) > 1 - 1e-6)
    assert np.all(np.asarray(bar.cdf(bar.borders[0] - 50.0)) < 1e-6)


@pytest.fixture(scope="module")
def random_pfn():
    """An untrained PFN: the mask's guarantees hold for any weights."""
    return pi.pfn.train(
        GPPrior(),
        key=0,
        num_steps=1,
        batch_size=4,
        seq_len=40,
        network=Transformer(num_buckets=50, d_model=32, num_layers=2, num_heads=2),
        progress=False,
    )


def _gp_data(seed, n_sets, n):
    return GPPrior().sample(jax.random.PRNGKey(seed), n_sets, n)


def test_permuting_the_context_does_not_change_predictions(random_pfn):
    x, y = _gp_data(1, 1, 25)
    x, y = np.asarray(x[0]), np.asarray(y[0])
    perm = np.random.default_rng(0).permutation(20)
    a = random_pfn.predict(x[:20], y[:20], x[20:]).logits
    b = random_pfn.predict(x[:20][perm], y[:20][perm], x[20:]).logits
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_queries_do_not_see_each_other(random_pfn, monkeypatch):
    x, y = _gp_data(2, 1, 30)
    x, y = np.asarray(x[0]), np.asarray(y[0])
    alone = random_pfn.predict(x[:20], y[:20], x[20:21]).logits[0]
    together = random_pfn.predict(x[:20], y[:20], x[20:]).logits[0]
    np.testing.assert_allclose(alone, together, atol=1e-6)
    monkeypatch.setattr(pfn_module.model, "_QUERY_BLOCK", 3)  # test points in blocks of three
    blocked = pi.pfn.PFN(
        prior=random_pfn.prior, network=random_pfn.network, params=random_pfn.params,
        borders=random_pfn.borders, scaling=random_pfn.scaling, seq_len=random_pfn.seq_len,
        settings={},
    )  # fmt: skip
    np.testing.assert_allclose(
        blocked.predict(x[:20], y[:20], x[20:]).logits,
        random_pfn.predict(x[:20], y[:20], x[20:]).logits,
        atol=1e-6,
    )


def test_batched_prediction_matches_one_at_a_time(random_pfn):
    x, y = _gp_data(3, 3, 30)
    batch = random_pfn.predict(x[:, :10], y[:, :10], x[:, 10:])
    assert batch.batch_shape == (3, 20)
    one = random_pfn.predict(x[1, :10], y[1, :10], x[1, 10:])
    np.testing.assert_allclose(batch.logits[1], one.logits, atol=1e-5)


@pytest.mark.slow  # 14 s: the default tier measured 5:50 of its 6:00
def test_a_short_training_run_beats_the_prior_predictive():
    prior = GPPrior()
    pfn = pi.pfn.train(
        prior,
        key=1,
        num_steps=400,
        batch_size=32,
        seq_len=40,
        network=Transformer(num_buckets=100, d_model=32, num_layers=2, num_heads=2),
        progress=False,
    )
    x, y = _gp_data(10, 300, 40)
    nll = -np.asarray(pfn.predict(x[:, :20], y[:, :20], x[:, 20:]).log_prob(y[:, 20:])).mean(1)
    marginal = dist.Normal(0.0, np.sqrt(prior.outputscale + prior.noise))
    prior_nll = -np.asarray(marginal.log_prob(y[:, 20:])).mean(1)
    gain = prior_nll - nll  # per data set
    assert gain.mean() > 4 * gain.std() / np.sqrt(gain.size), (gain.mean(), gain.std())


@pytest.fixture(scope="module")
def shipped():
    return pi.pfn.load("gp-rbf-1d")


@pytest.mark.parametrize("num_context", [5, 20, 50])
def test_shipped_gp_pfn_matches_the_exact_gp(shipped, num_context):
    """The goal of the shipped model: within 0.05 nats per test point of the exact GP posterior
    predictive on fresh data sets from its declared prior."""
    prior = shipped.prior
    assert isinstance(prior, GPPrior) and prior.num_features == 1
    num_sets, num_test = 400, 20
    x, y = prior.sample(jax.random.PRNGKey(100 + num_context), num_sets, num_context + num_test)
    xc, yc, xq, yq = x[:, :num_context], y[:, :num_context], x[:, num_context:], y[:, num_context:]
    pfn_nll = -np.asarray(shipped.predict(xc, yc, xq).log_prob(yq)).mean(1)
    exact_nll = -np.asarray(jax.vmap(prior.log_predictive)(xc, yc, xq, yq)).mean(1)
    gap = pfn_nll - exact_nll
    se = gap.std() / np.sqrt(num_sets)
    assert se < 0.01  # the estimate is precise enough to judge a 0.05-nat goal
    assert gap.mean() < 0.05, (gap.mean(), se)
    assert gap.mean() > -4 * se  # no model beats the exact predictive (beyond MC error)


def test_gp_predictive_is_the_gaussian_conditional():
    prior = GPPrior(lengthscale=0.3, outputscale=0.5, noise=0.05)
    x, y = prior.sample(jax.random.PRNGKey(4), 1, 12)
    x, y = np.asarray(x[0], np.float64), np.asarray(y[0], np.float64)
    k = 0.5 * np.exp(-0.5 * (x - x.T) ** 2 / 0.09) + 0.05 * np.eye(12)
    a, b = slice(0, 9), slice(9, 12)
    gain = np.linalg.solve(k[a, a], k[a, b]).T
    mean = gain @ y[a]
    var = np.diag(k[b, b] - gain @ k[a, b])
    got_mean, got_var = prior.predictive(x[a], y[a], x[b])
    np.testing.assert_allclose(got_mean, mean, atol=1e-4)
    np.testing.assert_allclose(got_var, var, atol=1e-4)


def test_model_prior_draws_from_the_models_prior_predictive():
    def model(x, y=None):
        w = pi.sample("w", dist.Normal(0.0, 1.0))
        pi.sample("y", dist.Normal(w * x[:, 0], 0.5), obs=y)

    prior = ModelPrior(model, inputs=dist.Uniform(0.0, 1.0))
    x, y = prior.sample(jax.random.PRNGKey(5), 20_000, 3)
    assert x.shape == (20_000, 3, 1) and y.shape == (20_000, 3)
    x, y = np.asarray(x[..., 0], np.float64), np.asarray(y, np.float64)
    # y_i = w x_i + ε_i: E[y_1 y_2 | x] = x_1 x_2 (one w per data set, shared by its points).
    products = y[:, 0] * y[:, 1] - x[:, 0] * x[:, 1]
    assert abs(products.mean()) < 4 * products.std() / np.sqrt(products.size)
    residual = y[:, 0] ** 2 - (x[:, 0] ** 2 + 0.25)
    assert abs(residual.mean()) < 4 * residual.std() / np.sqrt(residual.size)
    # Independent data sets: no correlation between the first and second data set's w.
    assert abs(np.corrcoef(y[:-1, 0], y[1:, 0])[0, 1]) < 4 / np.sqrt(y.shape[0])


def test_model_prior_names_a_bad_output_site():
    def model(x, y=None):
        pi.sample("y", dist.Normal(jnp.zeros((x.shape[0], 2)), 1.0).to_event(1), obs=y)

    with pytest.raises(ModelError, match="one scalar output per input"):
        ModelPrior(model, inputs=dist.Uniform(0.0, 1.0))
    with pytest.raises(ModelError, match="no sample site 'z'"):
        ModelPrior(model, inputs=dist.Uniform(0.0, 1.0), y="z")


def test_gp_hyper_prior_draws_vary_in_scale():
    x, y = GPHyperPrior().sample(jax.random.PRNGKey(6), 500, 30)
    spread = np.asarray(y).std(1)
    assert x.shape == (500, 30, 1) and np.all(np.isfinite(spread))
    assert spread.max() / spread.min() > 5  # the outputscale changes from data set to data set


def test_gp_hyper_prior_returns_the_hyper_parameters_behind_each_data_set():
    prior = GPHyperPrior(num_features=2)
    x, y, h = prior.sample(jax.random.PRNGKey(8), 2000, 30, return_hypers=True)
    np.testing.assert_array_equal(y, prior.sample(jax.random.PRNGKey(8), 2000, 30)[1])
    assert h["lengthscale"].shape == (2000, 2) and h["noise"].shape == (2000,)
    # E[mean_t y_t²] = outputscale + noise for each data set: the ratio has mean exactly 1 only
    # when the returned hyper-parameters are the ones that made y (4 standard errors).
    ratio = np.asarray(jnp.mean(y**2, 1) / (h["outputscale"] + h["noise"]))
    assert abs(ratio.mean() - 1.0) < 4 * ratio.std(ddof=1) / np.sqrt(ratio.size)
    shuffled = np.asarray(jnp.mean(y**2, 1) / jnp.roll(h["outputscale"] + h["noise"], 1))
    assert abs(shuffled.mean() - 1.0) > 4 * shuffled.std(ddof=1) / np.sqrt(shuffled.size)
    # Gamma(2, 10) lengthscales: mean 0.2, sd √2 / 10
    ls = np.asarray(h["lengthscale"]).ravel()
    assert abs(ls.mean() - 0.2) < 4 * np.sqrt(2) / 10 / np.sqrt(ls.size)


def test_save_and_load_round_trip(random_pfn, tmp_path):
    path = tmp_path / "pfn.msgpack"
    random_pfn.save(path)
    again = pi.pfn.load(path)
    x, y = _gp_data(7, 1, 15)
    a = random_pfn.predict(x[0, :10], y[0, :10], x[0, 10:]).logits
    np.testing.assert_array_equal(again.predict(x[0, :10], y[0, :10], x[0, 10:]).logits, a)
    assert again.prior == random_pfn.prior and again.seq_len == random_pfn.seq_len


def test_bad_input_gets_one_clear_sentence(random_pfn):
    x, y = _gp_data(8, 1, 60)
    x, y = np.asarray(x[0]), np.asarray(y[0])
    with pytest.raises(DataError, match="trained on 1-dimensional inputs"):
        random_pfn.predict(np.ones((5, 2)), y[:5], np.ones((3, 2)))
    with pytest.raises(DataError, match="at most 39 context points"):
        random_pfn.predict(x[:45], y[:45], x[45:])
    with pytest.raises(DataError, match="non-finite"):
        random_pfn.predict(x[:5], np.r_[y[:4], np.nan], x[5:8])
    with pytest.raises(DataError, match="disagree"):
        random_pfn.predict(x[:5], y[:4], x[5:8])
    with pytest.warns(UserWarning, match="outside the range"):
        random_pfn.predict(x[:5], y[:5], np.array([[3.0]]))
    with pytest.raises(DataError, match="no PFN at"):
        pi.pfn.load("gp-rbf-7d")


@pytest.mark.slow
def test_training_resumes_on_the_same_loss_curve(tmp_path, killed_after_saves):
    settings = dict(
        key=3,
        num_steps=30,
        batch_size=8,
        seq_len=20,
        network=Transformer(num_buckets=20, d_model=16, num_layers=1, num_heads=2),
        checkpoint_every=10,
        progress=False,
    )
    fresh = pi.pfn.train(GPPrior(), **settings)
    saves = killed_after_saves(2)
    with pytest.raises(KeyboardInterrupt):
        pi.pfn.train(GPPrior(), checkpoint=tmp_path, **settings)
    resumed = pi.pfn.train(GPPrior(), checkpoint=tmp_path, **settings)
    assert saves == [10, 20, 30]  # killed after step 20, resumed there
    np.testing.assert_array_equal(resumed.diagnostics["loss"], fresh.diagnostics["loss"])
    assert resumed.diagnostics["loss"].shape == (30,)


_SHARDED = """
import json, sys, jax
import probinfer as pi
from probinfer.inference.pfn import GPPrior, Transformer
pfn = pi.pfn.train(GPPrior(), key=5, num_steps=20, batch_size=8, seq_len=20, progress=False,
                   devices=int(sys.argv[1]),
                   network=Transformer(num_buckets=20, d_model=16, num_layers=1, num_heads=2))
print(json.dumps({"loss": pfn.diagnostics["loss"].tolist(), "devices": pfn.settings["devices"]}))
"""


@pytest.mark.slow
def test_batch_split_over_devices_gives_the_one_device_loss_curve(on_cpu_devices):
    one = on_cpu_devices(_SHARDED, 4, "1")
    four = on_cpu_devices(_SHARDED, 4, "4")
    assert (one["devices"], four["devices"]) == (1, 4)
    # Same data at every step; only the order of float reductions differs: the first loss (no
    # update yet) agrees to float32 rounding, and 20 Adam steps move the curve far less than
    # the step-to-step spread of the loss.
    np.testing.assert_allclose(four["loss"][0], one["loss"][0], rtol=1e-5)
    diff = np.abs(np.subtract(four["loss"], one["loss"]))
    assert diff.max() < 0.01 * np.std(one["loss"]), (diff.max(), np.std(one["loss"]))


@pytest.mark.slow  # 30-40 s; the default tier stays under 15 minutes
def test_classification_pfn_beats_the_prior_predictive():
    prior = pi.pfn.BNNPrior(classification=True)
    pfn = pi.pfn.train(
        prior,
        key=2,
        num_steps=300,
        batch_size=32,
        seq_len=40,
        network=Transformer(d_model=32, num_layers=2, num_heads=2),
        progress=False,
    )
    assert pfn.classification and pfn.network.num_buckets == 2
    x, y = prior.sample(jax.random.PRNGKey(11), 300, 40)
    pred = pfn.predict(x[:, :30], y[:, :30], x[:, 30:])
    nll = -np.asarray(pred.log_prob(y[:, 30:].astype(jnp.int32))).mean(1)
    rate = float(np.asarray(y).mean())  # the prior predictive: y = 1 with its marginal rate
    prior_nll = -np.asarray(dist.Bernoulli(probs=rate).log_prob(y[:, 30:])).mean(1)
    gain = prior_nll - nll
    assert gain.mean() > 4 * gain.std() / np.sqrt(gain.size), (gain.mean(), gain.std())


def test_bfloat16_network_trains_and_predicts(tmp_path):
    pfn = pi.pfn.train(
        GPPrior(),
        key=0,
        num_steps=3,
        batch_size=4,
        seq_len=20,
        network=Transformer(
            num_buckets=20, d_model=16, num_layers=1, num_heads=2, dtype=jnp.bfloat16
        ),  # fmt: skip
        progress=False,
    )
    assert np.all(np.isfinite(pfn.diagnostics["loss"]))
    leaves = jax.tree.leaves(pfn.params)
    assert all(leaf.dtype == jnp.float32 for leaf in leaves)  # parameters stay float32
    x, y = _gp_data(9, 1, 15)
    pred = pfn.predict(x[0, :10], y[0, :10], x[0, 10:])
    assert pred.logits.dtype == jnp.float32 and np.all(np.isfinite(pred.mean()))
    pfn.save(tmp_path / "bf16.msgpack")
    assert pi.pfn.load(tmp_path / "bf16.msgpack").network.dtype == jnp.bfloat16


def test_training_can_start_from_a_trained_pfn(random_pfn):
    again = pi.pfn.train(
        GPPrior(), key=1, num_steps=2, batch_size=4, seq_len=40, pretrained=random_pfn,
        optimizer=optax.sgd(0.0), progress=False,
    )  # fmt: skip
    x, y = _gp_data(12, 1, 15)
    np.testing.assert_array_equal(
        again.predict(x[0, :10], y[0, :10], x[0, 10:]).logits,
        random_pfn.predict(x[0, :10], y[0, :10], x[0, 10:]).logits,
    )
    assert again.network is random_pfn.network
