"""Truncated sequential NPE (``pi.tsnpe``) at one data set.

The accuracy check (slow tier) is a conjugate normal mean whose posterior is a small corner of a
wide prior (prior sd 5, posterior sd 0.32 per coordinate): TSNPE's posterior against the exact
one, with NPE's accuracy goal (means within 0.2 posterior sd, sds within 15 %; the Monte Carlo
error of 4,000 draws, 0.016 sd and 1.1 %, is far inside it), and its truncated region must hold
the exact posterior (the region is the 1 − 10⁻⁴ HPD region of q: no more than a handful of 4,000
exact draws may lie outside).
"""

import warnings

import jax.numpy as jnp
import numpy as np
import pytest

import probinfer as pi
from probinfer import DataError, ProbinferError, dist
from probinfer.health import ProbinferWarning
from probinfer.inference.amortized import truncated_prior

PRIOR_SD, NUM_OBS = 5.0, 10


def normal_mean(y=None):
    mu = pi.sample("mu", dist.Normal(0.0, PRIOR_SD).expand([2]).to_event(1))
    with pi.plate("n", NUM_OBS):
        pi.sample("y", dist.Normal(mu, 1.0).to_event(1), obs=y)


KWARGS = {"y": jnp.zeros((NUM_OBS, 2))}
Y_OBS = (
    np.tile(np.array([[4.0, -3.0]], np.float32), (NUM_OBS, 1))
    + np.linspace(-1, 1, NUM_OBS, dtype=np.float32)[:, None]
)


def exact(y):
    precision = 1 / PRIOR_SD**2 + NUM_OBS
    return y.sum(0) / precision, np.full(2, precision**-0.5)


@pytest.mark.parametrize(
    "settings, words",
    [
        ({"num_rounds": 0}, "num_rounds"),
        ({"epsilon": 0.7}, "epsilon"),
        ({"weight_decay": -1.0}, "weight_decay"),
        ({"weight_decay": "none"}, "weight_decay"),
    ],
)
def test_tsnpe_refuses_bad_settings_before_simulating(settings, words):
    with pytest.raises(DataError, match=words):
        pi.tsnpe(normal_mean, {"y": Y_OBS}, key=0, model_kwargs=KWARGS, **settings)


def test_tsnpe_refuses_a_data_set_of_the_wrong_shape():
    with pytest.raises(DataError, match="observed sites"):
        pi.tsnpe(normal_mean, {"y": Y_OBS[:, :1], "z": 1.0}, key=0, model_kwargs=KWARGS)


@pytest.mark.slow
def test_tsnpe_matches_the_exact_posterior_of_a_small_corner_of_the_prior():
    post = pi.tsnpe(
        normal_mean, {"y": Y_OBS}, key=0, num_rounds=3, num_simulations=3000,
        progress=False, model_kwargs=KWARGS,
    )  # fmt: skip
    mean, sd = exact(Y_OBS)
    draws = np.asarray(post.sample(1, {"y": Y_OBS}, 4000)["mu"])
    assert np.all(np.abs(draws.mean(0) - mean) < 0.2 * sd), (draws.mean(0), mean)
    assert np.all(np.abs(draws.std(0) / sd - 1) < 0.15), (draws.std(0), sd)
    # Rounds 2 and 3 drew from a small part of the prior: the exact posterior's 1 − 10⁻⁴ region
    # holds 2.2 % of the prior's mass (a disc of 4.29 posterior sds, 1 prior sd from the prior's
    # mean); a flow's tails are heavier than a Gaussian's (5 % measured), and a region holding a
    # quarter of the prior would mean the truncation did next to nothing.
    acceptance = post.diagnostics["acceptance"]
    assert len(acceptance) == 2 and 0 < acceptance[1] < 0.25, acceptance
    assert post.diagnostics["num_simulations"] == 3000
    z, share = truncated_prior(post, {"y": Y_OBS}, 2, 2000)
    assert z.shape == (2000, 2) and 0 < share < 0.25
    rng = np.random.default_rng(0)
    truth = mean + sd * rng.normal(size=(4000, 2))
    log_q_truth = np.asarray(post.log_prob({"mu": truth}, {"y": Y_OBS}))
    log_q_self = np.asarray(post.log_prob({"mu": draws}, {"y": Y_OBS}))
    outside = np.mean(log_q_truth < np.quantile(log_q_self, 1e-3))
    assert outside < 0.01, outside
    # at another data set it warns; calibrate refuses it (it is not amortized)
    with pytest.warns(ProbinferWarning, match="trained for one data set"):
        post.sample(1, {"y": Y_OBS + 1.0}, 10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        post.sample(1, {"y": Y_OBS}, 10)
    with pytest.raises(ProbinferError, match="one data set"):
        pi.calibrate(normal_mean, post, key=0, num_sims=20, model_kwargs=KWARGS)
