"""Health warnings: each fires on a run broken on purpose, none on a healthy conjugate run, and a
chain that adapted to nothing is re-started instead of returned."""

import warnings

import jax.numpy as jnp
import numpy as np
import pytest

import probinfer as pi
from probinfer import dist
from probinfer._utils import import_arviz
from probinfer.health import ProbinferWarning, check, e_bfmi, stuck_chains


def _quiet(run):
    """``run()`` with every ProbinferWarning turned into an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", ProbinferWarning)
        return run()


def _warned(run):
    """``(result, sentences)`` of ``run()``: the ProbinferWarnings it raised, each pointing at
    the user's line (here: this file), not at a line inside probinfer."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run()
    ours = [w for w in caught if issubclass(w.category, ProbinferWarning)]
    assert all(w.filename == __file__ for w in ours), {w.filename for w in ours}
    return result, [str(w.message) for w in ours]


def _volatility_1d(y):
    """One log-volatility ``h`` with a Cauchy prior: at h = −70 the likelihood's curvature is
    ~e⁷⁰, so a chain started there adapts its step to nothing (as prior draws of the zoo's
    stochastic-volatility model do)."""
    h = pi.sample("h", dist.Cauchy(0.0, 10.0))
    pi.sample("y", dist.Normal(0.0, jnp.exp(h / 2)).expand([y.shape[0]]).to_event(1), obs=y)


@pytest.fixture(scope="module")
def volatility_1d():
    y = jnp.asarray(np.random.default_rng(0).normal(size=20), jnp.float32)
    return pi.compile(_volatility_1d, y)


FAR_START = jnp.array([[0.0], [0.5], [-0.5], [-70.0]])
SHORT = {"num_warmup": 300, "num_draws": 500, "progress": False}


def test_a_chain_that_adapted_to_nothing_is_restarted_from_another_chain(volatility_1d):
    post, said = _warned(lambda: pi.mcmc(volatility_1d, key=0, init=FAR_START, **SHORT))
    assert post.diagnostics["restarted_chains"].tolist() == [0, 0, 0, 1]
    step = post.diagnostics["step_size"]
    assert step.min() > 0.2 * np.median(step)
    assert not any("adapted a step size" in s or "R-hat" in s for s in said)
    # The restarted chain samples the same posterior: its mean agrees with the other chains'
    # within Monte Carlo error (4 standard errors, from each part's ESS).
    h = post.draws["h"]
    sd = h.std()
    az = import_arviz()
    ess_rest = float(az.ess(h[:3]))
    ess_last = float(az.ess(h[3:]))
    gap = abs(h[3].mean() - h[:3].mean())
    assert gap < 4 * sd * np.sqrt(1 / ess_rest + 1 / ess_last)


def test_without_restart_the_stuck_chain_is_named_in_a_warning(volatility_1d):
    with pytest.warns(ProbinferWarning) as caught:
        post = pi.mcmc(volatility_1d, key=0, init=FAR_START, restart=False, **SHORT)
    said = " ".join(str(w.message) for w in caught)
    assert "chain(s) [3] adapted a step size" in said and "R-hat" in said
    assert post.diagnostics["warnings"] and all(s in said for s in post.diagnostics["warnings"])
    assert post.diagnostics["restarted_chains"].tolist() == [0, 0, 0, 0]


def test_chains_in_two_modes_are_not_restarted_but_warned_about():
    """Two equal-height modes: neither chain group is stuck (same step sizes, same log
    densities), so no chain is moved — the R-hat warning tells the user, no mode is hidden."""
    target = pi.compile(pi.models.energies.gaussian_mixture, weights=(0.5, 0.5))
    init = {"z": jnp.array([[-4.0, -4.0], [-4.0, -4.0], [4.0, 4.0], [4.0, 4.0]])}
    post, said = _warned(lambda: pi.mcmc(target, key=1, init=init, **SHORT))
    assert post.diagnostics["restarted_chains"].sum() == 0
    assert any("R-hat" in s for s in said)
    assert post.diagnostics["warnings"] == said_without_method(said)


def said_without_method(said):
    return [s.split(": ", 1)[1] for s in said]


def test_a_step_size_forced_to_1e_minus_6_warns(volatility_1d):
    run = lambda: pi.mcmc(  # noqa: E731
        volatility_1d,
        key=0,
        kernel="hmc",
        step_size=1e-6,
        num_warmup=0,
        num_draws=200,
        progress=False,
    )
    _, said = _warned(run)
    assert any("R-hat" in s for s in said) and any("bulk ESS" in s for s in said)


