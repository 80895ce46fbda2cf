"""Normalizing flows and flow VI: layers against brute force, every flow a density, VI against
exact answers, Pareto k̂ both ways, bad input, checkpoints."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import probinfer as pi
from probinfer import DataError, DiscreteLatentError, ProbinferError, dist
from probinfer.inference.flows import FLOWS, make_flow
from probinfer.nn.flow_layers import Planar, Radial, rational_quadratic


def _perturbed(params, scale, seed=0):
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    return jax.tree.unflatten(
        tree, [x + scale * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys, strict=True)]
    )


@pytest.mark.parametrize("layer", [Planar, Radial])
def test_planar_and_radial_log_det_and_inverse_for_any_raw_parameters(layer):
    """Raw parameters drawn wide (so wᵀu < −1 and β < −α occur before reparameterisation): the
    log-determinant equals log|det| of the autodiff Jacobian, the map is invertible (the
    constraint wᵀû > −1 / β̂ ≥ −α holds) and inverse(forward(x)) = x."""
    dim = 3
    module = layer(dim)
    x = jax.random.normal(jax.random.PRNGKey(1), (7, dim))
    for seed in range(5):
        params = _perturbed(
            module.init(jax.random.PRNGKey(seed), x, method=module.forward), 2.0, seed
        )
        y, log_det = module.apply(params, x, method=module.forward)
        jacobians = jax.vmap(
            jax.jacfwd(lambda v, p=params: module.apply(p, v[None], method=module.forward)[0][0])
        )(x)
        np.testing.assert_allclose(
            log_det, np.linalg.slogdet(np.asarray(jacobians))[1], rtol=1e-3, atol=1e-4
        )
        back, inverse_log_det = module.apply(params, y, method=module.inverse)
        np.testing.assert_allclose(back, x, atol=1e-4)
        np.testing.assert_allclose(inverse_log_det, -log_det, atol=1e-4)
        if layer is Planar:
            p = params["params"]
            u_hat = module.apply(params, method=lambda m: m._u_hat())
            assert float(p["w"] @ u_hat) > -1.0


def test_rational_quadratic_spline_matches_distrax_and_its_own_derivative():
    """Our spline against distrax's ``RationalQuadraticSpline`` with the same knots (identity
    boundary slopes, the same minimum bin size and slope), on points inside and outside
    [−5, 5]: outputs and log-derivatives agree, the log-derivative equals log dy/dx by autodiff,
    the inverse undoes the forward map, and gradients are finite everywhere (double where)."""
    import distrax  # the test extra's outside reference: missing, the test must fail, not skip

    bins = 8
    raw = 0.5 * jax.random.normal(jax.random.PRNGKey(0), (2000, 3 * bins - 1))
    x = jnp.linspace(-7.0, 7.0, 2000)
    zero = jnp.zeros((2000, 1))
    full = jnp.concatenate([raw[:, : 2 * bins], zero, raw[:, 2 * bins :], zero], -1)
    reference = distrax.RationalQuadraticSpline(
        full, -5.0, 5.0, boundary_slopes="identity", min_bin_size=1e-4, min_knot_slope=1e-4
    )
    y, log_det = rational_quadratic(x, raw, 5.0)
    y_ref, log_det_ref = reference.forward_and_log_det(x)
    np.testing.assert_allclose(y, y_ref, atol=1e-4)
    np.testing.assert_allclose(log_det, log_det_ref, atol=1e-4)
    slope = jax.vmap(jax.grad(lambda a, r: rational_quadratic(a, r, 5.0)[0]))(x, raw)
    np.testing.assert_allclose(jnp.log(slope), log_det, atol=1e-4)
    back, inverse_log_det = rational_quadratic(y, raw, 5.0, inverse=True)
    x_ref, inverse_log_det_ref = reference.inverse_and_log_det(y)
    np.testing.assert_allclose(back, x, atol=1e-3)
    np.testing.assert_allclose(back, x_ref, atol=1e-3)
    np.testing.assert_allclose(inverse_log_det, -log_det, atol=1e-3)
    np.testing.assert_allclose(inverse_log_det, inverse_log_det_ref, atol=1e-3)
    assert np.all(np.asarray(y)[np.abs(x) >= 5.0] == np.asarray(x)[np.abs(x) >= 5.0])
    for inverse in (False, True):
        grads = jax.grad(
            lambda r, a, inv=inverse: jnp.sum(rational_quadratic(a, r, 5.0, inv)[1]), (0, 1)
        )(raw, x)
        assert all(bool(jnp.all(jnp.isfinite(g))) for g in grads)


@pytest.mark.parametrize(
    ("kind", "dim"),
    [
        *[(kind, dim) for kind in ("nsf", "realnvp") for dim in (1, 3, 4)],
        ("nsf_ar", 1),
        ("nsf_ar", 3),
        # 26 s of compilation for what the odd case already shows (autoregressive layers do not
        # split in halves): the second tier.
        pytest.param("nsf_ar", 4, marks=pytest.mark.slow),
    ],
)
def test_coupling_and_spline_flows_log_det_matches_autodiff_in_odd_even_and_one_dimension(
    kind, dim
):
    """Coupling layers split the coordinates in halves (for d = 1 one layer maps the lone
    coordinate, the next passes it), the autoregressive spline is triangular: log|det J|
    equals the autodiff Jacobian's, and the inverse undoes the forward map."""
    flow = make_flow(kind, dim, num_layers=3)
    # 0.05 as in the test below: at 0.1 some splines reach the minimum slope 1e-3, where float32
    # inversion loses digits for ours and distrax's alike (measured: the same 0.03 error).
    params = _perturbed(flow.init(jax.random.PRNGKey(0)), 0.05)
    z = 1.5 * jax.random.normal(jax.random.PRNGKey(1), (16, dim))
    # Jitted: run op by op, the spline's many small operations took 13-19 s per case.
    x, log_det = jax.jit(flow.forward)(params, z)
    jacobian = jax.jacfwd(lambda p, v: flow.forward(p, v[None])[0][0], argnums=1)
    jacobians = jax.jit(jax.vmap(jacobian, in_axes=(None, 0)))(params, z)
    np.testing.assert_allclose(log_det, np.linalg.slogdet(np.asarray(jacobians))[1], atol=2e-4)
    back, inverse_log_det = jax.jit(flow.inverse)(params, x)
    np.testing.assert_allclose(back, z, atol=1e-3)
    np.testing.assert_allclose(inverse_log_det, -log_det, atol=1e-3)
    if dim == 1:
        assert np.max(np.abs(x - z)) > 1e-3  # the lone coordinate is transformed


