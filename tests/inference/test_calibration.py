"""TARP and SBC: agreement with the `tarp` package, the paper's Gaussian toy, bad inputs."""

import numpy as np
import pytest

from probinfer import DataError
from probinfer.inference.calibration import point_estimate_references, sbc, tarp
from probinfer.inference.calibration.hpd import HPDCoverage, hpd_levels

NUM_SIMS, NUM_SAMPLES, DIM = 400, 150, 3
PRIOR_SD = 2.0
SHRINK = PRIOR_SD**2 / (PRIOR_SD**2 + 1.0)  # x ~ N(θ, 1), θ ~ N(0, PRIOR_SD²)


@pytest.fixture(scope="module")
def toy():
    rng = np.random.default_rng(1)
    theta = rng.normal(0.0, PRIOR_SD, (NUM_SIMS, DIM))
    x = theta + rng.normal(size=(NUM_SIMS, DIM))

    def estimator(width=1.0, shift=0.0, seed=10):
        noise = np.random.default_rng(seed).normal(size=(NUM_SAMPLES, NUM_SIMS, DIM))
        return SHRINK * x[None] + shift + width * np.sqrt(SHRINK) * noise

    prior = rng.normal(0.0, PRIOR_SD, (NUM_SAMPLES, NUM_SIMS, DIM))
    return theta, x, estimator, prior


X_REFERENCES = point_estimate_references(lambda x_i: x_i, 1.0)


@pytest.mark.parametrize("metric", ["euclidean", "manhattan"])
@pytest.mark.parametrize("normalize", [True, False])
def test_matches_the_tarp_package(metric, normalize, toy):
    import tarp as tarp_package  # a test dependency: a missing install must fail, not skip

    theta, _, estimator, _ = toy
    samples = estimator()
    # Put one truth far outside and one at the centre of its samples, so f spans [0, 1] and the
    # package's range-less histogram uses the same α grid as ours.
    samples[:, 0] = theta[0] + 50.0 + np.random.default_rng(1).normal(size=(NUM_SAMPLES, DIM))
    samples[:, 1] = theta[1] + 0.01 * np.random.default_rng(2).normal(size=(NUM_SAMPLES, DIM))
    samples[:, 1] += 10.0
    references = np.random.default_rng(3).uniform(size=(NUM_SIMS, DIM))
    low, high = theta.min(0), theta.max(0)
    ours_references = references * (high - low + 1e-10) + low if normalize else references
    ecp, alpha = tarp_package.get_tarp_coverage(
        samples, theta, references=references, metric=metric, norm=normalize, num_alpha_bins=40
    )
    coverage = tarp(
        samples,
        theta,
        references=ours_references,
        metric=metric,
        normalize=normalize,
        num_alpha_bins=40,
    )
    assert coverage.f.min() == 0.0 and coverage.f.max() == 1.0
    np.testing.assert_allclose(coverage.alpha, alpha, atol=1e-6)
    np.testing.assert_allclose(coverage.ecp, ecp, atol=1e-6)


@pytest.mark.parametrize("references", ["random", "x"])
def test_exact_posteriors_are_flagged_at_about_the_nominal_rate(references):
    """The verdict is a level-0.05 test: over 60 independent toy data sets with exact posteriors,
    the false-alarm count is Binomial(60, ≤ 0.05); more than 9 (mean 3 + 3 sd of 1.7) fails."""
    refs = X_REFERENCES if references == "x" else "random"
    alarms = 0
    for seed in range(60):
        rng = np.random.default_rng(1000 + seed)
        theta = rng.normal(0.0, PRIOR_SD, (NUM_SIMS, DIM))
        x = theta + rng.normal(size=(NUM_SIMS, DIM))
        noise = rng.normal(size=(NUM_SAMPLES, NUM_SIMS, DIM))
        samples = SHRINK * x[None] + np.sqrt(SHRINK) * noise
        coverage = tarp(samples, theta, x=x, key=seed, references=refs, bootstrap=100)
        alarms += coverage.diagnosis()[0] != "calibrated"
    assert alarms <= 9, alarms


