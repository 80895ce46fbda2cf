"""Structured SGMCMC (Alexos, Boyd & Mandt 2022) on Gaussian posteriors with closed forms."""

import arviz as az
import numpy as np
import pytest

import probinfer as pi
from probinfer import ProbinferError
from probinfer.inference.sgmcmc import group_index, structured
from probinfer.models import conjugate


def _correlated_regression():
    """Two correlated covariates and one independent: posterior corr(w₁, w₂) ≈ −0.65."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    x[:, 1] = x[:, 0] + 2.0 * rng.normal(size=40)
    y = x @ np.array([1.0, -0.5, 0.25]) + rng.normal(size=40)
    target = pi.compile(
        conjugate.linear_regression, x.astype(np.float32), y=y.astype(np.float32), data=("x", "y")
    )
    return target, *conjugate.linear_regression_posterior(x, y)


TARGET, MEAN, COV = _correlated_regression()
PRECISION = np.linalg.inv(COV)


def test_one_group_is_plain_sgld_for_the_same_key():
    kwargs = dict(key=3, step_size=1e-3, batch_size=8, num_steps=600, num_chains=2, thinning=3)
    plain = pi.sgmcmc(TARGET, kernel="sgld", **kwargs)
    one = pi.sgmcmc(TARGET, kernel=structured(groups=np.zeros(3, int)), **kwargs)
    assert one.settings["num_groups"] == 1
    np.testing.assert_array_equal(one.draws["w"], plain.draws["w"])


def _mean_field_variances(step):
    """Stationary variances of full-batch structured SGLD with one group per coordinate, the
    other coordinates drawn from far in the past (independent): coordinate i is the AR(1)
    θᵢ' = θᵢ − (ε/2)(aᵢ(θᵢ − μᵢ) + Σⱼ Λᵢⱼ(θⱼ − μⱼ)) + √ε ξ with aᵢ = Λᵢᵢ, so
    vᵢ = (1 + ε sᵢ²/4) / (aᵢ (1 − ε aᵢ/4)), sᵢ² = Σ_{j≠i} Λᵢⱼ² vⱼ; as ε → 0, vᵢ → 1/Λᵢᵢ, the
    mean-field variance."""
    a = np.diag(PRECISION)
    off = PRECISION**2 - np.diag(a**2)
    v = 1 / a
    for _ in range(200):
        v = (1 + step * (off @ v) / 4) / (a * (1 - step * a / 4))
    return v


def test_all_groups_is_fully_factorised():
    """One group per coordinate: the draws are uncorrelated across groups (the posterior has
    corr(w₁, w₂) ≈ −0.65, which plain SGLD reproduces) and each marginal has the mean-field
    variance 1/Λᵢᵢ (up to the O(ε) term above); the means are the posterior means.

    The past samples come from a finite ring buffer, whose mean lags and fluctuates; through the
    coupling this leaves a residual correlation that shrinks with the buffer (measured on a
    −0.82-correlated posterior: −0.49, −0.26, −0.10 for K = 100, 300, 1,000). K = 1,000 here."""
    step = 0.1 / np.diag(PRECISION).max()
    common = dict(step_size=step, batch_size=TARGET.num_data, num_steps=30_000, thinning=10)
    post = pi.sgmcmc(TARGET, key=0, kernel=structured(groups="all", buffer_size=1000), **common)
    assert post.settings["num_groups"] == 3
    draws = post.draws["w"]
    flat = draws.reshape(-1, 3)
    ess = np.array([float(az.ess(draws[..., d])) for d in range(3)])
    corr = np.corrcoef(flat.T)
    # The SE of a sample correlation near 0 is 1/√ESS.
    for i, j in [(0, 1), (0, 2), (1, 2)]:
        assert abs(corr[i, j]) < 4 / np.sqrt(min(ess[i], ess[j])), (i, j, corr[i, j])
    variances = _mean_field_variances(step)
    assert np.all(np.abs(flat.var(0) / variances - 1) < 4 * np.sqrt(2 / ess)), (
        flat.var(0) / variances
    )
    assert np.all(np.abs(flat.mean(0) - MEAN) < 4 * np.sqrt(variances / ess))
    # The same run without structure keeps the posterior correlation: the test can fail.
    joint = pi.sgmcmc(TARGET, key=0, kernel="sgld", **common).draws["w"].reshape(-1, 3)
    expected = COV[0, 1] / np.sqrt(COV[0, 0] * COV[1, 1])
    found = np.corrcoef(joint.T)[0, 1]
    joint_ess = float(az.ess(joint.reshape(4, -1, 3)[..., 0]))
    assert abs(found - expected) < 4 * (1 - expected**2) / np.sqrt(joint_ess), (found, expected)


def test_dropout_variant_with_all_groups_active_is_plain_sgld_in_law():
    """p = 1: every copy uses the current values, so the estimate is the plain gradient (exactly,
    averaged over L identical copies) and the chain keeps the posterior correlation."""
    common = dict(key=1, step_size=1e-3, batch_size=TARGET.num_data, num_steps=300, thinning=3)
    plain = pi.sgmcmc(TARGET, kernel="sgld", **common)
    drop = pi.sgmcmc(TARGET, kernel=structured(groups="all", dropout=1.0, num_copies=2), **common)
    np.testing.assert_allclose(drop.draws["w"], plain.draws["w"], rtol=1e-5, atol=1e-5)


def test_structured_sghmc_factorises_too():
    post = pi.sgmcmc(
        TARGET,
        key=2,
        kernel=structured(kernel="sghmc", groups="all", buffer_size=1000),
        batch_size=TARGET.num_data,
        num_steps=20_000,
        thinning=10,
    )
    draws = post.draws["w"]
    ess = np.array([float(az.ess(draws[..., d])) for d in range(3)])
    corr = np.corrcoef(draws.reshape(-1, 3).T)[0, 1]
    assert abs(corr) < 4 / np.sqrt(ess[:2].min()), corr


def test_groupings():
    def model(x, y=None):
        w1 = pi.sample("w1", pi.dist.Normal(0.0, 1.0).expand([2, 3]).to_event(2))
        b1 = pi.sample("b1", pi.dist.Normal(0.0, 1.0).expand([3]).to_event(1))
        with pi.plate("data", x.shape[0]):
            pi.sample("y", pi.dist.Normal((x @ w1 + b1).sum(-1), 1.0), obs=y)

    x = np.ones((4, 2), np.float32)
    target = pi.compile(model, x, y=np.zeros(4, np.float32), data=("x", "y"))
    labels, m = group_index(target, "layer")
    assert m == 2 and np.bincount(labels).tolist() in ([6, 3], [3, 6])
    labels, m = group_index(target, "neuron")
    assert m == 6 and sorted(np.bincount(labels).tolist()) == [1, 1, 1, 2, 2, 2]
    w1 = np.asarray(target.unravel(np.arange(9.0))["w1"]).astype(int)
    assert all(len(set(labels[w1[:, j]])) == 1 for j in range(3))  # a unit's incoming weights
    labels, m = group_index(target, "permuted", num_groups=3, key=0)
    assert m == 3 and np.bincount(labels).tolist() == [3, 3, 3]
    labels, m = group_index(target, "random", num_groups=4, key=0)
    assert m <= 4 and set(labels) == set(range(m))
    assert group_index(target, "all")[1] == 9
    # A flax network (numpyro's random_flax_module): a layer is <layer>.kernel with <layer>.bias,
    # a unit is one kernel column with its bias entry.
    from probinfer.models import bnn

    net = pi.compile(
        bnn.mlp_classifier,
        np.ones((5, 2), np.float32),
        y=np.zeros(5, np.int32),
        hidden=(4,),
        num_classes=3,
        data=("x", "y"),
    )
    labels, m = group_index(net, "layer")
    assert m == 2 and sorted(np.bincount(labels).tolist()) == [2 * 4 + 4, 4 * 3 + 3]
    labels, m = group_index(net, "neuron")
    assert m == 4 + 3 and sorted(np.bincount(labels).tolist()) == [3] * 4 + [5] * 3
    with pytest.raises(ProbinferError, match="num_groups"):
        group_index(target, "random")
    with pytest.raises(ProbinferError, match="groups must be"):
        group_index(target, "layers")
    with pytest.raises(ProbinferError, match="dropout"):
        structured(dropout=0.0)
