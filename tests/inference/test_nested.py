"""Nested sampling against exact evidences and posteriors of the conjugate zoo.

Each run reports its own standard error of log Z (simulated volume shrinkages). Over R
independent runs the standardised errors ``z_r = (log Ẑ_r − log Z) / se_r`` must look like
N(0, 1) draws: their mean times √R within ±3.29 (two-sided 0.001) — no bias — and Σ z_r² below
χ²_R's 0.999 quantile — the reported errors are not too small. Posterior means are checked
against the exact ones with the spread of the R runs' estimates (a Student-t interval at 0.001),
so no effective sample size is assumed. With two models and four checks the false-alarm rate is
below 0.5 % per run of the file.
"""

import numpy as np
import pytest
from scipy import stats

import probinfer as pi
from probinfer.inference.nested import Slice
from probinfer.models import conjugate

REPLICATES = 6


def _replicates(target, exact_log_z, site, exact_mean, **settings):
    runs = [pi.nested(target, key=seed, progress=False, **settings) for seed in range(REPLICATES)]
    z = np.array([(p.log_evidence - exact_log_z) / p.diagnostics["log_evidence_se"] for p in runs])
    assert abs(z.mean()) * np.sqrt(REPLICATES) < stats.norm.ppf(0.9995), z
    assert np.sum(z**2) < stats.chi2.ppf(0.999, REPLICATES), z
    means = np.array([_weighted_mean(p, site) for p in runs])
    spread = means.std(0, ddof=1) / np.sqrt(REPLICATES)
    limit = stats.t.ppf(0.9995, REPLICATES - 1) * spread
    np.testing.assert_array_less(np.abs(means.mean(0) - exact_mean), limit)
    return runs


def _weighted_mean(post, site):
    w = np.exp(post.log_weights.ravel())
    values = post.draws[site].reshape(w.size, -1)
    return (w[:, None] * values).sum(0) / w.sum()


def test_log_evidence_and_mean_of_the_normal_mean():
    example = pi.models.get("normal_normal")
    runs = _replicates(
        example.compile(),
        example.exact["log_evidence"],
        "mu",
        np.atleast_1d(example.exact["mu_mean"]),
        num_live=200,
    )
    post = runs[0]
    assert post.method == "nested" and post.log_weights.shape == post.draws["mu"].shape
    d = post.diagnostics
    # The information (nats) the data carry: for N(m, s²) from N(0, 1), KL = log(1/s) + (s² + m² − 1)/2.
    m, s = example.exact["mu_mean"], example.exact["mu_sd"]
    assert d["information"] == pytest.approx(-np.log(s) + (s**2 + m**2 - 1) / 2, abs=0.2)
    assert d["slice_acceptance"] > 0.99 and d["num_slice_evaluations"] > 0
    assert not d["warnings"]


def test_log_evidence_and_means_of_a_correlated_regression():
    example = pi.models.get("linear_regression")
    _replicates(
        example.compile(),
        example.exact["log_evidence"],
        "w",
        example.exact["w_mean"],
        num_live=200,
    )


@pytest.mark.slow  # about 1 minute
@pytest.mark.parametrize("kernel", ["slice", "slice_gibbs"])
def test_ten_dimensional_regression_both_kernels(kernel):
    """H ≈ 19 nats: where too few inner steps would bias log Z upward."""
    example = conjugate.linear_regression_example(num_data=100, dim=10)
    _replicates(
        example.compile(),
        example.exact["log_evidence"],
        "w",
        example.exact["w_mean"],
        num_live=300,
        kernel=kernel,
    )


def test_a_checkpointed_run_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    from probinfer.inference.nested import runner

    target = pi.models.get("linear_regression").compile()
    whole = pi.nested(target, key=3, num_live=100, progress=False)
    # Stop after the first chunk, as a killed run would, then resume from its checkpoint.
    monkeypatch.setattr(runner, "_finished", lambda carry: True)
    pi.nested(target, key=3, num_live=100, checkpoint=tmp_path, progress=False)
    assert (tmp_path / "nested.npz").exists()
    monkeypatch.undo()
    resumed = pi.nested(target, key=3, num_live=100, checkpoint=tmp_path, progress=False)
    assert resumed.log_evidence == whole.log_evidence
    np.testing.assert_array_equal(resumed.draws["w"], whole.draws["w"])


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"num_live": 1}, "num_live must be at least 2"),
        ({"num_live": 10.5}, "num_live must be a positive integer"),
        ({"num_live": 10, "num_delete": 10}, r"num_delete \(10\) must be below num_live"),
        ({"kernel": "nuts"}, "kernel must be one of"),
        ({"kernel": Slice(num_inner_steps=0)}, "num_inner_steps must be a positive integer"),
    ],
)
def test_bad_settings_get_one_sentence(settings, message):
    target = pi.models.get("normal_normal").compile()
    with pytest.raises(pi.ProbinferError, match=message):
        pi.nested(target, key=0, **settings)


def test_an_improper_prior_is_refused_before_the_run():
    def flat(y=None):
        mu = pi.sample("mu", pi.dist.ImproperUniform(pi.constraints.real, (), ()))
        pi.sample("y", pi.dist.Normal(mu, 1.0), obs=y)

    with pytest.raises(pi.ProbinferError, match="improper"):
        pi.nested(pi.compile(flat, y=np.float32(0.3)), key=0)


@pytest.mark.slow  # seven runners compiled (13 s): the default tier's time is near its limit
def test_off_a_terminal_a_long_run_logs_a_line_and_a_short_or_silenced_one_does_not(
    capfd, monkeypatch
):
    """``progress="auto"`` off a terminal: one stderr line per heartbeat period once a run has
        taken that long (the period set to zero here, so every chunk qualifies); none with
        ``progress=False``. SMC, MCMC, SG-MCMC, coin sampling and the trainers (flow VI) do the
    same from inside their compiled loops
    (a ``progress=False`` program has no callback at all)."""
    from probinfer import progress

    target = pi.models.get("linear_regression").compile()
    monkeypatch.setattr(progress, "HEARTBEAT_SECONDS", 0.0)
    pi.nested(target, key=0, num_live=50)
    assert "nested: log X = " in capfd.readouterr().err
    pi.nested(target, key=0, num_live=50, progress=False)
    assert capfd.readouterr().err == ""
    pi.smc(target, key=0, num_particles=100)
    assert "smc: temperature 1 after" in capfd.readouterr().err
    # MCMC and SG-MCMC: their bars in log-only mode (callbacks from the compiled scans).
    pi.mcmc(target, key=0, num_chains=1, num_warmup=100, num_draws=100)
    err = capfd.readouterr().err
    assert "mcmc warm-up: " in err and "mcmc sampling: " in err
    pi.sgmcmc(target, key=0, num_steps=500, step_size=1e-3, kernel="sgld")
    assert "sgmcmc: " in capfd.readouterr().err
    # Coin sampling and every trainer (flow VI here) the same way.
    pi.coin_svgd(target, key=0, num_particles=20, num_steps=100)
    assert "coin_svgd" in capfd.readouterr().err
    pi.flow_vi(target, key=0, flow="planar", num_layers=1, num_steps=100)
    assert " of 100" in capfd.readouterr().err