@pytest.mark.parametrize(
    ("width", "shift", "expected"),
    [
        (1.0, 0.0, "calibrated"),
        (0.5, 0.0, "over-confident"),
        (2.0, 0.0, "under-confident"),
        (1.0, 1.0, "biased"),
    ],
)
@pytest.mark.parametrize("references", ["random", "x"])
def test_gaussian_toy_verdicts(width, shift, expected, references, toy):
    # One data set each; the calibrated case's false-alarm rate is checked over 60 data sets
    # above, so this fixed seed is one draw of a test whose rate is known.
    theta, x, estimator, _ = toy
    refs = X_REFERENCES if references == "x" else "random"
    coverage = tarp(estimator(width, shift), theta, x=x, key=1, references=refs, bootstrap=100)
    assert coverage.diagnosis()[0] == expected, coverage.verdict()
    if expected == "calibrated":
        assert coverage.max_deviation <= coverage.max_deviation_threshold
    if coverage.ecp_replicates.shape[0]:  # one threshold: the one the verdict used
        threshold = coverage.diagnosis()[1]["max_deviation_threshold"]
        assert threshold == coverage.max_deviation_threshold == coverage.band(0.025)
    if expected == "over-confident":
        assert coverage.atc < 0
    if expected == "under-confident":
        assert coverage.atc > 0
    words = {
        "calibrated": "consistent with calibration",
        "over-confident": "over-confident",
        "under-confident": "under-confident",
        "biased": "biased",
    }
    assert words[expected] in coverage.verdict()


def test_width_label_agrees_with_the_atc_sign_or_says_misshapen(toy):
    """A too-narrow toy estimator is over-confident with ATC < 0; the same statistics with the
    ATC's sign flipped (the TARP curve above the diagonal, as SLCP's NPE gave) contradict the
    standardised errors, and the label says so instead of naming one width."""
    import dataclasses

    theta, x, estimator, _ = toy
    coverage = tarp(estimator(0.5, 0.0), theta, x=x, key=1, references=X_REFERENCES, bootstrap=100)
    assert coverage.diagnosis()[0] == "over-confident" and coverage.atc < 0
    flipped = dataclasses.replace(coverage, atc=-coverage.atc)
    assert flipped.diagnosis()[0] == "misshapen"
    assert "misshapen: the TARP curve says credible regions too wide" in flipped.verdict()


def test_prior_estimator_passes_random_references_and_fails_x_dependent_ones(toy):
    theta, x, _, prior = toy
    assert tarp(prior, theta, x=x, key=2, bootstrap=100).diagnosis()[0] == "calibrated"
    caught = tarp(prior, theta, x=x, key=2, references=X_REFERENCES, bootstrap=100)
    assert caught.diagnosis()[0] != "calibrated"
    assert "x-dependent" in caught.verdict()


