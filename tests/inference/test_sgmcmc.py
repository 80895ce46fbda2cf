"""SGMCMC against the conjugate Bayesian linear regression (exact Gaussian posterior)."""

import arviz as az
import numpy as np
import pytest
import scipy.linalg

import probinfer as pi
from probinfer import DataError, ProbinferError, dist
from probinfer.inference.sgmcmc import entropy, schedules, sghmc, sgld
from probinfer.models import conjugate

EXAMPLE = conjugate.linear_regression_example()
TARGET = EXAMPLE.compile()
MEAN, COV = EXAMPLE.exact["w_mean"], EXAMPLE.exact["w_cov"]
SD = np.sqrt(np.diag(COV))


def _moments(post):
    w = post.draws["w"]  # (chains, draws, 3)
    ess = np.array([float(az.ess(w[..., d])) for d in range(w.shape[-1])])
    return w.reshape(-1, 3).mean(0), w.reshape(-1, 3).var(0), ess


def test_full_batch_sgld_has_the_exact_discretised_stationary_law():
    """Full-batch SGLD on a Gaussian is the AR(1) θ' = Aθ + (ε/2)Λμ + √ε ξ with A = I − εΛ/2:
    stationary mean μ and covariance C = A C Aᵀ + ε I (discrete Lyapunov), known exactly."""
    step = 0.2 / np.linalg.eigvalsh(np.linalg.inv(COV)).max()
    post = pi.sgmcmc(
        TARGET,
        key=0,
        kernel="sgld",
        batch_size=TARGET.num_data,
        step_size=step,
        num_steps=20_000,
        thinning=5,
    )
    precision = np.linalg.inv(COV)
    a = np.eye(3) - 0.5 * step * precision
    stationary = scipy.linalg.solve_discrete_lyapunov(a, step * np.eye(3))
    mean, var, ess = _moments(post)
    sd = np.sqrt(np.diag(stationary))
    assert np.all(np.abs(mean - MEAN) < 4 * sd / np.sqrt(ess)), (mean, MEAN, ess)
    # Var of a sample variance ≈ 2σ⁴/ESS.
    assert np.all(np.abs(var - sd**2) < 4 * sd**2 * np.sqrt(2 / ess)), (var, sd**2)


@pytest.mark.parametrize("method", ["sghmc", "sgnht"])
def test_full_batch_momentum_kernels_match_the_posterior(method):
    """Default step sizes (0.1 σ²_min for SGHMC, 0.3 σ_min for SGNHT) leave a first-order bias of
    about ε λ_max = 0.1 (relative) in the variance; the test allows that plus 4 MC errors."""
    post = pi.sgmcmc(
        TARGET, key=1, kernel=method, batch_size=TARGET.num_data, num_steps=20_000, thinning=5
    )
    mean, var, ess = _moments(post)
    assert np.all(np.abs(mean - MEAN) < 4 * SD / np.sqrt(ess)), (mean, MEAN, ess)
    assert np.all(np.abs(var / SD**2 - 1) < 0.1 + 4 * np.sqrt(2 / ess)), var / SD**2