@pytest.mark.parametrize("kind", FLOWS)
def test_every_flow_is_a_normalised_invertible_density(kind):
    """With parameters moved off the identity: log_prob of a sample equals the log density
    returned with it, inverse(forward(z)) = z, and exp(log q) integrates to 1 on a 2-D grid
    (midpoint rule on [−9, 9]², error far below the 2 % allowed)."""
    flow = make_flow(kind, 2, num_layers=2 if kind not in ("planar", "radial") else 4)
    params = _perturbed(flow.init(jax.random.PRNGKey(0)), 0.05)
    x, log_q = flow.sample_and_log_prob(params, jax.random.PRNGKey(1), 64)
    np.testing.assert_allclose(flow.log_prob(params, x), log_q, atol=2e-3)
    z = jax.random.normal(jax.random.PRNGKey(2), (64, 2))
    back, _ = flow.inverse(params, flow.forward(params, z)[0])
    np.testing.assert_allclose(back, z, atol=1e-3)
    grid = np.linspace(-9, 9, 301)
    step = grid[1] - grid[0]
    points = np.stack(np.meshgrid(grid, grid), -1).reshape(-1, 2).astype(np.float32)
    mass = float(jnp.sum(jnp.exp(jax.jit(flow.log_prob)(params, points))) * step**2)
    assert abs(mass - 1.0) < 0.02, mass