def test_tree_depth_saturation_warns():
    target = pi.compile(pi.models.energies.funnel, dim=4)
    kernel = pi.kernels.nuts(max_tree_depth=2)
    _, said = _warned(lambda: pi.mcmc(target, key=0, kernel=kernel, **SHORT))
    assert any("maximum tree depth (2)" in s for s in said)


def test_too_narrow_flow_on_a_heavy_tailed_target_warns():
    def cauchy():
        pi.sample("x", dist.StudentT(1.0, 0.0, 1.0))

    run = lambda: pi.flow_vi(  # noqa: E731
        pi.compile(cauchy), key=0, flow="planar", num_layers=1, num_steps=300, progress=False
    )
    post, said = _warned(run)
    assert post.diagnostics["pareto_k"] > 0.7
    assert any("Pareto k̂" in s for s in said)


def test_smc_weight_collapse_warns():
    """One jump from the prior to the posterior of a 5-D regression leaves ~2 of 200 particles."""
    target = pi.models.get("linear_regression").compile()
    _, said = _warned(
        lambda: pi.smc(target, key=0, num_particles=200, temperatures=[0.0, 1.0], progress=False)
    )
    assert any("ESS collapsed" in s for s in said)


def test_e_bfmi_matches_its_value_for_independent_and_sticky_energies():
    """Independent energies: E-BFMI → 2 (E(E_t − E_{t−1})² = 2 Var E); an AR(1) with
    coefficient ρ: → 2(1 − ρ). Tolerance: 4 standard errors, bounding the ratio's variance by
    Cauchy–Schwarz from Var num = 12/n and Var den = 2/n (Gaussian energies)."""
    rng = np.random.default_rng(0)
    n = 4000
    independent = rng.normal(size=(2, n))
    se = np.sqrt((12 + 4 * 2 + 4 * np.sqrt(12 * 2)) / n)
    assert np.all(np.abs(e_bfmi(independent) - 2.0) < 4 * se)
    sticky = np.zeros((1, n))
    for t in range(1, n):
        sticky[0, t] = 0.99 * sticky[0, t - 1] + np.sqrt(1 - 0.99**2) * rng.normal()
    assert e_bfmi(sticky)[0] < 0.3
    post = pi.Posterior(
        {"x": rng.normal(size=(2, n))}, method="mcmc", diagnostics={"e_bfmi": e_bfmi(sticky)}
    )
    assert any("E-BFMI" in s for s in check(post))


def test_the_noise_bound_step_and_the_stuck_chain_rule():
    pilot = {"step_size": [0.1, 0.3], "ksd": [1.0, 0.5], "max_step": 0.05}
    post = pi.Posterior(
        {"x": np.random.default_rng(0).normal(size=(4, 1000))},
        method="sgmcmc",
        diagnostics={"step_size_pilot": pilot},
    )
    assert any("minibatch-noise bound" in s for s in check(post))
    # With control variates the run is lengthened to the step: a cost, not a failure, unless
    # the run stayed shorter than the step needs.
    pilot["needed_steps"] = 12_000
    post.settings["num_steps"] = 12_000
    assert not any("minibatch-noise bound" in s for s in check(post))
    post.settings["num_steps"] = 10_000
    assert any("minibatch-noise bound" in s for s in check(post))
    pilot["max_step"] = 0.2
    assert not any("minibatch-noise bound" in s for s in check(post))
    # A hundredth of the median step, or a log density ten typical-set sds below, is stuck.
    assert stuck_chains([0.2, 0.21, 0.19, 0.001], [0.0] * 4, 3).tolist() == [0, 0, 0, 1]
    assert stuck_chains([0.2, 0.21, 0.19, 0.1], [0.0, 1.0, -1.0, -50.0], 3).tolist() == [
        0,
        0,
        0,
        1,
    ]
    assert not stuck_chains([0.2, 0.21, 0.19, 0.1], [0.0, 1.0, -1.0, -5.0], 3).any()
    assert not stuck_chains([0.2], [0.0], 3).any()


@pytest.fixture(scope="module")
def normal_normal_target():
    return pi.models.get("normal_normal").compile()


def test_healthy_conjugate_runs_are_silent(normal_normal_target):
    linear = pi.models.get("linear_regression").compile()
    for target in (normal_normal_target, linear):
        post = _quiet(lambda t=target: pi.mcmc(t, key=0, progress=False))
        assert post.diagnostics["warnings"] == []
        assert post.diagnostics["restarted_chains"].sum() == 0
    post = _quiet(lambda: pi.smc(normal_normal_target, key=0, num_particles=1000, progress=False))
    assert post.diagnostics["warnings"] == []


