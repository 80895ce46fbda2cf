"""Distribution Transformers — the mixture representation (the network comes next)."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

from probinfer.errors import DataError
from probinfer.inference.dt import Mixture, linear_gaussian_update


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