@pytest.mark.parametrize("kind", ["nsf", "nsf_ar", "maf", "iaf", "realnvp"])
def test_conditional_flows_read_the_context(kind):
    """A conditional flow's density depends on the context and stays consistent with its
    sampler for each context."""
    flow = make_flow(kind, 2, num_layers=2, context_dim=3)
    params = _perturbed(flow.init(jax.random.PRNGKey(0)), 0.1)
    x, log_q = flow.sample_and_log_prob(params, jax.random.PRNGKey(1), 32, context=jnp.ones(3))
    np.testing.assert_allclose(flow.log_prob(params, x, context=jnp.ones(3)), log_q, atol=2e-3)
    other = flow.log_prob(params, x, context=-jnp.ones(3))
    assert np.max(np.abs(other - log_q)) > 1e-3
    with pytest.raises(DataError, match="context"):
        flow.log_prob(params, x)


def _correlated_gaussian():
    covariance = jnp.array([[1.0, 0.9 * 3.0], [0.9 * 3.0, 9.0]])

    def model():
        pi.sample("z", dist.MultivariateNormal(jnp.array([1.0, -2.0]), covariance))

    return pi.compile(model)


@pytest.mark.slow  # 12 s: the default tier measured 5:50 of its 6:00
def test_flow_vi_fits_a_correlated_gaussian_with_the_defaults():
    """KL(q ‖ p) = −E_q[log w] (the target is normalised), estimated from the 1,000 kept draws:
    below 0.01 within 3 Monte Carlo standard errors, and the importance weights nearly equal
    (Kish ESS over 90 % of the draws; KL ≈ 0.01 would give about 98 %). Pareto k̂ is not asserted
    here: with weights this even its tail fit is noise (0.33-0.74 over six seeds, KL ≤ 1e-3)."""
    post = pi.flow_vi(_correlated_gaussian(), key=0, progress=False)
    x = post.draws["z"][0]
    target_log_p = jax.vmap(_correlated_gaussian().log_density)(jnp.asarray(x))
    log_w = np.asarray(target_log_p) - post.log_prob({"z": x})
    kl, se = -log_w.mean(), log_w.std() / np.sqrt(log_w.size)
    assert kl < 0.01 + 3 * se, (kl, se)
    w = np.exp(log_w - log_w.max())
    assert w.sum() ** 2 / (w**2).sum() > 0.9 * w.size
    assert np.isfinite(post.diagnostics["pareto_k"])
    assert np.isfinite(post.diagnostics["elbo"]).all()


def _student_t(df):
    def model():
        pi.sample("x", dist.StudentT(df, 0.0, 1.0).expand([2]).to_event(1))

    return pi.compile(model)


def test_pareto_k_is_small_for_a_matching_flow_and_large_for_a_too_narrow_one():
    """A Gaussian q (the affine layer alone) on a Gaussian target: k̂ < 0.5. The same q on a
    Student-t with 1.5 degrees of freedom, whose tails it cannot cover: k̂ > 0.7, with a
    warning."""

    def gaussian():
        pi.sample("x", dist.Normal(2.0, 3.0).expand([2]).to_event(1))

    kwargs = dict(flow="realnvp", num_layers=0, num_steps=1500, num_draws=2000, progress=False)
    good = pi.flow_vi(pi.compile(gaussian), key=0, **kwargs)
    assert good.diagnostics["pareto_k"] < 0.5
    with pytest.warns(pi.ProbinferWarning, match="Pareto"):
        bad = pi.flow_vi(_student_t(1.5), key=0, **kwargs)
    assert bad.diagnostics["pareto_k"] > 0.7