def test_bootstrap_resamples_f_and_is_reproducible(toy):
    theta, _, estimator, _ = toy
    samples = estimator()
    first = tarp(samples, theta, key=3, bootstrap=50)
    second = tarp(samples, theta, key=3, bootstrap=50)
    np.testing.assert_array_equal(first.ecp_replicates, second.ecp_replicates)
    assert first.ecp_replicates.shape == (50, NUM_SIMS // 10 + 1)
    assert len({tuple(r) for r in first.ecp_replicates}) == 50  # fresh draws per replicate
    # Each replicate is the ECP of a resample of the same f: its mean over replicates is the ECP.
    se = first.ecp_replicates.std(0) / np.sqrt(50)
    assert np.all(np.abs(first.ecp_replicates.mean(0) - first.ecp) <= 4 * se + 1e-9)


def test_sims_first_layout_is_explicit(toy):
    theta, _, estimator, _ = toy
    samples = estimator()
    a = tarp(samples, theta, key=4)
    b = tarp(np.swapaxes(samples, 0, 1), theta, key=4, layout="sims-first")
    np.testing.assert_array_equal(a.ecp, b.ecp)
    with pytest.raises(DataError, match="sims-first"):
        tarp(np.swapaxes(samples, 0, 1), theta, key=0)


@pytest.mark.parametrize(
    ("samples", "theta", "message"),
    [
        (np.zeros((5, 4, 2)), np.zeros((3, 2)), "theta has shape"),
        (np.zeros((1, 4, 2)), np.zeros((4, 2)), "at least 2 samples"),
        (np.zeros((5, 4)), np.zeros((4, 2)), "3-D"),
        (np.zeros((5, 4, 3)), np.zeros((4, 2)), "theta has shape"),
        (np.full((5, 4, 2), np.nan), np.zeros((4, 2)), "NaN"),
    ],
)
def test_bad_input_is_reported(samples, theta, message):
    with pytest.raises(DataError, match=message):
        tarp(samples, theta, key=0)


@pytest.mark.parametrize(("draw", "value"), [(9, np.nan), (20, np.inf), (3, -np.inf)])
def test_one_non_finite_draw_is_found_wherever_it_lies(draw, value):
    # 21 draws: on a CPU two blocks of 8 in the loop and a remainder of 5 after it; the bad
    # draw sits in the loop (9, 3) or in the remainder (20), in simulation 2 of 4.
    samples = np.random.default_rng(0).normal(size=(21, 4, 2))
    samples[draw, 2, 1] = value
    with pytest.raises(DataError, match="first in simulation 2"):
        tarp(samples, np.zeros((4, 2)), key=0)


def test_numpy_samples_are_copied_once_into_an_aligned_buffer_and_give_the_same_coverage(toy):
    from probinfer._utils import aligned_host_copy

    theta, _, estimator, _ = toy
    samples = estimator()  # float64, 16-byte aligned: cast and aligned in one copy
    copy = aligned_host_copy(samples, np.float32)
    assert copy.ctypes.data % 64 == 0 and copy.dtype == np.float32
    np.testing.assert_array_equal(copy, samples.astype(np.float32))
    assert aligned_host_copy(copy, np.float32) is copy  # nothing to do
    sims_first = aligned_host_copy(np.swapaxes(samples, 0, 1), np.float32)
    assert sims_first.flags.c_contiguous
    # 160 MB out: copied in row blocks on every core (a broadcast view: no memory in)
    rows = np.broadcast_to(np.arange(10.0)[None, :, None], (4_000_000, 10, 1))
    big = aligned_host_copy(rows, np.float32)
    assert big.ctypes.data % 64 == 0 and big.shape == rows.shape
    assert (big[:, :, 0] == np.arange(10.0)).all()
    np.testing.assert_array_equal(sims_first, np.swapaxes(samples, 0, 1).astype(np.float32))
    import jax

    a = tarp(samples, theta, key=4)
    b = tarp(jax.device_put(samples.astype(np.float32)), theta, key=4)
    np.testing.assert_array_equal(a.f, b.f)


def test_sbc_ranks_uniform_for_exact_posterior_and_not_for_biased(toy):
    theta, _, estimator, _ = toy
    exact = sbc(estimator(), theta, key=0)
    assert exact.is_uniform(), exact.verdict()
    # The uniformity test's false-alarm rate over 60 exact estimators: Binomial(60, ≤ 0.05).
    alarms = sum(not sbc(estimator(seed=100 + s), theta, key=s).is_uniform() for s in range(60))
    assert alarms <= 9, alarms
    assert exact.ranks.shape == (NUM_SIMS, DIM) and exact.counts.sum() == NUM_SIMS * DIM
    biased = sbc(estimator(shift=0.5), theta, key=0)
    assert not biased.is_uniform()
    assert "NOT uniform" in biased.verdict()


def test_plots_render(toy, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    theta, _, estimator, _ = toy
    samples = estimator()
    ax = tarp(samples, theta, key=0, bootstrap=20).plot()
    ax.figure.savefig(tmp_path / "tarp.png")
    axes = sbc(samples, theta, key=0).plot()
    axes[0].figure.savefig(tmp_path / "sbc.png")
    assert (tmp_path / "tarp.png").stat().st_size > 0 and (tmp_path / "sbc.png").stat().st_size > 0


def test_a_missing_key_is_an_error_where_randomness_is_used(toy):
    theta, _, estimator, _ = toy
    samples = estimator()
    with pytest.raises(TypeError, match="pass key="):
        tarp(samples, theta, bootstrap=10)
    with pytest.raises(TypeError, match="pass key="):
        sbc(samples, theta)


def _gaussian_hpd(width, seed=0, num_sims=2000, num_draws=200):
    """α* of q = N(x/2, width² / 2) for θ* ~ N(0, 1), x ~ N(θ*, 1), whose exact posterior is
    N(x/2, 1/2): width 1 is exact, below 1 overconfident, above underconfident."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=num_sims)
    x = theta + rng.normal(size=num_sims)
    mean, sd = x / 2, width * np.sqrt(0.5)
    draws = mean[:, None] + sd * rng.normal(size=(num_sims, num_draws))
    log_q = -0.5 * ((draws - mean[:, None]) / sd) ** 2  # log q up to a constant per x
    return HPDCoverage(hpd_levels(log_q, -0.5 * ((theta - mean) / sd) ** 2))


def test_hpd_coverage_tells_exact_narrow_and_wide_posteriors_apart():
    """The exact posterior's α* are uniform (its 50 % region holds the truth within 4 binomial
    standard errors of half the time); a q half as wide is overconfident, twice as wide
    underconfident — each said in the verdict."""
    exact = _gaussian_hpd(1.0)
    assert exact.diagnosis() == "calibrated", exact.verdict()
    _, (half,) = exact.ecp([0.5])
    assert abs(half - 0.5) < 4 * np.sqrt(0.25 / 2000)
    assert _gaussian_hpd(0.5).diagnosis() == "overconfident"
    assert _gaussian_hpd(2.0).diagnosis() == "underconfident"
    assert "overconfident" in _gaussian_hpd(0.5).verdict()
