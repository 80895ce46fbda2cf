"""The example jobs shipped in ``experiments/jobs/`` run end to end through ``probinfer run`` (as a
user runs them) and each gets its reference answer: long NUTS on the job's own target, the exact
moments, or the exact posterior on a grid. Its own file so that the test runner's workers share
the jobs' slow tier (a file is one unit of work)."""

import os
import tomllib

import arviz as az
import numpy as np
import pytest
import scipy.stats
from test_jobs import _cli, check_report_folder

import probinfer as pi
from probinfer.jobs import prepare


class KnownLimitation(Exception):
    """An example's answer misses its reference in a way the docs state (a strict xfail that
    only this exception satisfies: a failed run or report still fails the test)."""


EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "experiments", "jobs")


@pytest.mark.slow
@pytest.mark.parametrize(
    "job",
    [
        pytest.param(
            job,
            marks=pytest.mark.xfail(
                strict=True,
                raises=KnownLimitation,
                reason="known limitation (docs/guide/flows.md): on the 10-D funnel the defaults put "
                "v's mean 0.37 sd low and its sd 36 % low while PSIS k̂ reads 0.65 (no warning)",
            ),
        )
        if job == "flow_vi_funnel.toml"
        else job
        for job in sorted(
            [f for f in os.listdir(EXAMPLES) if f.endswith(".toml")] + ["diabetes/job.toml"]
        )
    ],
)
def test_every_example_job_runs_end_to_end_and_gets_its_reference_answer(tmp_path, job):
    out = str(tmp_path / "out")
    with _cli(["run", os.path.join(EXAMPLES, job), "--out", out], tmp_path) as process:
        printed = process.communicate(timeout=1200)[0]
    assert process.returncode == 0, printed
    check_report_folder(tmp_path / "out")
    post = pi.Posterior.load(tmp_path / "out" / "posterior.npz")
    EXAMPLE_CHECKS[job](os.path.join(EXAMPLES, job), post)


def _job_target(path):
    prepared = prepare(path)
    return pi.compile(prepared.model, data=prepared.data, **prepared.arguments)


def _by_coordinate(post):
    """Every site's draws as (chains, draws, coordinates), and the particles' normalised weights
    (None for equally weighted draws)."""
    draws = {k: np.asarray(v).reshape(*np.shape(v)[:2], -1) for k, v in post.draws.items()}
    if post.log_weights is None:
        return draws, None
    w = np.exp(post.log_weights - np.max(post.log_weights))
    return draws, w / w.sum()


def _moments(post):
    draws, w = _by_coordinate(post)
    out = {}
    for site, x in draws.items():
        x = x.reshape(-1, x.shape[-1])
        p = np.full(len(x), 1 / len(x)) if w is None else w.ravel()
        mean = p @ x
        out[site] = (mean, np.sqrt(p @ (x - mean) ** 2))
    return out


_REFERENCES = {}


def _nuts_reference(path):
    """Long NUTS on the job's own target (4 × 5,000 draws at 0.95 acceptance), cached per model
    and data (the two eight-schools jobs share one)."""
    with open(path, "rb") as file:
        job = tomllib.load(file)
    key = (os.path.dirname(path), repr({k: job.get(k) for k in ("model", "data")}))
    if key not in _REFERENCES:
        _REFERENCES[key] = pi.mcmc(
            _job_target(path),
            key=123,
            num_chains=4,
            num_draws=5000,
            num_warmup=2000,
            target_accept=0.95,
            progress=False,
        )
    return _REFERENCES[key]


def _agrees_with_nuts_as_an_independent_run(path, post):
    """Two NUTS runs differ by Monte Carlo error alone: every coordinate's mean within 4.5
    standard errors of the difference (bulk ESS of each run), and its sd within 4.5 standard
    errors of the ratio (delta method: Var(ŝ/σ) ≈ (κ − 1) / (4 ESS), κ the kurtosis and ESS that
    of the squared deviations). About 40 coordinates × 2 checks at 4.5 SE: false alarm < 0.1 %."""
    reference = _nuts_reference(path)
    runs = [_by_coordinate(reference)[0], _by_coordinate(post)[0]]
    for site, ref in runs[0].items():
        got = runs[1][site]
        for d in range(ref.shape[-1]):
            pair = [ref[..., d], got[..., d]]
            mean, sd = pair[0].mean(), pair[0].std()
            var_of_mean = sum(sd**2 / float(az.ess(x)) for x in pair)
            assert abs(pair[1].mean() - mean) < 4.5 * np.sqrt(var_of_mean), (site, d)
            kurtosis = np.mean((pair[0] - mean) ** 4) / sd**4
            var_of_ratio = sum(
                (kurtosis - 1) / (4 * float(az.ess((x - x.mean()) ** 2))) for x in pair
            )
            assert abs(pair[1].std() / sd - 1) < 4.5 * np.sqrt(var_of_ratio), (site, d)


def _smc_agrees_with_nuts(path, post, num_runs=10):
    """SMC's particles are correlated through resampling, so its error is measured: ten more runs
    with the job's settings (other seeds) give the spread of a run's moments, and the job's run
    must lie within a two-sided 0.001 Student-t prediction interval of the long-NUTS values
    (whose own error, a few hundredths of an sd, is added in quadrature)."""
    reference = _moments(_nuts_reference(path))
    settings = prepare(path).settings
    target = _job_target(path)
    runs = [_moments(pi.smc(target, key=100 + s, **settings)) for s in range(num_runs)]
    t = scipy.stats.t.ppf(0.9995, num_runs - 1) * np.sqrt(1 + 1 / num_runs)
    got = _moments(post)
    for site, (ref_mean, ref_sd) in reference.items():
        for k, ref_value in enumerate([ref_mean, ref_sd]):
            spread = np.std([r[site][k] for r in runs], axis=0, ddof=1)
            allowed = t * np.hypot(spread, 0.02 * ref_sd)
            np.testing.assert_array_less(np.abs(got[site][k] - ref_value), allowed, site)