def test_log_prob_on_the_constrained_space_is_a_density():
    """For a positive site, FlowPosterior.log_prob includes the Jacobian of exp: exp(log q(σ))
    integrates to 1 over σ > 0."""

    def model():
        pi.sample("sigma", dist.HalfNormal(1.0))

    post = pi.flow_vi(pi.compile(model), key=0, flow="realnvp", num_steps=300, progress=False)
    grid = np.linspace(1e-4, 8.0, 8_001)
    density = np.exp(post.log_prob({"sigma": grid}))
    assert abs(np.sum(density) * (grid[1] - grid[0]) - 1.0) < 0.01
    assert post.sample(key=1, n=7)["sigma"].shape == (7,)


def test_bad_input_is_named():
    def discrete():
        pi.sample("k", dist.Poisson(3.0))

    with pytest.raises(DiscreteLatentError):
        pi.flow_vi(pi.compile(discrete), key=0, progress=False)
    target = _correlated_gaussian()
    with pytest.raises(DataError, match="flow must be one of"):
        pi.flow_vi(target, key=0, flow="glow", progress=False)
    with pytest.raises(DataError, match="multiple of 4"):
        pi.flow_vi(target, key=0, objective="miwae", num_particles=6, progress=False)
    with pytest.raises(DataError, match="objective must be"):
        pi.flow_vi(target, key=0, objective="elbo2", progress=False)


def test_checkpoint_resume_gives_the_uninterrupted_fit(tmp_path, killed_after_saves):
    """Killed after its second save, the fit resumes from the file and returns the draws and
    ELBO trace of an uninterrupted run."""
    target = pi.models.get("normal_normal").compile()
    kwargs = dict(key=2, flow="realnvp", num_layers=1, num_steps=300, progress=False)
    whole = pi.flow_vi(target, **kwargs)
    saves = killed_after_saves(2)
    with pytest.raises(KeyboardInterrupt):
        pi.flow_vi(target, checkpoint=tmp_path, checkpoint_every=100, **kwargs)
    resumed = pi.flow_vi(target, checkpoint=tmp_path, checkpoint_every=100, **kwargs)
    assert saves == [100, 200, 300]
    np.testing.assert_array_equal(resumed.draws["mu"], whole.draws["mu"])
    np.testing.assert_array_equal(resumed.diagnostics["elbo"], whole.diagnostics["elbo"])
    with pytest.raises(ProbinferError, match="different run"):
        pi.flow_vi(target, checkpoint=tmp_path, **{**kwargs, "num_steps": 400})


def _grid_sample(energy, n, rng, half=4.0, size=400):
    """n exact-ish draws of exp(−U): a grid cell drawn with its probability, then a uniform point
    in the cell, on the box [−4, 4]² (the only error is the density's variation within a
    0.02-wide cell)."""
    a = np.linspace(-half, half, size)
    cell = a[1] - a[0]
    points = np.stack(np.meshgrid(a, a), -1).reshape(-1, 2)
    log_p = -np.asarray(energy(jnp.asarray(points, jnp.float32)), np.float64)
    p = np.exp(log_p - log_p.max())
    index = rng.choice(points.shape[0], n, p=p / p.sum())
    return (points[index] + rng.uniform(-cell / 2, cell / 2, (n, 2))).astype(np.float32)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    # U3 was an xfail with 16 draws per step and a decay to 1/10 (k̂ 0.85); the current defaults
    # fit it (worst mean error 0.040 sd over 4 seeds in the flow benchmark's sweep).
    [
        # U1's two lobes get unequal mass at some seeds (a reverse-KL local optimum): over keys
        # 0-7, P(z₁ > 0) ranged 0.38-0.55 (exact 0.5) and 1 of 8 fits failed this bound on its
        # first 500 draws (2 of 8 counting draws 500-1,000 too); before the spline's layout
        # changed 2 of 6 failed (one collapsed onto a lobe: P = 0.001). A known defect, not a
        # passing claim; test_default_flow_keeps_both_lobes_of_u1 guards the collapse.
        pytest.param("u1", marks=pytest.mark.xfail(reason="U1's lobe masses vary by seed")),
        "u2",
        "u3",
        "u4",
    ],
)
def test_default_flow_matches_the_rezende_energies(name):
    """The default flow on U1–U4 (the flows paper's energies; U2–U4 uniform on [−4, 4]², as they
    are improper in z₁ without the box; U1 is proper as it is): the unbiased MMD² between 500 of
    its draws and 500 grid-exact draws is below the mean + 5 sd of the same statistic between two
    independent grid-exact samples of 500 (10 pairs), the kernel's length fixed from the
    reference. (At 1,000 draws U1's small mismatch is detectable: MMD² 0.0010 vs a threshold of
    0.00057.)"""
    from probinfer.diagnostics import median_lengthscale, mmd
    from probinfer.models import energies

    energy = getattr(energies, name)
    rng = np.random.default_rng(0)
    reference = _grid_sample(energy, 500, rng)
    length = median_lengthscale(reference)
    null = [
        float(
            mmd(_grid_sample(energy, 500, rng), _grid_sample(energy, 500, rng), lengthscale=length)
        )
        for _ in range(10)
    ]
    threshold = np.mean(null) + 5 * np.std(null, ddof=1)
    bound = None if name == "u1" else 4.0
    post = pi.flow_vi(pi.compile(energies.energy_model(energy, bound)), key=0, progress=False)
    value = float(mmd(post.draws["z"][0][:500], reference, lengthscale=length))
    assert value < threshold, (value, threshold, null)


