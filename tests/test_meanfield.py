"""Mean-field ADVI (``probinfer.meanfield``): on a Gaussian with a diagonal covariance the
mean-field family holds the posterior, so the ELBO's optimum is the exact mean and sd."""

import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats

import probinfer as pi
from probinfer import dist
from probinfer.meanfield import fit_mean_field, fit_mean_field_traced

MEAN = np.array([1.0, -2.0, 0.5], np.float32)
SD = np.array([0.5, 2.0, 1.0], np.float32)


def _gaussian():
    pi.sample("x", dist.Normal(jnp.asarray(MEAN), jnp.asarray(SD)).to_event(1))


def test_the_fit_of_a_diagonal_gaussian_is_its_mean_and_sd():
    """8 fits from independent keys (one compiled program): their average within Student's t
    (7 degrees of freedom, false-alarm rate 1e-3 over the 6 numbers) of the exact mean and sd —
    the fit is unbiased — and the traced form gives the host form's answer for the same key."""
    target = pi.compile(_gaussian)
    fits = [fit_mean_field(target, key=seed) for seed in range(8)]
    means = np.array([np.asarray(m) for m, _ in fits])
    sds = np.array([np.asarray(s) for _, s in fits])
    limit = scipy.stats.t.ppf(1 - 1e-3 / 12, 7) / np.sqrt(8)
    for values, exact in ((means, MEAN), (sds, SD)):
        se_limit = limit * values.std(0, ddof=1)
        np.testing.assert_array_less(np.abs(values.mean(0) - exact), se_limit + 1e-6)
    key_start, key_fit = jax.random.split(jax.random.key(0))
    start = target.init(key_start, 1, strategy="uniform")[0]
    traced = jax.jit(lambda s, k: fit_mean_field_traced(target, s, k))(start, key_fit)
    np.testing.assert_allclose(traced[0], means[0], rtol=1e-4, atol=1e-4)