def _sgmcmc_meets_its_bar(path, post):
    """SG-MCMC is biased by its step and minibatch noise: the defaults' bar (every mean within
    0.3 reference sd, every sd within 35 %), as tests/inference/test_sgmcmc_reference.py checks
    the same settings; measured here (seed 0) 0.10 sd and 9 %."""
    reference = _moments(_nuts_reference(path))
    got = _moments(post)
    for site, (ref_mean, ref_sd) in reference.items():
        np.testing.assert_array_less(np.abs(got[site][0] - ref_mean) / ref_sd, 0.3, site)
        np.testing.assert_array_less(np.abs(got[site][1] / ref_sd - 1), 0.35, site)


def _coin_svgd_on_the_banana(path, post):
    """Exact moments: z₁ ~ N(0, 10), z₂ = 0.1 (z₁² − 10) + N(0, 1) has mean 0 and variance
    0.01 · Var(z₁²) + 1 = 3. Coin SVGD's 200 particles are nearly deterministic: over seeds 0-7
    the sds were 2.2 % and 7.5 % low (the kernel's under-dispersion) with a spread of 0.002 and
    the means within 0.03 sd; bounds 0.1 sd and 10 %."""
    del path
    for site, sd in [("z1", np.sqrt(10.0)), ("z2", np.sqrt(3.0))]:
        x = np.asarray(post.draws[site]).ravel()
        assert abs(x.mean()) < 0.1 * sd and abs(x.std() / sd - 1) < 0.1, (site, x.mean(), x.std())


def _flow_vi_on_the_funnel(path, post):
    """Exact: v ~ N(0, 3²); bounds 0.15 sd and 15 %."""
    del path
    v = np.asarray(post.draws["v"]).ravel()
    if not (abs(v.mean()) < 0.15 * 3 and abs(v.std() / 3 - 1) < 0.15):
        raise KnownLimitation((v.mean(), v.std()))


def _two_moons_grid(x, n=2001):
    """The exact two-moons posterior on an n × n grid over the prior's square (θ ~ U(−1, 1)²):
    the simulator's density is known (:class:`probinfer.models.sbi.TwoMoonsNoise`). Returns
    ``(grid (n,), weights (n, n))``; the crescents are ~0.03 wide, 30 cells at n = 2001."""
    import jax
    import jax.numpy as jnp

    from probinfer.models.sbi import TwoMoonsNoise

    g = jnp.linspace(-1.0, 1.0, n)

    def row(t0):
        shift = jnp.stack([jnp.abs(t0 + g) / np.sqrt(2), (t0 - g) / np.sqrt(2)], -1)
        return TwoMoonsNoise(shift).log_prob(jnp.asarray(x))

    log_p = np.asarray(jax.lax.map(row, g), np.float64)
    w = np.exp(log_p - log_p.max())
    return np.asarray(g), w / w.sum()


def _npe_on_two_moons(path, post):
    """Against the exact posterior on a grid: mean and sd of each coordinate, and the share of
    NPE's draws inside the exact 50 % and 90 % highest-density regions. Measured with the job's
    settings over seeds 0-2: means within 0.10 sd, sds within 1.5 %, shares 0.47-0.48 and
    0.83-0.85 (NPE's crescents are a little wider than the exact ones). Bounds: 0.2 sd, 5 %,
    and shares above 0.40 and 0.75."""
    del path
    grid, w = _two_moons_grid(pi.models.get("sbi_two_moons").kwargs["x"])
    theta = np.asarray(post.draws["theta"]).reshape(-1, 2)
    marginals = [w.sum(1), w.sum(0)]
    for d, p in enumerate(marginals):
        mean = p @ grid
        sd = np.sqrt(p @ (grid - mean) ** 2)
        assert abs(theta[:, d].mean() - mean) < 0.2 * sd, (d, theta[:, d].mean(), mean)
        assert abs(theta[:, d].std() / sd - 1) < 0.05, (d, theta[:, d].std(), sd)
    cells = np.clip(np.rint((theta + 1) / 2 * (len(grid) - 1)).astype(int), 0, len(grid) - 1)
    density = w[cells[:, 0], cells[:, 1]]
    ordered = np.sort(w.ravel())[::-1]
    for level, least in [(0.5, 0.40), (0.9, 0.75)]:
        threshold = ordered[np.searchsorted(np.cumsum(ordered), level)]
        assert np.mean(density >= threshold) > least, (level, np.mean(density >= threshold))


EXAMPLE_CHECKS = {
    "npe_two_moons.toml": _npe_on_two_moons,
    "mcmc_eight_schools.toml": _agrees_with_nuts_as_an_independent_run,
    "diabetes/job.toml": _agrees_with_nuts_as_an_independent_run,
    "smc_eight_schools.toml": _smc_agrees_with_nuts,
    "sgmcmc_logistic_regression.toml": _sgmcmc_meets_its_bar,
    "coin_banana.toml": _coin_svgd_on_the_banana,
    "flow_vi_funnel.toml": _flow_vi_on_the_funnel,
}
