"""Coin sampling and SVGD: the Stein direction, exact posteriors, scale invariance, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import probinfer as pi
from probinfer import DataError, ProbinferError, dist
from probinfer.diagnostics import ksd
from probinfer.inference.coin import bandwidth, stein_direction


def test_stein_direction_matches_the_definition():
    """φ(x_i) = (1/N) Σ_j [k(x_j, x_i) s_j + ∇_{x_j} k(x_j, x_i)] by autodiff of each kernel, in
    row blocks that do not divide N; the RBF bandwidth is the median heuristic of Liu & Wang."""
    x = jax.random.normal(jax.random.PRNGKey(0), (23, 3))
    s = jax.random.normal(jax.random.PRNGKey(1), (23, 3))
    kernels = {
        "rbf": lambda a, b, h: jnp.exp(-jnp.sum((a - b) ** 2) / h),
        "imq": lambda a, b, h: (1 + jnp.sum((a - b) ** 2) / h) ** -0.5,
    }
    for name, k in kernels.items():
        h = bandwidth(x, name)
        pair = jax.vmap(
            jax.vmap(lambda xj, xi, k=k, h=h: (k(xj, xi, h), jax.grad(k)(xj, xi, h)), (0, None)),
            (None, 0),
        )
        gram, pushes = pair(x, x)  # [i, j]: k(x_j, x_i) and ∇_{x_j} k(x_j, x_i)
        expected = (gram @ s + pushes.sum(1)) / x.shape[0]
        np.testing.assert_allclose(
            stein_direction(x, s, h, name, block_size=5), expected, rtol=1e-4, atol=1e-6
        )
    squared = np.sum((np.asarray(x)[:, None] - np.asarray(x)[None]) ** 2, -1)
    median = np.median(squared[np.triu_indices(23, 1)])
    np.testing.assert_allclose(bandwidth(x, "rbf"), median / np.log(24), rtol=1e-5)


@pytest.mark.parametrize("runner", ["coin_svgd", "svgd", "coin_ksdd"])
def test_particles_recover_the_conjugate_normal_posterior(runner):
    """Normal–normal (exact mean and sd): 100 particles after 1,000 steps. The particle mean
    within 3 sd/√N of the exact mean and the particle sd within 3·sd/√(2N) (the Monte Carlo
    error of N independent draws; deterministic particles do at least as well)."""
    example = pi.models.get("normal_normal")
    post = getattr(pi, runner)(example.compile(), key=0, num_particles=100, progress=False)
    mu = post.draws["mu"][0]
    mean, sd, n = example.exact["mu_mean"], example.exact["mu_sd"], mu.size
    assert post.draws["mu"].shape == (1, 100)
    assert abs(mu.mean() - mean) < 3 * sd / np.sqrt(n)
    assert abs(mu.std() - sd) < 3 * sd / np.sqrt(2 * n)
    assert post.diagnostics["ksd"][-1] < post.diagnostics["ksd"][0]
    assert post.diagnostics["restarts"].sum() == 0
    assert not any("spread" in w for w in post.diagnostics["warnings"])


def _standard_normal(dim):
    def model():
        pi.sample("x", dist.Normal(0.0, 1.0).expand([dim]).to_event(1))

    return pi.compile(model)


def test_collapsed_particles_are_reported_with_their_spread():
    """10 particles in 40 dimensions of N(0, I): SVGD's variance collapse (Ba et al. 2021). For
    a standard normal, Stein's estimate −mean_i s_ij (x_ij − x̄_j) with s = −x is exactly the
    particles' variance per coordinate, so the reported ratio is √median of those variances;
    the warning names the shortfall."""
    with pytest.warns(pi.ProbinferWarning, match="spread about"):
        post = pi.coin_svgd(_standard_normal(40), key=0, num_particles=10, num_steps=300)
    x = post.draws["x"][0]
    expected = np.sqrt(np.median(x.var(axis=0)))
    assert post.diagnostics["spread_ratio"] == pytest.approx(expected, rel=1e-4)
    assert expected < 0.8


@pytest.mark.parametrize("runner", ["coin_svgd", "svgd", "coin_ksdd"])
def test_minibatch_scores_over_every_point_give_the_exact_posterior(runner):
    """``batch_size``: with every data point in the minibatch (a random order of them each step)
    the scores are the full ones, so the particles meet the conjugate test's Monte Carlo bounds;
    with 5 of 20 points the scores are noisy and the particles move elsewhere (the minibatches
    really are subsets). Smaller batches bias the particles by an amount this test does not
    bound."""
    target, mean, sd = _scaled_model(1.0, data=("y",))
    post = getattr(pi, runner)(target, key=0, num_particles=100, batch_size=20, progress=False)
    mu = post.draws["mu"][0]
    assert abs(mu.mean() - mean) < 3 * sd / np.sqrt(mu.size)
    assert abs(mu.std() - sd) < 3 * sd / np.sqrt(2 * mu.size)
    if runner == "coin_svgd":
        noisy = pi.coin_svgd(target, key=0, num_particles=100, batch_size=5, progress=False)
        assert np.max(np.abs(noisy.draws["mu"][0] - mu)) > 1e-3


def _scaled_model(scale, data=()):
    """μ ~ N(0, 10 s), y_i ~ N(μ, s): the same posterior in units of s."""
    y = scale * (5.0 + np.random.default_rng(0).normal(size=20))

    def model(y):
        mu = pi.sample("mu", dist.Normal(0.0, 10.0 * scale))
        with pi.plate("data", y.shape[0]):
            pi.sample("y", dist.Normal(mu, scale), obs=y)

    precision = 1 / (10 * scale) ** 2 + 20 / scale**2
    return pi.compile(model, y, data=data), y.sum() / scale**2 / precision, precision**-0.5


@pytest.mark.slow
def test_coin_svgd_is_scale_free_and_svgd_with_a_fixed_learning_rate_is_not():
    """The same posterior in units s = 1 and s = 1,000. Coin SVGD's standardised errors
    (|mean − exact| / sd, sd / exact sd − 1) are small at both scales; SVGD with Adam at the
    learning rate that works at s = 1 (0.1) has barely moved at s = 1,000 in the same steps."""
    errors = {}
    for scale in (1.0, 1000.0):
        target, mean, sd = _scaled_model(scale)
        for runner in ("coin_svgd", "svgd"):
            post = getattr(pi, runner)(target, key=1, num_particles=100, progress=False)
            mu = post.draws["mu"][0]
            errors[runner, scale] = (abs(mu.mean() - mean) / sd, abs(mu.std() / sd - 1))
    for scale in (1.0, 1000.0):
        assert errors["coin_svgd", scale][0] < 3 / np.sqrt(100), errors
        assert errors["coin_svgd", scale][1] < 3 / np.sqrt(200), errors
    assert errors["svgd", 1.0][0] < 3 / np.sqrt(100), errors
    assert errors["svgd", 1000.0][0] > 10, errors


def test_bad_input_is_named():
    example = pi.models.get("normal_normal")
    target = example.compile()
    with pytest.raises(DataError, match="at least 2 particles"):
        pi.coin_svgd(target, key=0, num_particles=1, progress=False)
    with pytest.raises(DataError, match="stein_kernel"):
        pi.coin_svgd(target, key=0, stein_kernel="gauss", progress=False)

    def discrete():
        k = pi.sample("k", dist.Poisson(3.0))
        pi.sample("y", dist.Normal(k, 1.0), obs=2.0)

    with pytest.raises(pi.DiscreteLatentError, match="'k'"):
        pi.coin_svgd(pi.compile(discrete), key=0, progress=False)


def test_a_particle_with_a_nan_score_is_restarted_and_reported():
    """The log density and its gradient are NaN above x = 3: a particle started at 5 gets a NaN score at the first
    step, is restarted from a prior draw (counted at step 0, one warning), and the particles
    still recover N(0, 1) truncated at 3 (mean within 4 sd/√N of its exact −0.0044)."""

    def model():
        x = pi.sample("x", dist.Normal(0.0, 1.0))
        pi.factor("cut", jnp.where(x > 3.0, jnp.sqrt(3.0 - x), 0.0))  # NaN, NaN gradient above 3

    target = pi.compile(model)
    starts = np.linspace(-2, 2, 50)[:, None]
    starts[0] = 5.0
    with pytest.warns(RuntimeWarning, match="1 particle restart"):
        post = pi.coin_svgd(target, key=0, num_particles=50, init=starts, progress=False)
    restarts = post.diagnostics["restarts"]
    assert restarts[0] == 1 and restarts.sum() == 1
    x = post.draws["x"][0]
    assert np.isfinite(x).all() and abs(x.mean() + 0.0044) < 4 / np.sqrt(50)


def test_checkpoint_resume_gives_the_uninterrupted_particles(tmp_path, killed_after_saves):
    """A run killed after its second checkpoint resumes from the file (only the missing records
    run) and returns exactly the particles, KSD trace and restarts of an uninterrupted run."""
    target = pi.models.get("normal_normal").compile()
    kwargs = dict(key=3, num_particles=20, num_steps=200, progress=False)
    whole = pi.coin_svgd(target, **kwargs)
    path = tmp_path / "coin.npz"
    saves = killed_after_saves(2)
    with pytest.raises(KeyboardInterrupt):
        pi.coin_svgd(target, checkpoint=path, checkpoint_every=30, **kwargs)
    assert saves == [30, 60]
    resumed = pi.coin_svgd(target, checkpoint=path, checkpoint_every=30, **kwargs)
    assert saves == [30, 60, 90, 100]
    np.testing.assert_array_equal(resumed.draws["mu"], whole.draws["mu"])
    np.testing.assert_array_equal(resumed.diagnostics["ksd"], whole.diagnostics["ksd"])
    assert resumed.diagnostics["restarts"].shape == (200,)
    with pytest.raises(ProbinferError, match="different run"):
        pi.coin_svgd(target, checkpoint=path, **{**kwargs, "num_particles": 30})


@pytest.mark.slow
def test_particles_sharded_over_devices_match_the_exact_posterior(on_cpu_devices):
    """200 particles over four (simulated CPU) devices: every device gathers the particles and
    computes its own rows of φ. Rounding differs from one device, so the runs are compared as
    independent ones: each particle mean within 4 exact sd/√N of the exact posterior mean, on
    one device and on four."""
    import textwrap

    script = textwrap.dedent(
        """
        import json, jax
        import probinfer as pi
        target = pi.models.get("linear_regression").compile()
        post = pi.coin_svgd(target, key=0, num_particles=200, progress=False)
        print(json.dumps({"devices": post.settings["devices"],
                          "mean": post.draws["w"][0].mean(0).tolist()}))
        """
    )
    example = pi.models.get("linear_regression")
    mean, sd = example.exact["w_mean"], np.sqrt(np.diag(example.exact["w_cov"]))
    for devices in (1, 4):
        run = on_cpu_devices(script, devices)
        assert run["devices"] == devices
        assert np.all(np.abs(np.asarray(run["mean"]) - mean) < 4 * sd / np.sqrt(200)), run


@pytest.mark.slow
def test_calibrate_runs_coin_svgd_as_one_vmapped_program():
    """The registered draws function is pure: calibrate vmaps it over simulated data sets and
    the normal–normal posterior is calibrated (at level 0.01: on another machine rounding makes
    this an independent run, so the false-alarm rate is what a failure costs)."""
    result = pi.calibrate(
        pi.models.get("normal_normal").compile(),
        "coin_svgd",
        key=0,
        num_sims=60,
        num_draws=30,
        method_kwargs={"num_particles": 30, "num_steps": 200},
        progress=False,
    )
    assert result.samples.shape == (30, 60, 1)
    assert result.is_calibrated(level=0.01), result.verdict(level=0.01)


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,  # the gap is 6 standard errors and more: a pass would mean the method changed
    reason="known limitation (docs/guide/particles.md): at 2,000 steps Coin SVGD's KSD is 7–8 % "
    "above Adam-SVGD's at its best rate (Gaussian 0.0231 vs 0.0213, banana 0.0312 vs 0.0293, "
    "4 seeds, se ≈ 0.0003)",
)
@pytest.mark.parametrize("name", ["gaussian", "banana"])
def test_coin_svgd_is_as_good_as_svgd_at_its_best_learning_rate(name):
    """The paper's claim on 2-D targets: Coin SVGD's final KSD (IMQ, exact scores, 100
    particles, 2,000 steps) is no worse than SVGD's (Adam) at the best of 5 learning rates, within
    3 standard errors over 4 seeds. (At 500 steps it is not: betting needs a few hundred steps
    to build the wealth its step sizes come from — 0.026 against 0.022 on the Gaussian.)"""

    def gaussian():
        pi.sample("x", dist.MultivariateNormal(jnp.zeros(2), jnp.array([[1.0, 0.9], [0.9, 1.0]])))

    def banana():
        a = pi.sample("a", dist.Normal(0.0, 1.0))
        pi.sample("b", dist.Normal(0.5 * a**2, 0.5))

    target = pi.compile({"gaussian": gaussian, "banana": banana}[name])
    score = jax.vmap(jax.grad(target.log_density))

    def final_ksd(post):
        z = jax.vmap(target.unconstrain)({k: jnp.asarray(v[0]) for k, v in post.draws.items()})
        return float(ksd(z, score(z)))

    def runs(runner, **options):
        return np.array(
            [
                final_ksd(runner(target, key=s, num_steps=2000, progress=False, **options))
                for s in range(4)
            ]
        )

    coin = runs(pi.coin_svgd)
    best = min((runs(pi.svgd, learning_rate=lr) for lr in (0.01, 0.03, 0.1, 0.3, 1.0)), key=np.mean)
    se = np.hypot(coin.std(ddof=1), best.std(ddof=1)) / 2
    assert coin.mean() <= best.mean() + 3 * se, (coin, best)
