"""The shared discrepancies: KSD (IMQ, Gorham & Mackey) and MMD, against exact answers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import probinfer as pi
from probinfer.diagnostics import c2st, ksd, median_lengthscale, median_squared_distance, mmd
from probinfer.errors import DataError


def _stein_matrix(x, s, lengthscale, c, beta):
    """k_p(x_i, x_j) from the definition, by automatic differentiation of the IMQ kernel."""

    def k(a, b):
        return (c**2 + jnp.sum((a - b) ** 2) / lengthscale**2) ** beta

    def k_p(xi, si, xj, sj):
        trace = jnp.trace(jax.jacfwd(jax.grad(k, 1), 0)(xi, xj))
        return (
            si @ sj * k(xi, xj) + si @ jax.grad(k, 1)(xi, xj) + sj @ jax.grad(k, 0)(xi, xj) + trace
        )

    return jax.vmap(lambda xi, si: jax.vmap(lambda xj, sj: k_p(xi, si, xj, sj))(x, s))(x, s)


def test_ksd_matches_the_definition_in_every_form():
    """The closed-form Stein kernel in row blocks (blocks that do not divide N) against autodiff of
    the IMQ kernel: V-statistic, weighted V-statistic and U-statistic agree to float rounding."""
    x = 2 * jax.random.normal(jax.random.PRNGKey(0), (37, 3)) + 1
    s = jax.random.normal(jax.random.PRNGKey(1), (37, 3))
    matrix = np.asarray(_stein_matrix(x, s, 1.7, 0.8, -0.3), np.float64)
    options = dict(lengthscale=1.7, c=0.8, beta=-0.3)
    np.testing.assert_allclose(
        ksd(x, s, block_size=8, **options), np.sqrt(matrix.mean()), rtol=1e-5
    )
    weights = np.arange(1.0, 38.0) / np.arange(1.0, 38.0).sum()
    weighted = ksd(x, s, weights=jnp.arange(1.0, 38.0), block_size=16, **options)
    np.testing.assert_allclose(weighted, np.sqrt(weights @ matrix @ weights), rtol=1e-5)
    off_diagonal = (matrix.sum() - np.trace(matrix)) / (37 * 36)
    unbiased = ksd(x, s, unbiased=True, block_size=10, **options)
    np.testing.assert_allclose(unbiased, off_diagonal, rtol=1e-4, atol=1e-6)


def test_unbiased_ksd_is_zero_on_average_for_exact_draws_and_detects_a_shift():
    """For draws from p = N(0, I₂) with scores −x the U-statistic has mean exactly 0: over 40
    independent samples of 200 the mean is within 4 standard errors of 0. Draws shifted by 0.5 sd
    (scores still those of p) give a mean KSD² many standard errors above 0."""
    keys = jax.random.split(jax.random.PRNGKey(2), 40)
    exact = np.array(
        [
            float(ksd(x, -x, unbiased=True))
            for x in jax.vmap(lambda k: jax.random.normal(k, (200, 2)))(keys)
        ]
    )
    assert abs(exact.mean()) < 4 * exact.std(ddof=1) / np.sqrt(exact.size), exact.mean()
    shifted = np.array(
        [
            float(ksd(x + 0.5, -(x + 0.5), unbiased=True))
            for x in jax.vmap(lambda k: jax.random.normal(k, (200, 2)))(keys)
        ]
    )
    assert shifted.mean() > 10 * shifted.std(ddof=1) / np.sqrt(shifted.size)


def _rbf_mean(mean_a, var_a, mean_b, var_b, lengthscale, d):
    """E exp(−‖x − y‖² / 2ℓ²) for independent x ~ N(a, σ_a² I), y ~ N(b, σ_b² I)."""
    total = lengthscale**2 + var_a + var_b
    return (lengthscale**2 / total) ** (d / 2) * np.exp(-0.5 * d * (mean_a - mean_b) ** 2 / total)


def test_mmd_is_unbiased_for_the_closed_form_between_gaussians():
    """Unbiased MMD² with an RBF kernel between N(0, I₃) and N(0.3·1, 1.5² I₃) samples of 150 and
    97 points (blocks that do not divide them): the mean over 40 replicates is within 4 standard
    errors of the closed form E k(x, x') + E k(y, y') − 2 E k(x, y); equal laws average to 0."""
    d, ell = 3, 1.3
    exact = (
        _rbf_mean(0, 1, 0, 1, ell, d)
        + _rbf_mean(0.3, 2.25, 0.3, 2.25, ell, d)
        - 2 * _rbf_mean(0, 1, 0.3, 2.25, ell, d)
    )
    values, null = [], []
    for key in jax.random.split(jax.random.PRNGKey(3), 40):
        k1, k2, k3 = jax.random.split(key, 3)
        x = jax.random.normal(k1, (150, d))
        y = 0.3 + 1.5 * jax.random.normal(k2, (97, d))
        values.append(float(mmd(x, y, lengthscale=ell, block_size=64)))
        null.append(float(mmd(x, jax.random.normal(k3, (97, d)), lengthscale=ell, block_size=64)))
    values, null = np.array(values), np.array(null)
    assert abs(values.mean() - exact) < 4 * values.std(ddof=1) / np.sqrt(values.size)
    assert abs(null.mean()) < 4 * null.std(ddof=1) / np.sqrt(null.size)


def test_median_lengthscale_and_bad_input():
    x = jnp.array([[0.0], [1.0], [3.0]])
    np.testing.assert_allclose(median_lengthscale(x), 2.0)  # distances 1, 2, 3
    assert float(median_lengthscale(jnp.zeros((4, 2)))) == 1.0
    with pytest.raises(DataError, match="same shape"):
        ksd(jnp.zeros((5, 2)), jnp.zeros((5, 3)))
    with pytest.raises(DataError, match="dimension"):
        mmd(jnp.zeros((5, 2)), jnp.zeros((5, 3)))
    with pytest.raises(DataError, match="beta"):
        ksd(jnp.zeros((5, 2)), jnp.zeros((5, 2)), beta=-1.5)


@pytest.mark.parametrize("n", [2, 3, 4, 7, 50])
def test_sort_free_median_equals_the_sorted_median(n):
    """The bisection median of pairwise squared distances equals ``np.median`` of the upper
    triangle: odd and even pair counts, tied distances (integer points), coincident points."""
    rng = np.random.default_rng(n)
    for x in (rng.normal(size=(n, 3)), np.round(2 * rng.normal(size=(n, 2))), np.ones((n, 2))):
        squared = np.sum((x[:, None] - x[None]) ** 2, -1)[np.triu_indices(n, 1)]
        expected = np.median(squared) if np.median(squared) > 0 else 1.0
        got = median_squared_distance(jnp.asarray(x, jnp.float32))
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_c2st_reads_half_for_one_distribution_and_one_for_disjoint_ones():
    """Identical distributions: the held-out accuracy of 2,000 labels is 0.5 up to 3 binomial
    standard errors (0.5/√2000); samples 10 sd apart are told apart (accuracy > 0.95)."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(1000, 2)), rng.normal(size=(1000, 2))
    assert abs(c2st(x, y, key=0) - 0.5) < 3 * 0.5 / np.sqrt(2000)
    assert c2st(x, y + 10.0, key=1) > 0.95