def _minibatch_sgld_law(step, batch_size):
    """Exact stationary mean and covariance of minibatch SGLD on the conjugate regression.

    With indices i_1..i_B drawn with replacement, θ' = K θ + u + √ε ξ where K = I − (ε/2) H_S,
    H_S = P + (N/B) Σ_b A_{i_b} (A_i = x_i x_iᵀ/σ², P the prior precision), u = (ε/2)(N/B) Σ_b r_{i_b}
    (r_i = x_i y_i/σ²), and (K, u) is independent of θ. So m = H⁻¹ b exactly, and the second
    moment solves the linear fixed point M = E[K M Kᵀ] + E[K m uᵀ] + E[u mᵀ Kᵀ] + E[u uᵀ] + ε I,
    whose expectations over the batch are sums of per-datum moments (E[Σ z Σ wᵀ] = B E[z wᵀ] +
    B(B − 1) z̄ w̄ᵀ)."""
    x = np.asarray(EXAMPLE.args[0], np.float64)
    y = np.asarray(EXAMPLE.kwargs["y"], np.float64)
    n, d = x.shape
    A = np.einsum("ni,nj->nij", x, x)
    r = x * y[:, None]
    precision = np.eye(d)  # N(0, 1) prior, σ = 1
    mean = np.linalg.solve(precision + A.sum(0), r.sum(0))
    a = b = step * n / batch_size / 2
    k0 = np.eye(d) - step / 2 * precision
    A_bar, r_bar, B = A.mean(0), r.mean(0), batch_size

    def transfer(M):  # the part of M' linear in M
        quadratic = B * np.einsum("nij,jk,nlk->il", A, M, A) / n + B * (B - 1) * A_bar @ M @ A_bar
        return k0 @ M @ k0.T - a * B * (k0 @ M @ A_bar.T + A_bar @ M @ k0.T) + a**2 * quadratic

    cross = k0 @ np.outer(mean, b * B * r_bar) - a * b * (
        B * np.einsum("nij,j,nk->ik", A, mean, r) / n + B * (B - 1) * np.outer(A_bar @ mean, r_bar)
    )
    noise = b**2 * (B * r.T @ r / n + B * (B - 1) * np.outer(r_bar, r_bar))
    constant = cross + cross.T + noise + step * np.eye(d)
    basis = np.eye(d * d).reshape(d * d, d, d)
    L = np.stack([transfer(e).ravel() for e in basis], axis=1)
    second = np.linalg.solve(np.eye(d * d) - L, constant.ravel()).reshape(d, d)
    return mean, second - np.outer(mean, mean)


def test_minibatch_sgld_has_the_exact_discretised_minibatch_law():
    """Minibatches of 10 of 50 points at the default step: mean and variance against the exact
    stationary law of the minibatch chain (gradient noise included), within 4 MC errors."""
    post = pi.sgmcmc(TARGET, key=2, kernel="sgld", batch_size=10, num_steps=20_000, thinning=5)
    step = float(post.diagnostics["step_size"][0])
    exact_mean, exact_cov = _minibatch_sgld_law(step, 10)
    np.testing.assert_allclose(exact_mean, MEAN, rtol=1e-5)
    sd = np.sqrt(np.diag(exact_cov))
    assert np.all(sd > SD * 1.01)  # the gradient noise inflates the law: the check sees it
    mean, var, ess = _moments(post)
    assert np.all(np.abs(mean - exact_mean) < 4 * sd / np.sqrt(ess)), (mean, exact_mean, ess)
    assert np.all(np.abs(var / sd**2 - 1) < 4 * np.sqrt(2 / ess)), (var / sd**2, ess)


def test_defaults_give_a_usable_posterior():
    """No method, no step size, minibatches of 10 of the 50 points. Measured over seeds 0-9
    (2026-12-05): worst mean error 0.026-0.057 posterior sd (the mean of the worst is 0.04, its
    spread 0.01), worst sd error 0.05-0.22 (the step's discretisation bias, which depends on the
    step the pilot picks). Bounds: 0.12 sd and 28 %, five to six spreads above the measured worst
    (the product's bar is 0.3 sd and 35 %)."""
    post = pi.sgmcmc(TARGET, key=3, batch_size=10, num_steps=10_000)
    assert post.diagnostics["preconditioned"]
    mean, var, _ = _moments(post)
    assert np.all(np.abs(mean - MEAN) < 0.12 * SD), (mean - MEAN) / SD
    assert np.all(np.abs(np.sqrt(var) / SD - 1) < 0.28), np.sqrt(var) / SD


def test_psgld_keeps_the_posterior_mean_within_monte_carlo_error():
    """On a Gaussian target the drift G ∇log π with a *constant* diagonal G vanishes at the
    posterior mean, and the dropped Γ term is zero, so the mean is exact; RMSprop's fluctuating G
    could add a bias, which is not derived here — the test allows none beyond 4 MC errors (ESS
    from the chains), so a bias larger than that fails it. The variance is inflated (step and
    gradient noise) and is not checked."""
    post = pi.sgmcmc(TARGET, key=4, kernel="psgld", step_size=1e-3, batch_size=10, num_steps=40_000)
    mean, _, ess = _moments(post)
    assert np.all(ess > 10), ess
    assert np.all(np.abs(mean - MEAN) < 4 * SD / np.sqrt(ess)), ((mean - MEAN) / SD, ess)