@pytest.mark.slow
def test_default_flow_keeps_both_lobes_of_u1():
    """U1 is symmetric in z₁, so half its mass lies at z₁ > 0. The default flow's share (1,000
    draws, se 0.016) stays within 0.5 ± 0.2: over keys 0-7 it ranged 0.38-0.55 (the unequal
    lobes that keep U1's MMD check an xfail); a fit collapsed onto one lobe (seen once before
    the spline's layout changed: 0.001) fails."""
    from probinfer.models import energies

    post = pi.flow_vi(pi.compile(energies.energy_model(energies.u1, None)), key=0, progress=False)
    share = float(np.mean(np.asarray(post.draws["z"][0])[:, 0] > 0))
    assert abs(share - 0.5) < 0.2, share


@pytest.mark.slow
def test_calibrate_runs_flow_vi_as_one_vmapped_program():
    """flow_vi's pure draws function under calibrate's vmap: the normal–normal posterior fitted
    per simulated data set is judged calibrated (level 0.01)."""
    result = pi.calibrate(
        pi.models.get("normal_normal").compile(),
        "flow_vi",
        key=0,
        num_sims=40,
        num_draws=50,
        method_kwargs={"flow": "realnvp", "num_layers": 1, "num_steps": 500},
        progress=False,
    )
    assert result.samples.shape == (50, 40, 1)
    assert result.is_calibrated(level=0.01), result.verdict(level=0.01)


def test_bounds_match_their_formulas_and_order():
    """ELBO = mean log w, IWAE = log mean w, MIWAE = mean over groups of 4 of log mean w, CIWAE
    = their average with β = ½; and ELBO ≤ MIWAE ≤ IWAE on the same weights (Jensen)."""
    from jax.scipy.special import logsumexp

    from probinfer.nn.objectives import bound

    log_w = jax.random.normal(jax.random.PRNGKey(0), (16,)) * 2.0
    elbo, iwae = float(log_w.mean()), float(logsumexp(log_w) - np.log(16))
    miwae = float(np.mean([logsumexp(g) - np.log(4) for g in log_w.reshape(4, 4)]))
    np.testing.assert_allclose(bound("elbo", log_w), elbo, rtol=1e-6)
    np.testing.assert_allclose(bound("iwae", log_w), iwae, rtol=1e-6)
    np.testing.assert_allclose(bound("miwae", log_w), miwae, rtol=1e-6)
    np.testing.assert_allclose(bound("ciwae", log_w), 0.5 * (elbo + iwae), rtol=1e-6)
    assert elbo <= miwae <= iwae