@pytest.mark.parametrize(
    ("num_chains", "num_draws", "rho"),
    [(4, 1000, 0.0), (4, 1000, 0.9), (2, 101, 0.5), (1, 50, 0.3), (4, 5, 0.0), (3, 200, -0.6)],
)
def test_chain_diagnostics_equal_arviz(num_chains, num_draws, rho):
    """Vectorised R-hat and bulk/tail ESS equal ArviZ's per-component loop to rounding, for
    independent, sticky, anti-correlated and very short chains, ties (a rounded column), a
    constant column and chains that disagree (a shifted column)."""
    from probinfer._utils import import_arviz

    az = import_arviz()
    rng = np.random.default_rng(num_draws)
    noise = rng.normal(size=(num_chains, num_draws, 5))
    x = np.zeros_like(noise)
    for t in range(num_draws):
        x[:, t] = (rho * x[:, t - 1] if t else 0.0) + noise[:, t]
    x[..., 1] = np.round(x[..., 1])
    x[..., 2] = 3.0
    x[..., 3] += np.arange(num_chains)[:, None]
    ours = pi.diagnostics.chain_diagnostics(x)
    idata = az.from_dict(posterior={"v": x})
    with np.errstate(divide="ignore", invalid="ignore"):  # ArviZ on the constant column
        bulk = az.ess(idata, method="bulk")["v"].values
        tail = az.ess(idata, method="tail")["v"].values
        r_hat = az.rhat(idata)["v"].values if num_chains > 1 else np.full(5, np.nan)
    for mine, theirs in zip(ours, (r_hat, bulk, tail), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-10, equal_nan=True)
