"""compile → Target: log densities against hand-computed values and NumPyro, minibatching,
transforms, initialisation, the prior predictive, and the errors users see."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer.util import log_density as numpyro_log_density
from numpyro.infer.util import potential_energy
from scipy import stats

import probinfer as pi
from probinfer import dist, models
from probinfer.models import conjugate, eight_schools, energies, sparse

ZOO_NAMES = sorted(models.ZOO)


# The sparse-data models at a tenth of their size: the same code, a fraction of the compile.
SMALL = {
    "item_response": lambda: sparse.item_response_example(40, 10, 3_000),
    "random_effects_logistic": lambda: sparse.random_effects_example(50, 20),
}


@pytest.fixture(scope="module")
def zoo():
    return {name: SMALL.get(name, lambda n=name: models.get(n))() for name in ZOO_NAMES}


@pytest.fixture(scope="module")
def targets(zoo):
    return {name: example.compile() for name, example in zoo.items()}


def _named_z(target, **unconstrained):
    return target.ravel({k: jnp.asarray(v, jnp.float32) for k, v in unconstrained.items()})


def test_normal_normal_log_density_matches_hand_computation(zoo, targets):
    target, y = targets["normal_normal"], zoo["normal_normal"].kwargs["y"]
    mu = 0.37
    z = _named_z(target, mu=mu)
    np.testing.assert_allclose(target.log_prior(z), stats.norm.logpdf(mu, 0, 1), rtol=1e-5)
    np.testing.assert_allclose(
        target.log_likelihood(z), stats.norm.logpdf(y, mu, 1).sum(), rtol=1e-5
    )


def test_beta_binomial_includes_logit_jacobian(zoo, targets):
    example, target = zoo["beta_binomial"], targets["beta_binomial"]
    trials, successes = example.args[0], example.kwargs["successes"]
    free = -0.4
    p = 1 / (1 + np.exp(-free))
    z = _named_z(target, p=free)
    expected_prior = stats.beta.logpdf(p, 1, 1) + np.log(p * (1 - p))
    np.testing.assert_allclose(target.log_prior(z), expected_prior, rtol=1e-5, atol=1e-6)
    expected_lik = stats.binom.logpmf(successes, trials, p).sum()
    np.testing.assert_allclose(target.log_likelihood(z), expected_lik, rtol=1e-5)


def test_linear_regression_log_density_matches_hand_computation(zoo, targets):
    example, target = zoo["linear_regression"], targets["linear_regression"]
    x, y = example.args[0], example.kwargs["y"]
    w = np.array([0.3, -0.2, 0.9])
    z = _named_z(target, w=w)
    expected = stats.norm.logpdf(w, 0, 1).sum() + stats.norm.logpdf(y, x @ w, 1).sum()
    np.testing.assert_allclose(target.log_density(z), expected, rtol=1e-5)


def test_eight_schools_centered_includes_log_jacobian_of_tau(targets):
    target = targets["eight_schools_centered"]
    mu, log_tau, theta = 1.5, 0.7, np.linspace(-2, 3, 8)
    tau = np.exp(log_tau)
    z = _named_z(target, mu=mu, tau=log_tau, theta=theta)
    expected_prior = (
        stats.norm.logpdf(mu, 0, 5)
        + stats.halfcauchy.logpdf(tau, scale=5)
        + log_tau
        + stats.norm.logpdf(theta, mu, tau).sum()
    )
    expected_lik = stats.norm.logpdf(eight_schools.Y, theta, eight_schools.SIGMA).sum()
    np.testing.assert_allclose(target.log_prior(z), expected_prior, rtol=1e-5)
    np.testing.assert_allclose(target.log_likelihood(z), expected_lik, rtol=1e-5)


def test_eight_schools_noncentered_deterministic_site(targets):
    target = targets["eight_schools"]
    z = _named_z(target, mu=1.0, tau=0.0, theta_tilde=np.arange(8.0) / 8)
    values = target.constrain(z)
    np.testing.assert_allclose(values["theta"], 1.0 + 1.0 * np.arange(8) / 8, rtol=1e-6)
    expected = (
        stats.norm.logpdf(1.0, 0, 5)
        + stats.halfcauchy.logpdf(1.0, scale=5)
        + 0.0
        + stats.norm.logpdf(np.arange(8) / 8).sum()
        + stats.norm.logpdf(eight_schools.Y, values["theta"], eight_schools.SIGMA).sum()
    )
    np.testing.assert_allclose(target.log_density(z), expected, rtol=1e-5)


def test_funnel_and_energy_models_match_their_formulas(targets):
    target = targets["funnel"]
    v, x = 0.8, np.linspace(-1, 1, 9)
    z = _named_z(target, v=v, x=x)
    expected = stats.norm.logpdf(v, 0, 3) + stats.norm.logpdf(x, 0, np.exp(v / 2)).sum()
    np.testing.assert_allclose(target.log_density(z), expected, rtol=1e-5)
    point = jnp.array([0.3, -1.2])
    for index, energy in enumerate([energies.u1, energies.u2, energies.u3, energies.u4], 1):
        target = targets[f"rezende_u{index}"]
        np.testing.assert_allclose(target.log_density(point), -energy(point), rtol=1e-5)
        assert target.log_prior(point) == 0.0


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_log_density_equals_numpyro(name, zoo, targets):
    """Ours equals −potential_energy (Jacobians included) and, less the Jacobians, log_density."""
    example, target = zoo[name], targets[name]
    z = target.init(jax.random.PRNGKey(1), 1)[0]
    free = target.unravel(z)
    expected = -potential_energy(example.model, example.args, example.kwargs, free)
    np.testing.assert_allclose(target.log_density(z), expected, rtol=2e-5, atol=1e-4)
    values = target.constrain(z)
    latent = {k: values[k] for k in target.latent_sites}
    plain, _ = numpyro_log_density(example.model, example.args, example.kwargs, latent)
    jacobian = sum(v for k, v in target.site_log_probs(z).items() if k.endswith("_log_det"))
    np.testing.assert_allclose(target.log_density(z) - jacobian, plain, rtol=2e-5, atol=1e-4)


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_constrain_unconstrain_round_trip_batched(name, targets):
    target = targets[name]
    z = target.init(jax.random.PRNGKey(2), 3)
    values = target.constrain(z)
    for site, info in target.latent_sites.items():
        assert values[site].shape == (3,) + info.shape
    np.testing.assert_allclose(target.unconstrain(values), z, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("name", "batch_size"), [("linear_regression", 10), ("beta_binomial", 5), ("normal_normal", 4)]
)
def test_minibatch_log_density_averages_to_full(name, batch_size, targets):
    target = targets[name]
    z = target.init(jax.random.PRNGKey(3), 1)[0]
    batches = jnp.arange(target.num_data).reshape(-1, batch_size)
    fn = jax.jit(target.minibatch_log_density)
    values = jnp.stack([fn(z, target.batch(index)) for index in batches])
    np.testing.assert_allclose(values.mean(), target.log_density(z), rtol=1e-5)
    assert values.std() > 0  # the batches really differ


def test_minibatch_does_not_scale_sites_without_a_data_axis():
    def model(y, g=0.3):
        mu = pi.sample("mu", dist.Normal(0, 1))
        pi.sample("g", dist.Normal(mu, 1), obs=g)
        with pi.plate("data", y.shape[0]):
            pi.sample("y", dist.Normal(mu, 1), obs=y)

    y = jnp.linspace(-1, 1, 6)
    target = pi.compile(model, y, data="y")
    z = jnp.array([0.2])
    halves = [
        target.minibatch_log_density(z, {"y": y[:3]}),
        target.minibatch_log_density(z, (y[3:],)),
    ]
    np.testing.assert_allclose(np.mean(halves), target.log_density(z), rtol=1e-6)


def test_data_outside_every_plate_is_refused_at_compile():
    """The counterexample of issue 10: an observation whose data axis is an event axis would get
    no N/B scale on a minibatch (mean of two half-batch densities −6.80 against −12.64)."""

    def model(y):
        mu = pi.sample("mu", dist.Normal(0, 1))
        pi.sample("y", dist.Normal(mu, 1).expand([y.shape[0]]).to_event(1), obs=y)

    y = jnp.linspace(-1, 1, 10)
    with pytest.raises(pi.DataError, match="'y'.*put it in a plate over the data"):
        pi.compile(model, y, data=("y",))
    assert pi.compile(model, y).dim == 1  # without data= nothing is minibatched: fine


def test_plate_sizes_fixed_by_constants_are_refused_with_the_remedy():
    def model(y):
        mu = pi.sample("mu", dist.Normal(0, 1))
        with pi.plate("data", 10):
            pi.sample("y", dist.Normal(mu, 1), obs=y)

    with pytest.raises(pi.DataError, match="keeps size 10.*take plate sizes from the data"):
        pi.compile(model, jnp.linspace(-1, 1, 10), data=("y",))


def test_minibatch_with_two_plates_scales_only_the_data_plate():
    """A plate over 3 groups (not data) and a plate over the 12 data points: a batch's sites in the
    data plate get N/B, the group-level observations are counted once, and the average over a
    partition of the data equals the full log density; the data plate is the one found."""

    def model(group, y, group_obs):
        mu = pi.sample("mu", dist.Normal(0, 1))
        with pi.plate("groups", 3):
            offset = pi.sample("offset", dist.Normal(0, 1))
            pi.sample("group_obs", dist.Normal(mu + offset, 2.0), obs=group_obs)
        with pi.plate("data", y.shape[0]):
            pi.sample("y", dist.Normal(mu + offset[group], 1.0), obs=y)

    group = jnp.arange(12) % 3
    y = jnp.linspace(-2, 2, 12)
    target = pi.compile(model, group, y, jnp.array([0.5, -0.2, 1.0]), data=("group", "y"))
    assert target.data_plates == frozenset({"data"})
    z = jnp.array([0.3, -0.4, 0.1, 0.8])
    batches = [target.batch(jnp.arange(12)[i::4]) for i in range(4)]
    values = [target.minibatch_log_density(z, b) for b in batches]
    np.testing.assert_allclose(np.mean(values), target.log_density(z), rtol=1e-6)
    assert np.std(values) > 0.1
    # By hand: the 3 group observations once, the batch's 3 data points times 12/3.
    mu, offset = 0.3, np.array([-0.4, 0.1, 0.8])
    batch = np.arange(12)[0::4]
    expected = (
        stats.norm.logpdf(mu)
        + stats.norm.logpdf(offset).sum()
        + stats.norm.logpdf([0.5, -0.2, 1.0], mu + offset, 2.0).sum()
        + 4 * stats.norm.logpdf(np.asarray(y)[batch], mu + offset[batch % 3], 1.0).sum()
    )
    np.testing.assert_allclose(values[0], expected, rtol=1e-5)


def test_condition_returns_a_new_target_bound_to_the_new_data():
    """`condition` builds a new Target: its `init` checks finiteness against the new data (a
    shallow copy once kept the old data's compiled init)."""

    def model(y):
        scale = pi.sample("scale", dist.Uniform(0.0, 10.0))
        with pi.plate("data", y.shape[0]):
            pi.sample("y", dist.Uniform(-scale, scale), obs=y)

    target = pi.compile(model, jnp.array([0.5, -0.5]), data=("y",))
    assert target.init(0, 1).shape == (1, 1)
    far = target.condition({"y": jnp.array([8.0, -8.0])})
    assert far is not target and far.data["y"][0] == pytest.approx(8.0)
    values = far.constrain(far.init(0, 64))["scale"]
    assert np.all(np.asarray(values) > 8.0)  # init redrew until the new data were in support
    assert target.data["y"][0] == pytest.approx(0.5)  # the original is untouched


def test_minibatch_indices_work_under_jit_with_traced_indices(targets):
    target = targets["linear_regression"]
    z = jnp.zeros(target.dim)

    @jax.jit
    def at(key):
        index = jax.random.choice(key, target.num_data, (8,), replace=False)
        return target.minibatch_log_density(z, target.batch(index))

    assert np.isfinite(at(jax.random.PRNGKey(0)))


def test_init_survives_heavy_tailed_prior_with_hard_constraint():
    def model():
        x = pi.sample("x", dist.Cauchy(0.0, 1.0))
        pi.factor("inside", jnp.where(jnp.abs(x) < 0.3, 0.0, -jnp.inf))

    target = pi.compile(model)
    z = target.init(0, 64)
    assert np.all(np.abs(np.asarray(z)) < 0.3)


@pytest.mark.slow
def test_init_redraws_until_the_stochastic_volatility_likelihood_is_finite(targets):
    """About 18 % of this model's prior draws give a NaN or −inf likelihood (Cauchy priors send
    the log-volatility to ±1e5): every starting point has a finite density and gradient."""
    target = targets["stochastic_volatility"]
    prior = jax.jit(lambda key: target.log_likelihood(target.draw_z(key)))
    draws = jax.vmap(prior)(jax.random.split(jax.random.PRNGKey(1), 256))
    assert not np.all(np.isfinite(np.asarray(draws)))  # the test has teeth
    z = target.init(0, 256)
    value_and_grad = jax.jit(jax.vmap(jax.value_and_grad(target.log_density)))
    for values in value_and_grad(z):
        assert np.all(np.isfinite(np.asarray(values)))


def test_prior_predictive_moments_match_normal_normal():
    n = 4000
    target = pi.compile(conjugate.normal_normal, y=jnp.zeros(3))
    params, observations = target.simulate(jax.random.PRNGKey(4), n)
    assert params["mu"].shape == (n,) and observations["y"].shape == (n, 3)
    # y_i = mu + eps: mean 0, variance 2, covariance 1 between coordinates.
    y = np.asarray(observations["y"], np.float64)
    assert abs(y.mean()) < 4 * np.sqrt(2.0 / n)
    assert abs(y[:, 0].var() - 2.0) < 4 * 2.0 * np.sqrt(2.0 / n)
    assert abs(np.mean(y[:, 0] * y[:, 1]) - 1.0) < 4 * np.sqrt(3.0 / n)


def test_sample_prior_includes_deterministic_sites(targets):
    draws = targets["eight_schools"].sample_prior(jax.random.PRNGKey(5), 7)
    assert draws["theta"].shape == (7, 8)
    np.testing.assert_allclose(
        draws["theta"],
        draws["mu"][:, None] + draws["tau"][:, None] * draws["theta_tilde"],
        rtol=1e-5,
    )


def test_beta_prior_draws_have_the_prior_mean():
    n = 4000
    target = pi.compile(conjugate.beta_binomial, jnp.ones(2), successes=jnp.ones(2), a=2.0, b=3.0)
    p = np.asarray(target.sample_prior(jax.random.PRNGKey(6), n)["p"], np.float64)
    sd = np.sqrt(2 * 3 / (25 * 6))
    assert abs(p.mean() - 0.4) < 4 * sd / np.sqrt(n)


# -- errors -----------------------------------------------------------------------------------------


def test_discrete_latent_is_named_when_a_gradient_method_is_asked():
    def model():
        k = pi.sample("k", dist.Poisson(3.0))
        pi.sample("y", dist.Normal(k, 1.0), obs=2.0)

    target = pi.compile(model)
    assert target.discrete_sites == ("k",)
    with pytest.raises(pi.DiscreteLatentError, match="'k'"):
        pi.mcmc(target, key=0, num_draws=10, num_warmup=10)
    with pytest.raises(pi.DiscreteLatentError, match="'k'"):
        target.log_density(jnp.zeros(0))
    assert target.sample_prior(0, 5)["k"].shape == (5,)


@pytest.mark.filterwarnings(
    "ignore:Out-of-support values:UserWarning"
)  # NumPyro's own, at trace time
def test_nonfinite_density_everywhere_names_the_site():
    def model():
        rate = pi.sample("rate", dist.Gamma(2.0, 2.0))
        pi.sample("waiting_time", dist.Exponential(rate), obs=-1.0)

    target = pi.compile(model)
    with pytest.raises(pi.NonFiniteError, match="'waiting_time'"):
        target.init(0, 2, max_tries=5)


def test_inconsistent_data_lengths_are_reported():
    with pytest.raises(pi.DataError, match="leading"):
        pi.compile(conjugate.linear_regression, jnp.ones((5, 2)), y=jnp.ones(4), data=("x", "y"))


def test_unknown_data_name_is_reported():
    with pytest.raises(pi.DataError, match="'X'|\\['X'\\]"):
        pi.compile(conjugate.linear_regression, jnp.ones((5, 2)), y=jnp.ones(5), data=("X", "y"))


def test_wrong_model_arguments_are_reported():
    with pytest.raises(pi.ModelError, match="linear_regression"):
        pi.compile(conjugate.linear_regression, jnp.ones((5, 2)), jnp.ones(5), jnp.ones(5))


def test_minibatch_without_data_and_improper_prior_are_reported(targets):
    with pytest.raises(pi.DataError, match="data="):
        targets["funnel"].minibatch_log_density(jnp.zeros(10), {})
    with pytest.raises(pi.ModelError, match="improper"):
        targets["rezende_u1"].sample_prior(0, 2)


def test_wrong_z_shape_is_reported(targets):
    with pytest.raises(pi.DataError, match=r"\(\.\.\., 3\)"):
        targets["linear_regression"].log_density(jnp.zeros(4))


def test_log_functions_map_over_leading_axes_like_constrain(targets):
    target = targets["linear_regression"]
    z = target.init(0, 6).reshape(2, 3, target.dim)
    for fn in (target.log_density, target.log_prior, target.log_likelihood):
        batched = fn(z)
        assert batched.shape == (2, 3)
        np.testing.assert_allclose(batched[1, 2], fn(z[1, 2]), rtol=1e-6)


def test_per_datum_latents_refuse_minibatching():
    target = pi.compile(
        eight_schools.centered, eight_schools.SIGMA, y=eight_schools.Y, data=("sigma", "y")
    )
    with pytest.raises(pi.ModelError, match="'theta'"):
        target.minibatch_log_density(jnp.zeros(target.dim), target.batch(jnp.arange(2)))


@pytest.mark.slow
def test_target_functions_work_in_float64():
    script = textwrap.dedent(
        """
        import jax, jax.numpy as jnp
        jax.config.update("jax_enable_x64", True)
        from probinfer import models
        for name in ["eight_schools", "linear_regression", "beta_binomial"]:
            t = models.get(name).compile()
            z = t.init(0, 2)
            assert z.dtype == jnp.float64, z.dtype
            for fn in (t.log_density, t.log_prior, t.log_likelihood):
                v = jax.jit(jax.vmap(fn))(z)
                assert v.dtype == jnp.float64 and bool(jnp.all(jnp.isfinite(v)))
            g = jax.grad(t.log_density)(z[0])
            assert g.dtype == jnp.float64
            assert t.unconstrain(t.constrain(z)).dtype == jnp.float64
            if t.data_names:
                b = t.batch(jnp.arange(2))
                assert t.minibatch_log_density(z[0], b).dtype == jnp.float64
        print("ok")
        """
    )
    # On a GPU this process already holds most of the memory: let the child allocate on demand.
    env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"


def test_log_likelihood_per_datum_sums_to_the_likelihood():
    target = pi.models.get("linear_regression").compile()
    z = target.init(0, 3)
    per_datum = jax.vmap(target.log_likelihood_per_datum)(z)
    assert per_datum.shape == (3, target.num_data)
    np.testing.assert_allclose(per_datum.sum(1), jax.vmap(target.log_likelihood)(z), rtol=1e-5)


def test_two_moons_noise_is_a_normalised_density_matching_its_simulator():
    """The closed-form two-moons likelihood integrates to 1 (grid over its support), and the
    simulator's draws have the mean the density gives (within 4 standard errors)."""
    from probinfer.models.sbi import TwoMoonsNoise

    noise = TwoMoonsNoise(jnp.array([0.3, -0.2]))
    a = np.linspace(-0.6, 0.6, 1201)
    cell = (a[1] - a[0]) ** 2
    grid = np.stack(np.meshgrid(a, a), -1).reshape(-1, 2)
    density = np.exp(np.asarray(noise.log_prob(jnp.asarray(grid, jnp.float32)), np.float64))
    np.testing.assert_allclose(density.sum() * cell, 1.0, atol=0.01)
    draws = np.asarray(noise.sample(jax.random.PRNGKey(0), (20_000,)))
    assert np.all(np.isfinite(np.asarray(noise.log_prob(jnp.asarray(draws)))))
    mean = (density[:, None] * grid).sum(0) * cell
    se = draws.std(0) / np.sqrt(draws.shape[0])
    assert np.all(np.abs(draws.mean(0) - mean) < 4 * se + 1e-3)


def _plate_model(y, keep=True):
    mu = pi.sample("mu", dist.Normal(0.0, 1.0))
    with pi.plate("data", y.shape[0]):
        pi.sample("y", dist.Normal(mu, 1.0).mask(keep), obs=y)


def test_nan_or_infinite_observations_are_named_at_compile_time():
    y = jnp.array([0.1, jnp.nan, 0.3, -jnp.inf, 0.5])
    with pytest.raises(pi.DataError, match=r"'y' .* 1 NaN and 1 infinite value \(index 1, 3\)"):
        pi.compile(_plate_model, y)
    # Placeholders a mask switches off are the user's business, and the density is finite.
    keep = jnp.array([True, False, True, False, True])
    target = pi.compile(_plate_model, y, keep)
    assert np.isfinite(float(target.log_density(jnp.zeros(1))))
    with pytest.raises(pi.DataError, match=r"'y' .* 1 NaN \(index 1\)"):
        pi.compile(_plate_model, y, jnp.array([True, True, True, False, True]))


def test_uniform_starts_stay_in_the_box_where_prior_draws_of_a_cauchy_do_not():
    def cauchy():
        pi.sample("x", dist.Cauchy(0.0, 10.0).expand([50]).to_event(1))

    target = pi.compile(cauchy)
    uniform = np.asarray(target.init(0, 20, strategy="uniform"))
    assert np.all(np.abs(uniform) < 2.0) and uniform.std() > 0.5  # U(-2, 2): sd 1.15
    # 1,000 Cauchy(0, 10) draws: P(|x| > 2) = 0.87 each, so some land outside the box.
    assert np.any(np.abs(np.asarray(target.init(0, 20, strategy="prior"))) > 2.0)
    with pytest.raises(pi.DataError, match="unknown starting-point strategy 'mode'.*'pathfinder'"):
        pi.mcmc(target, key=0, init="mode")


def _mean_model(y):
    mu = pi.sample("mu", dist.Normal(0.0, 1.0))
    with pi.plate("data", y.shape[0]):
        pi.sample("y", dist.Normal(mu, 1.0), obs=y)


_CONDITIONED_RUNS = {
    "mcmc": lambda t: pi.mcmc(t, key=0, num_chains=2, num_warmup=200, num_draws=300),
    "sgmcmc": lambda t: pi.sgmcmc(t, key=0, num_steps=1000, batch_size=4, num_chains=2),
    "smc": lambda t: pi.smc(t, key=0, num_particles=256),
    "coin_svgd": lambda t: pi.coin_svgd(t, key=0, num_particles=64, num_steps=300),
}


@pytest.mark.parametrize("runner", list(_CONDITIONED_RUNS))
def test_conditioned_targets_share_one_compiled_program_and_read_their_own_data(runner):
    """Issue 31's defect: condition() made a Target whose compiled programs were cached apart
    from its parent's, so calibrate's one-at-a-time path compiled once per simulated data set.
    The data are now an argument of the programs (Target.jit). The danger of sharing is a
    program that reads the first target's data for the second: the two posteriors (y = +1 and
    y = -1, conjugate: mean ±5/6, sd 1/√6) are 4 sd apart, so an error under half a sd tells
    them apart with room for these short runs' Monte Carlo error and SG-MCMC's step bias."""
    from probinfer import programs as cache

    target = pi.compile(_mean_model, np.zeros(5, np.float32), data="y")
    sd = 1 / np.sqrt(6)
    programs = []
    for value in (1.0, -1.0):
        conditioned = target.condition({"y": np.full(5, value, np.float32)})
        post = _CONDITIONED_RUNS[runner](conditioned)
        mean = float(post.summary().loc["mu", "mean"])
        assert abs(mean - 5 * value / 6) < 0.5 * sd, (runner, value, mean)
        assert conditioned not in cache._PROGRAMS  # nothing cached per conditioned target
        programs.append(dict(cache._PROGRAMS[target.program_key]))
    assert programs[0].keys() == programs[1].keys()  # the second data set compiled nothing new
    assert all(programs[0][k] is programs[1][k] for k in programs[0])


def test_per_site_log_prob_terms_sum_to_the_log_density_and_trace_takes_new_data():
    def model(x, y=None):
        scale = pi.sample("scale", dist.HalfNormal(1.0))
        w = pi.sample("w", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        with pi.plate("data", x.shape[0]):
            pi.sample("y", dist.Normal(x @ w, scale), obs=y)

    x = np.random.default_rng(0).normal(size=(6, 2)).astype(np.float32)
    y = np.arange(6, dtype=np.float32)
    target = pi.compile(model, x, y=y, data=("x", "y"))
    z = jnp.array([0.3, -0.5, 1.2])
    terms, _ = target.log_prob_terms(target.unravel(z))
    assert terms["y"].shape == (6,)  # one term per data point: unsummed
    total = sum(float(jnp.sum(v)) for v in terms.values())
    np.testing.assert_allclose(total, float(target.log_density(z)), rtol=1e-5)
    # New arguments replace the compiled ones: the likelihood of two test rows.
    tr = target.trace(target.unravel(z), data={"x": x[:2] * 0, "y": y[:2]})
    np.testing.assert_allclose(np.asarray(tr["y"]["fn"].mean), 0.0)
    assert tr["y"]["value"].shape == (2,) and target.batched_sites == {"y"}


@pytest.mark.slow
def test_data_rows_sharded_over_four_devices_give_one_devices_gradients(on_cpu_devices):
    """``shard_data`` on 4 simulated CPU devices: every device holds a quarter of the rows, the
    compiled gradient adds the devices' partial sums (an all-reduce, no gather of the data), the
    values equal one device's up to float rounding, a runner runs on it, and rows that do not
    split evenly get one sentence."""
    script = textwrap.dedent(
        """
        import json
        import jax, numpy as np
        import probinfer as pi
        from probinfer.errors import DataError
        from probinfer.models.logistic_regression import logistic_regression
        rng = np.random.default_rng(0)
        x = rng.normal(size=(400, 5)).astype(np.float32)
        y = (rng.uniform(size=400) < 0.5).astype(np.float32)
        target = pi.compile(logistic_regression, x, y=y, data=("x", "y"))
        sharded = target.shard_data()
        z = jax.random.normal(jax.random.key(0), (8, target.dim))
        make = lambda t: jax.vmap(jax.grad(t.log_density))
        one, four = (np.asarray(t.jit(make)(z)) for t in (target, sharded))
        program = sharded.jit(make)
        text = program._jitted.lower(program._data, z).compile().as_text()
        post = pi.mcmc(sharded, key=0, num_chains=2, num_warmup=100, num_draws=100,
                       progress=False)
        try:
            pi.compile(logistic_regression, x[:398], y=y[:398], data=("x", "y")).shard_data()
            uneven = ""
        except DataError as error:
            uneven = str(error)
        print(json.dumps({
            "devices": len(sharded.data["x"].sharding.device_set),
            "error": float(np.max(np.abs(one - four) / (np.abs(one) + 1e-3))),
            "all_reduce": "all-reduce" in text, "all_gather": "all-gather" in text,
            "finite": bool(np.isfinite(post.mean()["w"]).all()), "uneven": uneven,
        }))
        """
    )
    out = on_cpu_devices(script, 4)
    assert out["devices"] == 4
    assert out["error"] < 1e-5  # float32 sums of 400 rows in another order
    assert out["all_reduce"] and not out["all_gather"]
    assert out["finite"]
    assert "do not split evenly over 4 devices" in out["uneven"]


def test_data_blocks_give_the_same_density_in_a_fraction_of_the_memory():
    """``block_data``: the log density and its gradient summed over blocks of rows (an uneven
    remainder, one block, blocks of 7) equal the unblocked ones up to float32 rounding, and the
    compiled gradient's scratch memory shrinks from N rows' intermediates to a block's."""
    from probinfer.models.logistic_regression import logistic_regression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 5)).astype(np.float32)
    y = (rng.uniform(size=1000) < 0.5).astype(np.float32)
    target = pi.compile(logistic_regression, x, y=y, data=("x", "y"))
    z = jax.random.normal(jax.random.key(0), (8, target.dim))
    make = lambda t: jax.vmap(jax.value_and_grad(t.log_density))  # noqa: E731
    value, grad = target.jit(make)(z)
    for size in (64, 1000, 7):
        blocked_value, blocked_grad = target.block_data(size).jit(make)(z)
        np.testing.assert_allclose(blocked_value, value, rtol=1e-5)
        np.testing.assert_allclose(blocked_grad, grad, rtol=1e-4, atol=1e-3)
    with pytest.raises(pi.DataError, match="block_size must be between 1 and the 1000 rows"):
        target.block_data(0)

    n = 100_000
    x = rng.normal(size=(n, 5)).astype(np.float32)
    large = pi.compile(logistic_regression, x, y=np.zeros(n, np.float32), data=("x", "y"))

    def scratch(t):
        program = t.jit(lambda t: jax.vmap(jax.grad(t.log_density)))
        compiled = program._jitted.lower(program._data, z).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    assert scratch(large.block_data(1000)) < scratch(large) / 4