def _seeds(target, num_seeds, sites):
    """Per seed: the max R-hat, whether the run warned about R-hat, and per site the mean and
    its Monte Carlo standard error (sd / √ESS)."""
    rows = []
    for seed in range(num_seeds):
        post, _ = _warned(lambda s=seed: pi.mcmc(target, key=s, progress=False))
        table = post.summary(sites)
        full = post.summary()
        rows.append(
            {
                "r_hat": float(full["r_hat"].max()),
                "warned": any("R-hat" in s for s in post.diagnostics["warnings"]),
                "any_warning": bool(post.diagnostics["warnings"]),
                "mean": table["mean"].to_numpy(),
                "se": (table["sd"] / np.sqrt(table["ess_bulk"])).to_numpy(),
            }
        )
    return rows


@pytest.mark.slow
def test_fifty_seeds_of_the_volatility_model_never_fail_silently():
    """50 seeds of the zoo's stochastic-volatility model (Cauchy priors) with the defaults: every
    seed whose R-hat exceeds 1.01 says so (about 1 in 5 do, at 1.01-1.02: the largest of ~200
    R-hats at a bulk ESS of ~600, experiments/mcmc/starts.py); at most 3 of 50 fail for real
    (R-hat > 1.05; measured 1 of 20 with uniform starts and no restart, where prior-draw starts
    left 4 of 10 seeds with a stuck or disagreeing chain); the means of μ, φ, σ of every other
    seed agree with the remaining seeds' pooled means within 4.5 standard errors (~150
    comparisons: a false alarm has probability ~10⁻³)."""
    target = pi.models.get("stochastic_volatility").compile()
    rows = _seeds(target, 50, ["mu", "phi", "sigma"])
    assert all(r["r_hat"] <= 1.01 or r["warned"] for r in rows)
    assert sum(r["r_hat"] > 1.05 for r in rows) <= 3
    rows = [r for r in rows if r["r_hat"] <= 1.05]
    means = np.stack([r["mean"] for r in rows])
    ses = np.stack([r["se"] for r in rows])
    for i in range(len(rows)):
        rest = np.delete(np.arange(len(rows)), i)
        pooled = means[rest].mean(0)
        pooled_se = np.sqrt((ses[rest] ** 2).sum(0)) / len(rest)
        assert np.all(np.abs(means[i] - pooled) < 4.5 * np.sqrt(ses[i] ** 2 + pooled_se**2))


@pytest.mark.slow
def test_fifty_seeds_of_centred_eight_schools_warn_when_they_disagree():
    """The centred eight schools is a funnel NUTS cannot fully explore at the default
    target_accept: every seed whose chains disagree (R-hat > 1.01) must say so, and every seed
    that is silent must have the non-centred model's posterior mean of μ and τ (same posterior,
    reference from 4 × 20,000 non-centred draws at target_accept 0.95) within 4.5 standard errors."""
    centred = pi.models.get("eight_schools_centered").compile()
    rows = _seeds(centred, 50, ["mu", "tau"])
    assert all(r["r_hat"] <= 1.01 or r["warned"] for r in rows)
    reference = pi.mcmc(
        pi.models.get("eight_schools").compile(),
        key=123,
        num_draws=20_000,
        target_accept=0.95,
        progress=False,
    ).summary(["mu", "tau"])
    ref_se = (reference["sd"] / np.sqrt(reference["ess_bulk"])).to_numpy()
    for r in rows:
        if not r["any_warning"]:
            gap = np.abs(r["mean"] - reference["mean"].to_numpy())
            assert np.all(gap < 4.5 * np.sqrt(r["se"] ** 2 + ref_se**2))


@pytest.mark.parametrize(("k_hat", "word"), [(0.8, "misses"), (1.3, "failed"), (np.inf, "failed")])
def test_pareto_k_of_one_or_more_says_the_approximation_failed(k_hat, word):
    """k̂ ≥ 1: the importance weights have no finite mean (a flow VI fit 5,725 sds off on the
    500-group random-effects model had k̂ = inf): the sentence says failed, not tails."""
    post = pi.Posterior(
        {"x": np.random.default_rng(0).normal(size=(1, 400))},
        method="flow_vi",
        diagnostics={"pareto_k": k_hat},
    )
    said = [s for s in check(post) if "Pareto" in s]
    assert len(said) == 1 and word in said[0], said