def test_bad_input():
    with pytest.raises(DataError, match="batch_size"):
        pi.sgmcmc(TARGET, key=0, batch_size=TARGET.num_data + 1)
    with pytest.raises(ProbinferError, match="step_size must be positive"):
        pi.sgmcmc(TARGET, key=0, kernel="sgld", step_size=0.0)
    with pytest.raises(ProbinferError, match="psgld needs a step_size"):
        pi.sgmcmc(TARGET, key=0, kernel="psgld")

    def model(y=None):
        mu = pi.sample("mu", dist.Normal(0.0, 1.0))
        with pi.plate("data", 3):
            pi.sample("y", dist.Normal(mu, 1.0), obs=y)

    import jax.numpy as jnp

    unmarked = pi.compile(model, y=jnp.zeros(3))
    with pytest.raises(DataError, match="no data marked"):
        pi.sgmcmc(unmarked, key=0)


@pytest.mark.slow
def test_control_variates_reduce_the_gradient_variance():
    """Logistic regression on the breast-cancer data (31 dims): at posterior-typical points near
    the mode, the SGLD-CV estimator's variance over minibatches is below the plain one's (measured
    ≈ 0.57 of it one Laplace sd away from the mode in all 31 directions; exactly 0 at the mode),
    and both average to the full gradient."""
    import jax
    import jax.numpy as jnp

    from probinfer.inference.sgmcmc import find_mode, gradient_estimator, laplace_covariance

    target = pi.models.get("logistic_regression").compile()
    mode = find_mode(target, jax.random.PRNGKey(0), batch_size=64)
    cov = laplace_covariance(target, mode)
    z = mode + jnp.linalg.cholesky(cov) @ jax.random.normal(jax.random.PRNGKey(1), (target.dim,))
    indices = jax.vmap(lambda k: jax.random.choice(k, target.num_data, (32,), replace=False))(
        jax.random.split(jax.random.PRNGKey(2), 1000)
    )
    plain = jax.vmap(lambda i: gradient_estimator(target)(z, i))(indices)
    cv = jax.vmap(lambda i: gradient_estimator(target, mode)(z, i))(indices)
    exact = jax.grad(target.log_density)(z)
    for draws in (plain, cv):  # unbiased: the mean over 1,000 minibatches is within 4.5 SE
        se = draws.std(0) / np.sqrt(draws.shape[0])
        assert np.all(np.abs(draws.mean(0) - exact) < 4.5 * se + 1e-4 * np.abs(exact))
    # Each summed variance has a relative SE of about √(2/1000) ≈ 4.5 %: 0.85 is > 3 SE below 1.
    ratio = float(cv.var(0).sum() / plain.var(0).sum())
    assert ratio < 0.85, ratio
    at_mode = jax.vmap(lambda i: gradient_estimator(target, mode)(mode, i))(indices[:50])
    assert float(at_mode.var(0).sum()) < 1e-6 * float(plain.var(0).sum())


def test_cyclical_schedule_keeps_sampling_phases_only():
    post = pi.sgmcmc(
        TARGET,
        key=5,
        kernel="sgld",
        schedule=schedules.cyclical(num_cycles=4),
        num_steps=8_000,
        thinning=1,
        num_warmup=0,
        batch_size=10,
    )
    # 4 cycles of 2,000 steps, the second half of each kept: 4 × 1,000 draws per chain.
    assert post.draws["w"].shape[:2] == (4, 4_000)
    mean, _, ess = _moments(post)
    assert np.all(np.abs(mean - MEAN) < 4 * SD / np.sqrt(ess)), (mean, MEAN)


