"""Distribution Transformers: the mixture representation, the network's invariances, training
against the exact linear-Gaussian posterior, sequential use and the estimator API."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

import probinfer as pi
from probinfer.errors import DataError
from probinfer.inference.dt import (
    DistributionTransformer,
    MetaPrior,
    Mixture,
    linear_gaussian_update,
)


@pytest.fixture(scope="module")
def mixture():
    tril = jnp.asarray(
        [[[1.0, 0.0], [0.5, 0.6]], [[0.3, 0.0], [-0.2, 0.8]], [[0.7, 0.0], [0.0, 0.2]]]
    )
    return Mixture(
        jnp.asarray([0.2, -0.5, 1.0]), jnp.asarray([[0.0, 1.0], [2.0, -1.0], [-1.5, 0.5]]), tril
    )


def test_log_prob_is_numpyros_mixture(mixture):
    reference = dist.MixtureSameFamily(
        dist.Categorical(logits=mixture.logits),
        dist.MultivariateNormal(mixture.means, scale_tril=mixture.scale_tril),
    )
    theta = jax.random.normal(jax.random.PRNGKey(0), (50, 2)) * 2
    np.testing.assert_allclose(mixture.log_prob(theta), reference.log_prob(theta), atol=1e-5)


def test_samples_have_the_mixtures_moments(mixture):
    draws = np.asarray(mixture.sample(jax.random.PRNGKey(1), 200_000), np.float64)
    n = draws.shape[0]
    se = draws.std(0) / np.sqrt(n)
    assert np.all(np.abs(draws.mean(0) - np.asarray(mixture.mean())) < 4 * se)
    cov = np.cov(draws.T)
    # the sd of a sample covariance entry is about sqrt((σ_ii σ_jj + σ_ij²) / n)
    exact = np.asarray(mixture.covariance(), np.float64)
    cov_se = np.sqrt((np.outer(np.diag(exact), np.diag(exact)) + exact**2) / n)
    assert np.all(np.abs(cov - exact) < 4 * cov_se)


def test_batched_mixtures_sample_per_batch_element(mixture):
    batch = Mixture(
        jnp.stack([mixture.logits] * 2),
        jnp.stack([mixture.means, mixture.means.at[:, 0].add(10.0)]),
        jnp.stack([mixture.scale_tril] * 2),
    )
    draws = batch.sample(jax.random.PRNGKey(2), 1000)
    assert draws.shape == (1000, 2, 2)
    shift = np.asarray(draws[:, 1, 0]).mean() - np.asarray(draws[:, 0, 0]).mean()
    assert abs(shift - 10.0) < 4 * np.sqrt(2 * float(mixture.covariance()[0, 0]) / 1000)
    assert batch.log_prob(jnp.zeros((2, 2))).shape == (2,)


def test_em_recovers_a_well_separated_mixture():
    truth = Mixture(
        jnp.log(jnp.asarray([0.3, 0.7])),
        jnp.asarray([[-4.0, 0.0], [4.0, 1.0]]),
        jnp.asarray([[[1.0, 0.0], [0.3, 0.5]], [[0.5, 0.0], [0.0, 1.0]]]),
    )
    draws = truth.sample(jax.random.PRNGKey(3), 20_000)
    fit = Mixture.fit(draws, 2, key=jax.random.PRNGKey(4))
    order = np.argsort(np.asarray(fit.means[:, 0]))
    n = 20_000
    np.testing.assert_allclose(
        np.asarray(fit.weights)[order], [0.3, 0.7], atol=4 * np.sqrt(0.21 / n)
    )
    np.testing.assert_allclose(np.asarray(fit.means)[order], truth.means, atol=0.05)
    with pytest.raises(DataError, match="n ≥ 2·num_components"):
        Mixture.fit(draws[:3], 2, key=jax.random.PRNGKey(0))


def test_linear_gaussian_update_is_bayes_rule_on_a_grid(mixture):
    design = jnp.asarray([[1.0, -0.5]])
    noise = jnp.asarray([[0.3]])
    y = jnp.asarray([0.8])
    post = linear_gaussian_update(mixture, design, noise, y)
    grid = np.linspace(-8, 8, 801)
    g = np.stack(np.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    g = jnp.asarray(g, jnp.float32)
    log_joint = mixture.log_prob(g) + dist.Normal(g @ design[0], jnp.sqrt(noise[0, 0])).log_prob(
        y[0]
    )
    log_post = log_joint - jax.scipy.special.logsumexp(log_joint) - 2 * np.log(grid[1] - grid[0])
    np.testing.assert_allclose(post.log_prob(g), log_post, atol=2e-3)


# -- the network and training -------------------------------------------------------------------

NUM_DATA = 10
X_DESIGN = np.linspace(-1.0, 1.0, NUM_DATA)
NOISE_SD = 0.5


def line(y=None):
    theta = pi.sample("theta", dist.Normal(0, 1).expand([2]).to_event(1))
    with pi.plate("data", NUM_DATA):
        pi.sample("y", dist.Normal(theta[0] + theta[1] * X_DESIGN, NOISE_SD), obs=y)


def exact_posterior(prior, y):
    design = np.stack([np.ones(NUM_DATA), X_DESIGN], -1)
    return linear_gaussian_update(
        prior, design, NOISE_SD**2 * np.eye(NUM_DATA), jnp.asarray(y, jnp.float32)
    )


def kl(p, q, key, n=4000):
    """KL(p ‖ q) by Monte Carlo, with its standard error."""
    draws = p.sample(key, n)
    diff = np.asarray(p.log_prob(draws) - q.log_prob(draws), np.float64)
    return diff.mean(), diff.std() / np.sqrt(n)


@pytest.fixture(scope="module")
def short_dt():
    return pi.dt.train(
        line,
        key=0,
        num_steps=300,
        batch_size=64,
        network=DistributionTransformer(d_model=32, num_layers=2, num_heads=2),
        model_kwargs={"y": jnp.zeros(NUM_DATA)},
        progress=False,
    )


def _random_prior(seed):
    return jax.tree.map(lambda a: a[0], MetaPrior().sample(jax.random.PRNGKey(seed), 1, 2))


def test_output_ignores_the_order_of_data_and_of_prior_components(short_dt):
    prior = _random_prior(1)
    y = np.random.default_rng(0).normal(size=NUM_DATA)
    theta = jax.random.normal(jax.random.PRNGKey(2), (20, 2))
    base = short_dt.posterior(prior, {"y": y}).log_prob(theta)
    # The model's observations are exchangeable only together with their design points, so
    # permute the features the network sees (the layout's rows) directly.
    features, _ = short_dt.layout.features({"y": y})
    perm = np.random.default_rng(1).permutation(NUM_DATA)
    batched = jax.tree.map(lambda a: a[None], prior)
    a = short_dt.network.apply(short_dt.params, batched, features)
    b = short_dt.network.apply(short_dt.params, batched, features[:, perm])
    np.testing.assert_allclose(a.log_prob(theta[:, None]), b.log_prob(theta[:, None]), atol=1e-4)
    swapped = Mixture(prior.logits[::-1], prior.means[::-1], prior.scale_tril[::-1])
    np.testing.assert_allclose(
        short_dt.posterior(swapped, {"y": y}).log_prob(theta), base, atol=1e-4
    )


def test_short_training_moves_the_prior_towards_the_exact_posterior(short_dt):
    """After 300 steps the output is already closer (in KL from the exact posterior) than the
    prior itself, on priors the training never saw."""
    gains = []
    rng = np.random.default_rng(3)
    for seed in range(20):
        prior = _random_prior(1000 + seed)
        theta = prior.sample(jax.random.PRNGKey(seed), 1)[0]
        y = np.asarray(theta[0] + theta[1] * X_DESIGN) + NOISE_SD * rng.normal(size=NUM_DATA)
        exact = exact_posterior(prior, y)
        q = short_dt.posterior(prior, {"y": y})
        gains.append(kl(exact, prior, jax.random.PRNGKey(seed))[0]
                     - kl(exact, q, jax.random.PRNGKey(seed))[0])  # fmt: skip
    gains = np.asarray(gains)
    assert gains.mean() > 4 * gains.std() / np.sqrt(gains.size), gains


def test_sequential_update_and_posterior_api(short_dt):
    prior = _random_prior(5)
    y = np.random.default_rng(4).normal(size=(3, NUM_DATA))
    steps = short_dt.update(prior, [{"y": row} for row in y])
    assert len(steps) == 3 and all(s.num_components == prior.num_components for s in steps)
    batch = short_dt.posterior(prior, {"y": y})
    assert batch.logits.shape == (3, prior.num_components * 2)
    post = short_dt.to_posterior(steps[-1], key=0, n=100)
    assert post.draws["theta"].shape == (1, 100, 2)
    draws = short_dt.estimator(prior).sample(jax.random.PRNGKey(0), {"y": y[0]}, 50)
    assert draws["theta"].shape == (50, 2)


def test_bad_priors_get_one_clear_sentence(short_dt):
    with pytest.raises(DataError, match="must be a Mixture"):
        short_dt.posterior({"theta": 0.0}, {"y": np.zeros(NUM_DATA)})
    with pytest.raises(DataError, match="over 3 dimensions"):
        short_dt.posterior(Mixture.gaussian(jnp.zeros(3), jnp.eye(3)), {"y": np.zeros(NUM_DATA)})
