"""The SGMCMC defaults against a long NUTS reference (NumPyro) on a correlated real-data model."""

import arviz as az
import jax
import numpy as np
import pytest
from numpyro.infer import MCMC, NUTS

import probinfer as pi
from probinfer.models import logistic_regression


@pytest.mark.slow
@pytest.mark.parametrize("batch_size", [64, None])
def test_defaults_match_nuts_on_breast_cancer_logistic_regression(batch_size):
    """31-dim logistic regression on the breast-cancer data (strongly correlated features). The
    issue's bar: with no method and no step size, every posterior mean within 0.3 reference sd and
    every sd within 35 %. The reference's own MC error (4 chains × 5,000 NUTS draws, ESS in the
    thousands) is below 0.03 sd, negligible against the bar. At the default batch of 128 the KSD
    pilot alone chose 10× the curvature step (sds 1.2–2.2× NUTS's); the minibatch-noise bound
    keeps it at 3×."""
    example = pi.models.get("logistic_regression")
    x, y = logistic_regression.load_breast_cancer()
    nuts = MCMC(
        NUTS(logistic_regression.logistic_regression),
        num_warmup=1_000,
        num_samples=5_000,
        num_chains=4,
        chain_method="vectorized",
        progress_bar=False,
    )
    nuts.run(jax.random.PRNGKey(0), x, y=y)
    ref = nuts.get_samples(group_by_chain=True)
    reference = np.concatenate([ref["w"], ref["b"][..., None]], axis=-1)  # (4, 5000, 31)
    assert min(float(az.ess(reference[..., d])) for d in range(31)) > 1_000
    ref_mean, ref_sd = reference.reshape(-1, 31).mean(0), reference.reshape(-1, 31).std(0)

    post = pi.sgmcmc(example.compile(), key=0, batch_size=batch_size, num_steps=20_000)
    draws = np.concatenate([post.draws["w"], post.draws["b"][..., None]], axis=-1).reshape(-1, 31)
    mean_error = np.abs(draws.mean(0) - ref_mean) / ref_sd
    sd_ratio = draws.std(0) / ref_sd
    assert np.all(mean_error < 0.3), mean_error.max()
    assert np.all(np.abs(sd_ratio - 1) < 0.35), (sd_ratio.min(), sd_ratio.max())