def test_entropy_mcmc_marginals():
    """Full-batch Entropy-MCMC on the Gaussian posterior is SGLD on the joint Gaussian with
    precision [[Λ + I/η, −I/η], [−I/η, I/η]]: θ has the posterior marginal and θ_a the posterior
    convolved with N(0, ηI), up to the discretisation — the exact stationary law of the discretised
    chain (discrete Lyapunov) is what the draws are compared with."""
    eta = 0.05
    precision = np.linalg.inv(COV)
    joint = np.block(
        [[precision + np.eye(3) / eta, -np.eye(3) / eta], [-np.eye(3) / eta, np.eye(3) / eta]]
    )
    step = 0.1 / np.linalg.eigvalsh(joint).max()
    post = pi.sgmcmc(
        TARGET,
        key=6,
        kernel=entropy(coupling=eta),
        step_size=step,
        batch_size=TARGET.num_data,
        num_steps=20_000,
        thinning=5,
    )
    a = np.eye(6) - 0.5 * step * joint
    stationary = np.diag(scipy.linalg.solve_discrete_lyapunov(a, step * np.eye(6)))
    # The continuous-time targets, for orientation: Σ and Σ + ηI.
    np.testing.assert_allclose(stationary[:3], np.diag(COV), rtol=0.1)
    np.testing.assert_allclose(stationary[3:], np.diag(COV) + eta, rtol=0.1)
    anchors = post.diagnostics["anchor_draws"]["w"]
    for draws, variance in [(post.draws["w"], stationary[:3]), (anchors, stationary[3:])]:
        ess = np.array([float(az.ess(draws[..., d])) for d in range(3)])
        flat = draws.reshape(-1, 3)
        assert np.all(np.abs(flat.mean(0) - MEAN) < 4 * np.sqrt(variance / ess))
        assert np.all(np.abs(flat.var(0) / variance - 1) < 4 * np.sqrt(2 / ess)), (
            flat.var(0) / variance
        )


def test_checkpoint_resume_gives_the_uninterrupted_draws(tmp_path, killed_after_saves):
    """A run killed after its second checkpoint and started again resumes from the file (it
    runs only the missing segments) and returns exactly the draws of one uninterrupted run."""
    kwargs = dict(
        key=7, kernel="sghmc", step_size=1e-3, batch_size=10, num_steps=1_000, thinning=10
    )
    whole = pi.sgmcmc(TARGET, **kwargs)
    path = tmp_path / "run.npz"
    saves = killed_after_saves(2)
    with pytest.raises(KeyboardInterrupt):
        pi.sgmcmc(TARGET, checkpoint=path, checkpoint_every=20, **kwargs)
    assert path.exists() and saves == [20, 40]
    resumed = pi.sgmcmc(TARGET, checkpoint=path, checkpoint_every=20, **kwargs)
    assert saves == [20, 40, 60, 80, 100]  # the first two segments were not run again
    np.testing.assert_array_equal(resumed.draws["w"], whole.draws["w"])
    with pytest.raises(ProbinferError, match="different run"):
        pi.sgmcmc(TARGET, checkpoint=path, **{**kwargs, "num_steps": 2_000})


@pytest.mark.slow
def test_chains_sharded_over_devices_match_one_device(on_cpu_devices):
    """Four chains on four (simulated CPU) devices give the one-device draws: chains never
    interact, so only float rounding of differently compiled programs could differ."""
    import textwrap

    script = textwrap.dedent(
        """
        import json, jax, numpy as np
        import probinfer as pi
        from probinfer.models import conjugate
        target = conjugate.linear_regression_example().compile()
        post = pi.sgmcmc(target, key=0, kernel="sgld", step_size=1e-3, batch_size=10,
                         num_steps=2_000, num_chains=4)
        print(json.dumps({"devices": jax.device_count(), "w": post.draws["w"].tolist()}))
        """
    )
    runs = {devices: on_cpu_devices(script, devices) for devices in (1, 4)}
    assert runs[4]["devices"] == 4
    np.testing.assert_allclose(runs[4]["w"], runs[1]["w"], rtol=1e-4, atol=1e-5)


def test_polynomial_and_optax_schedules(capfd):
    import optax

    post = pi.sgmcmc(
        TARGET,
        key=8,
        kernel="sgld",
        schedule="polynomial",
        batch_size=10,
        num_steps=20_000,
        thinning=5,
    )
    mean, _, ess = _moments(post)
    assert np.all(np.abs(mean - MEAN) < 4 * SD / np.sqrt(ess)), (mean, MEAN, ess)
    peak = 0.1 / np.linalg.eigvalsh(np.linalg.inv(COV)).max()
    custom = pi.sgmcmc(
        TARGET,
        key=8,
        kernel="sgld",
        schedule=optax.exponential_decay(peak, 1_000, 0.5),
        batch_size=10,
        num_steps=2_000,
        progress=True,
    )
    assert custom.settings["schedule"] == "custom"
    np.testing.assert_allclose(custom.diagnostics["step_size"], peak, rtol=1e-6)
    assert "sgmcmc" in capfd.readouterr().err  # the progress bar ran
    with pytest.raises(ProbinferError, match="schedule must be"):
        pi.sgmcmc(TARGET, key=0, kernel="sgld", step_size=1e-3, schedule="linear")


