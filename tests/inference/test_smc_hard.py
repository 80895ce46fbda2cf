"""SMC defaults on hard models against long references (slow tier; issue 11's goals).

The references are computed by ``experiments/smc/hard_models.py`` (NumPyro NUTS, 4 × 10,000 draws,
for the stochastic-volatility posterior; importance sampling with 2·10⁶ draws for the logistic
regression's log Z) and stored in ``experiments/smc/results/hard_models.json``.
"""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import probinfer as pi
from probinfer import models

RESULTS = Path(__file__).parents[2] / "experiments" / "smc" / "results" / "hard_models.json"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def references():
    return json.loads(RESULTS.read_text())


def test_stochastic_volatility_posterior_matches_long_nuts(references):
    """Default SMC, 4,096 particles, on the Cauchy-prior SV model (≈18 % of prior particles with a
    NaN or −inf likelihood): every posterior mean (μ, φ, σ, h_std, h) within 0.15 reference sd of
    NUTS, every sd within 20 % (the goals; 5 seeds in the experiment: ≤ 0.07 and ≤ 12 %)."""
    reference = references["stochastic_volatility"]["nuts_reference"]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "SMC on 'stochastic_volatility'", RuntimeWarning)
        post = pi.smc(
            models.get("stochastic_volatility").compile(),
            key=11,
            num_particles=4096,
            progress=False,
        )
    weights = np.exp(post.log_weights[0])
    for site in reference["mean"]:
        x = np.asarray(post.draws[site][0]).reshape(weights.size, -1)
        mean = weights @ x
        sd = np.sqrt(weights @ (x - mean) ** 2)
        ref_mean, ref_sd = np.asarray(reference["mean"][site]), np.asarray(reference["sd"][site])
        assert np.max(np.abs(mean - ref_mean) / ref_sd) < 0.15, site
        assert np.max(np.abs(sd / ref_sd - 1)) < 0.2, site


def test_breast_cancer_log_evidence_matches_importance_sampling(references):
    """Default SMC (adaptive move lengths), 1,000 particles, 5 seeds: the mean log Z within 3
    standard errors (of the SMC mean and of the reference together) of the IS reference. (Before
    the move watched the principal axes and took at least 10 steps, seeds 20–24 were 3.3 se low.)"""
    reference = references["logistic_regression"]
    target = models.get("logistic_regression").compile()
    log_z = np.array(
        [
            pi.smc(target, key=20 + s, num_particles=1000, progress=False).log_evidence
            for s in range(5)
        ]
    )
    se = np.hypot(log_z.std(ddof=1) / np.sqrt(log_z.size), reference["reference_se"])
    assert abs(log_z.mean() - reference["reference_log_evidence"]) < 3 * se, (log_z, se)