@pytest.mark.parametrize("objective", ["iwae", "miwae", "ciwae", "annealed"])
def test_other_objectives_give_a_usable_importance_proposal(objective):
    """Short fits (600 steps, a one-layer flow) under IWAE (K = 16), MIWAE, CIWAE and the
    annealed ELBO on the normal–normal model, with importance_resample=True: the PSIS-weighted mean is within
    4 exact sd / √ESS (Kish ESS of the weights) of the exact posterior mean. (An IWAE-trained q
    moves slowly — its gradient SNR falls with K — but stays a valid, broad proposal.)"""
    example = pi.models.get("normal_normal")
    post = pi.flow_vi(
        example.compile(),
        key=0,
        flow="realnvp",
        num_layers=1,
        num_steps=600,
        objective=objective,
        importance_resample=True,
        progress=False,
    )
    _assert_weighted_mean_near(post, "mu", example.exact["mu_mean"], example.exact["mu_sd"])
    assert np.isfinite(post.diagnostics["elbo"]).all()


def _assert_weighted_mean_near(post, site, mean, sd):
    """The importance-weighted mean of ``site`` within 4 exact sd / √ESS (Kish ESS of the
    self-normalised weights, the standard error of a self-normalised IS mean) of ``mean``."""
    weights = np.exp(post.log_weights[0])
    ess = 1.0 / np.sum(weights**2)
    assert ess > 100
    np.testing.assert_array_less(
        np.abs(weights @ post.draws[site][0] - mean), 4 * sd / np.sqrt(ess)
    )


def test_minibatch_elbo_gives_a_usable_importance_proposal():
    """``batch_size`` (a minibatch ELBO: unbiased for the full one, so the same optimum with
    more noise) on the conjugate regression, 10 of 50 points per step: the PSIS-weighted mean of
    every coefficient within 4 exact sd / √ESS of the exact posterior mean."""
    example = pi.models.get("linear_regression")
    post = pi.flow_vi(
        example.compile(),
        key=0,
        flow="realnvp",
        num_layers=1,
        num_steps=600,
        batch_size=10,
        importance_resample=True,
        progress=False,
    )
    assert post.settings["batch_size"] == 10
    sd = np.sqrt(np.diag(example.exact["w_cov"]))
    _assert_weighted_mean_near(post, "w", example.exact["w_mean"], sd)


def test_above_a_hundred_dimensions_the_flow_starts_at_a_mean_field_fit():
    """The affine layer's start: prior draws at 100 dimensions, above them the normal quantiles
    of a mean-field ADVI fit — here of a diagonal Gaussian posterior (prior N(0, 1), one datum
    y_i ~ N(x_i, 0.1²) per coordinate: mean y_i / 1.01, sd 0.0995), whose quartiles the points
    then have. The fit is stochastic (2,000 one-draw steps): its means and sds are compared
    coordinate by coordinate with a tolerance of 0.5 sd / 30 %, which the prior draws miss by
    far (prior sd 1, 10 posterior sds)."""
    from probinfer.inference.flows.runner import HIGH_DIMENSION, _starting_points

    def diagonal(y):
        x = pi.sample("x", dist.Normal(0.0, 1.0).expand([y.shape[0]]).to_event(1))
        pi.sample("y", dist.Normal(x, 0.1).to_event(1), obs=y)

    points = {}
    for dim in (HIGH_DIMENSION, HIGH_DIMENSION + 1):
        y = jnp.linspace(-2.0, 2.0, dim)
        points[dim] = (np.asarray(_starting_points(pi.compile(diagonal, y), None, 0)), y)
    mean, sd = points[HIGH_DIMENSION + 1][1] / 1.01, 0.1 / np.sqrt(1.01)
    low, median, high = np.percentile(points[HIGH_DIMENSION + 1][0], [25, 50, 75], axis=0)
    assert np.all(np.abs(median - mean) < 0.5 * sd)
    assert np.all(np.abs((high - low) / 1.349 / sd - 1) < 0.3)
    prior_like = points[HIGH_DIMENSION][0]
    assert np.median(np.percentile(prior_like, 75, 0) - np.percentile(prior_like, 25, 0)) > 1.0