def test_divergence_names_the_step():
    with pytest.raises(ProbinferError, match=r"diverged .* by step \d+"):
        pi.sgmcmc(TARGET, key=0, kernel="sgld", step_size=10.0, batch_size=10, num_steps=500)


def test_fisher_diagonal_and_power_iteration():
    """The diagonal Fisher precision is Σ_n (∂ log p(y_n|θ))² plus the prior's diagonal (the
    prior N(0, I) gives 1), computed here by brute force; the power iteration finds the largest
    eigenvalue of the preconditioned Hessian (exactly 1 with the Laplace covariance)."""
    import jax
    import jax.numpy as jnp

    from probinfer.inference.sgmcmc import fisher_diagonal, laplace_covariance, largest_eigenvalue

    z = jnp.asarray(MEAN, jnp.float32) + 0.1
    per_datum = jax.jacrev(TARGET.log_likelihood_per_datum)(z)  # (N, 3)
    expected = np.sum(np.asarray(per_datum) ** 2, axis=0) + 1.0
    np.testing.assert_allclose(fisher_diagonal(TARGET, z, key=0, chunk=16), expected, rtol=1e-4)
    hessian = -np.asarray(jax.hessian(TARGET.log_density)(z))
    assert largest_eigenvalue(TARGET, z, jnp.ones(3), key=1) == pytest.approx(
        np.linalg.eigvalsh(hessian).max(), rel=1e-3
    )
    covariance = laplace_covariance(TARGET, z)
    assert largest_eigenvalue(TARGET, z, covariance, key=1) == pytest.approx(1.0, rel=1e-3)


def test_gradient_noise_eigenvalue_against_brute_force():
    """λ_max of R^T Cov(ĝ) R: the per-datum gradients by brute force (N × 3), their population
    covariance times N² / B, whitened by the Laplace covariance's Cholesky factor or left alone;
    0 for full-data gradients."""
    import jax
    import jax.numpy as jnp

    from probinfer.inference.sgmcmc import laplace_covariance
    from probinfer.inference.sgmcmc.preconditioning import gradient_noise_eigenvalue

    z = jnp.asarray(MEAN, jnp.float32) + 0.1
    grads = np.asarray(jax.jacrev(TARGET.log_likelihood_per_datum)(z), np.float64)  # (N, 3)
    n, batch = grads.shape[0], 10
    covariance = np.cov(grads.T, bias=True) * n * n / batch
    laplace = laplace_covariance(TARGET, z)
    root = np.linalg.cholesky(np.asarray(laplace, np.float64))
    for preconditioner, whitened in [(None, covariance), (laplace, root.T @ covariance @ root)]:
        value = gradient_noise_eigenvalue(TARGET, z, preconditioner, batch_size=batch, key=0)
        assert value == pytest.approx(np.linalg.eigvalsh(whitened).max(), rel=1e-3)
    assert gradient_noise_eigenvalue(TARGET, z, laplace, batch_size=n, key=0) == 0.0


def test_fisher_preconditioned_sgld_keeps_the_mean():
    post = pi.sgmcmc(
        TARGET, key=9, kernel=sgld(preconditioner="fisher"), batch_size=10, num_steps=10_000
    )
    assert post.settings["preconditioner"] == "fisher" and post.diagnostics["preconditioned"]
    mean, _, ess = _moments(post)
    assert np.all(np.abs(mean - MEAN) < 4 * SD / np.sqrt(ess)), (mean, MEAN, ess)


def test_init_skips_the_mode_search_and_starts_there(monkeypatch):
    from probinfer.inference.sgmcmc import preconditioning

    def no_mode(*args, **kwargs):
        raise AssertionError("the mode was searched for")

    monkeypatch.setattr(preconditioning, "find_mode", no_mode)
    start = {"w": np.full((2, 3), 5.0, np.float32)}
    post = pi.sgmcmc(
        TARGET,
        key=0,
        kernel="sgld",
        step_size=1e-6,
        init=start,
        num_steps=20,
        thinning=1,
        num_warmup=0,
        num_chains=2,
        batch_size=10,
    )
    assert post.diagnostics["mode"] is None
    np.testing.assert_allclose(post.draws["w"][:, 0], 5.0, atol=0.05)  # one tiny step away
    with pytest.raises(DataError, match="init lacks"):
        pi.sgmcmc(TARGET, key=0, kernel="sgld", step_size=1e-3, init={"v": 0.0})
    with pytest.raises(DataError, match="init gives"):
        pi.sgmcmc(TARGET, key=0, kernel="sgld", step_size=1e-3, init=np.zeros(4))


def test_repeated_calls_reuse_the_compiled_loop(monkeypatch):
    """Arrays (step sizes, preconditioner, friction, keys) reach the compiled loop as arguments,
    so a second call with other values of them compiles nothing new; a new method does."""
    from probinfer import compile as compile_model
    from probinfer.inference.sgmcmc import loop

    built = []
    real = loop._build_segment
    monkeypatch.setattr(loop, "_build_segment", lambda *a, **k: built.append(1) or real(*a, **k))
    target = compile_model(EXAMPLE.model, *EXAMPLE.args, data=EXAMPLE.data, **EXAMPLE.kwargs)
    common = dict(batch_size=10, num_steps=200)
    first = pi.sgmcmc(target, key=0, step_size=1e-3, kernel=sghmc(friction=0.1), **common)
    second = pi.sgmcmc(target, key=0, step_size=1e-3, kernel=sghmc(friction=0.2), **common)
    assert len(built) == 1
    assert not np.allclose(first.draws["w"], second.draws["w"])  # the new friction was used
    assert second.settings["friction"] == 0.2
    pi.sgmcmc(target, key=0, step_size=1e-3, kernel="sgld", **common)
    assert len(built) == 2


@pytest.mark.slow
def test_default_run_is_told_apart_from_plain_sgld():
    default = pi.sgmcmc(TARGET, key=0, batch_size=10, num_steps=500)
    plain = pi.sgmcmc(TARGET, key=0, kernel="sgld", batch_size=10, num_steps=500)
    assert default.settings["preconditioner"] == "laplace" and default.settings["default_kernel"]
    assert plain.settings["preconditioner"] is None and not plain.settings["default_kernel"]
    assert default.settings["kernel"] == plain.settings["kernel"] == "sgld"


def test_step_size_pilot_grows_a_timid_step_and_keeps_a_stable_one():
    """The KSD pilot on exact Langevin (ULA) for N(0, I₂) from far-off starts (x = 5). From a
    timid base ε₀ = 10⁻⁴ the chains barely move in the pilot's 1,000 steps, so a step of at least
    30 ε₀ must win. From ε₀ = 0.5, ULA is unstable for ε ≥ 4 (|1 − ε/2| ≥ 1): those candidates
    diverge (KSD = inf) and 1.5 (stationary variance 1/(1 − ε/4) = 1.6) loses to 0.5 (1.14)."""
    from typing import NamedTuple

    import jax
    import jax.numpy as jnp

    from probinfer.inference.sgmcmc.pilot import pilot_step_size

    class State(NamedTuple):
        position: jax.Array

    def step(target, key, state, t, epsilon, noise, params):  # ULA on N(0, I): score −z
        z = state.position
        return State(z - 0.5 * epsilon * z + jnp.sqrt(epsilon) * jax.random.normal(key, z.shape))

    def standard_normal():
        pi.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))

    starts = jnp.full((4, 2), 5.0)
    common = dict(target=pi.compile(standard_normal), scale=jnp.ones(2), params=None)
    timid, table = pilot_step_size(step, State, starts, jax.random.PRNGKey(0), 1e-4, **common)
    assert timid >= 30e-4, table
    stable, table = pilot_step_size(step, State, starts, jax.random.PRNGKey(1), 0.5, **common)
    assert stable == 0.5, table
    assert np.isinf(table["ksd"][2:]).all(), table
    # The minibatch-noise bound: no candidate above it wins; below every candidate, it is the step.
    capped, table = pilot_step_size(
        step, State, starts, jax.random.PRNGKey(0), 1e-4, max_step=5e-4, **common
    )
    assert capped <= 5e-4 and table["max_step"] == 5e-4, table
    floor, _ = pilot_step_size(
        step, State, starts, jax.random.PRNGKey(1), 0.5, max_step=0.2, **common
    )
    assert floor == 0.2
