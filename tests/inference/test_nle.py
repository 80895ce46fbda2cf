"""Neural likelihood estimation: the learned likelihood as a site of another model.

The accuracy check (slow tier) is the issue's: a hierarchical model whose per-group likelihood is
known in closed form, NUTS with the likelihood learned from the per-group simulator alone against
NUTS with the true one. Both are Monte Carlo estimates, so the bound on each posterior mean is the
estimator's accuracy goal (0.1 posterior sd) plus three standard errors of the difference of two
independent NUTS means (from each coordinate's bulk ESS).
"""

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import probinfer as pi
from probinfer import DataError, dist
from probinfer.inference.amortized import LearnedLikelihood, LikelihoodEstimator

LOADINGS = jnp.array([1.0, 0.5])
NOISE = 0.5


def trial(x=None):
    """One group's simulator: θ ~ N(0, 2²), x ~ N(θ · (1, 0.5), 0.5² I)."""
    theta = pi.sample("theta", dist.Normal(0.0, 2.0))
    pi.sample("x", dist.Normal(theta * LOADINGS, NOISE).to_event(1), obs=x)


TRIAL_KWARGS = {"x": jnp.zeros(2)}


@pytest.fixture(scope="module")
def tiny():
    """A barely trained estimator for the structural tests (shapes, files, errors)."""
    return pi.nle(
        trial,
        key=0,
        num_simulations=600,
        num_steps=60,
        batch_size=100,
        flow="realnvp",
        num_layers=1,
        progress=False,
        model_kwargs=TRIAL_KWARGS,
    )


def hierarchical(x, likelihood=None):
    """G groups: μ ~ N(0, 1), θ_g ~ N(μ, 0.5²), x_g from the learned or the true likelihood."""
    mu = pi.sample("mu", dist.Normal(0.0, 1.0))
    with pi.plate("groups", x.shape[0]):
        theta = pi.sample("theta", dist.Normal(mu, 0.5))
        if likelihood is None:
            likelihood = dist.Normal(theta[:, None] * LOADINGS, NOISE).to_event(1)
        else:
            likelihood = likelihood.likelihood(theta)
        pi.sample("x", likelihood, obs=x)


def groups(num_groups=8, seed=0):
    rng = np.random.default_rng(seed)
    theta = 0.5 + 0.5 * rng.normal(size=num_groups)
    x = theta[:, None] * np.asarray(LOADINGS) + NOISE * rng.normal(size=(num_groups, 2))
    return jnp.asarray(x, jnp.float32)


def test_the_learned_likelihood_is_a_site_with_batch_and_event_shapes(tiny):
    theta = jnp.linspace(-1.0, 1.0, 5)
    likelihood = tiny.likelihood(theta)
    assert isinstance(likelihood, LearnedLikelihood)
    assert likelihood.batch_shape == (5,) and likelihood.event_shape == (2,)
    x = jnp.stack([theta, -theta], axis=-1)
    log_q = likelihood.log_prob(x)
    assert log_q.shape == (5,)
    one_by_one = [tiny.log_likelihood({"theta": t}, xi) for t, xi in zip(theta, x, strict=True)]
    np.testing.assert_allclose(log_q, np.asarray(one_by_one), rtol=1e-5, atol=1e-5)
    assert likelihood.sample(jax.random.PRNGKey(0), (3,)).shape == (3, 5, 2)
    assert tiny.simulate(1, 0.3, n=4)["x"].shape == (4, 2)
    # In a compiled model: the log density is the prior plus the learned log likelihood.
    x_groups = groups(4)
    target = pi.compile(hierarchical, x_groups, likelihood=tiny)
    z = target.init(jax.random.PRNGKey(1), 1)[0]
    values = target.constrain(z)
    expected = (
        dist.Normal(0.0, 1.0).log_prob(values["mu"])
        + dist.Normal(values["mu"], 0.5).log_prob(values["theta"]).sum()
        + tiny.log_likelihood(values["theta"], x_groups).sum()
    )
    np.testing.assert_allclose(target.log_prior(z) + target.log_likelihood(z), expected, rtol=1e-5)
    # The simulator's own sites stay inside: the model sees only its own.
    assert set(target.latent_sites) == {"mu", "theta"}
    assert target.simulate(jax.random.PRNGKey(2), 3)[1]["x"].shape == (3, 4, 2)


def test_save_and_load_give_the_same_likelihood(tmp_path, tiny):
    path = tiny.save(tmp_path / "nle.msgpack")
    for loaded in (
        LikelihoodEstimator.load(path, trial, model_kwargs=TRIAL_KWARGS),
        pi.load(path, trial, model_kwargs=TRIAL_KWARGS),
    ):
        assert isinstance(loaded, LikelihoodEstimator)
        theta, x = jnp.linspace(-1, 1, 4), jnp.ones((4, 2))
        np.testing.assert_array_equal(
            np.asarray(loaded.log_likelihood(theta, x)), np.asarray(tiny.log_likelihood(theta, x))
        )
    with pytest.raises(DataError, match="pass the model it was trained on"):
        pi.load(path)


def test_bad_input_gets_one_clear_sentence(tiny):
    with pytest.raises(DataError, match=r"observed site 'x' has shape \(2,\)"):
        tiny.log_likelihood(0.0, jnp.zeros(3))
    with pytest.raises(DataError, match="lacks latent site"):
        tiny.likelihood({"mu": 0.0})
    with pytest.raises(DataError, match="one data set or one per point"):
        tiny.log_likelihood(jnp.zeros(3), jnp.zeros((4, 2)))


@pytest.mark.slow  # two more trainings (compiles): 7 s
def test_several_observed_sites_and_whole_number_data():
    """A simulator with two observed sites has no single-site distribution (one sentence: use a
    factor) but a joint log likelihood; whole-number simulations get a warning."""

    def two_sites(a=None, b=None):
        mu = pi.sample("mu", dist.Normal(0.0, 1.0))
        pi.sample("a", dist.Normal(mu, 1.0), obs=a)
        pi.sample("b", dist.Normal(mu, 1.0), obs=b)

    small = dict(num_simulations=100, num_steps=1, flow="realnvp", num_layers=1, progress=False)
    est = pi.nle(two_sites, key=0, model_kwargs={"a": 0.0, "b": 0.0}, **small)
    with pytest.raises(DataError, match="pi.factor"):
        est.likelihood(0.0)
    assert est.log_likelihood(jnp.zeros(3), {"a": 0.1, "b": 0.2}).shape == (3,)

    def counts(k=None):
        rate = pi.sample("rate", dist.Gamma(2.0, 1.0))
        pi.sample("k", dist.Poisson(rate), obs=k)

    with pytest.warns(RuntimeWarning, match="whole numbers"):
        pi.nle(counts, key=0, model_kwargs={"k": 1.0}, **small)


def _mean_and_se(post, site):
    draws = np.asarray(post.draws[site])  # (chains, draws, *shape)
    flat = draws.reshape(draws.shape[0], draws.shape[1], -1)
    ess = np.array([float(az.ess(flat[..., i])) for i in range(flat.shape[-1])])
    sd = flat.reshape(-1, flat.shape[-1]).std(0)
    return flat.reshape(-1, flat.shape[-1]).mean(0), sd, sd / np.sqrt(ess)


@pytest.mark.slow
def test_nuts_with_the_learned_likelihood_matches_nuts_with_the_true_one():
    """The learned per-group likelihood, trained on the simulator alone (default settings),
    inside a hierarchical model: every posterior mean within 0.1 posterior sd (plus Monte Carlo
    error) of NUTS with the true likelihood, every sd within 15 %."""
    est = pi.nle(trial, key=0, progress=False, model_kwargs=TRIAL_KWARGS)
    x = groups()
    learned = pi.mcmc(pi.compile(hierarchical, x, likelihood=est), key=1, progress=False)
    exact = pi.mcmc(pi.compile(hierarchical, x), key=2, progress=False)
    for site in ("mu", "theta"):
        mean_l, sd_l, se_l = _mean_and_se(learned, site)
        mean_e, sd_e, se_e = _mean_and_se(exact, site)
        bound = 0.1 * sd_e + 3 * np.hypot(se_l, se_e)
        assert np.all(np.abs(mean_l - mean_e) <= bound), (site, mean_l, mean_e, bound)
        assert np.all(np.abs(sd_l / sd_e - 1) <= 0.15), (site, sd_l, sd_e)


@pytest.mark.slow
def test_the_posterior_of_one_data_set_matches_the_conjugate_one():
    """``posterior(x)``: NUTS on the prior times the learned likelihood, against the exact normal
    posterior of θ given one trial (prior N(0, 2²), x = θ a + ε)."""
    est = pi.nle(trial, key=3, progress=False, model_kwargs=TRIAL_KWARGS)
    x = jnp.array([0.8, 0.2])
    precision = 1 / 2.0**2 + float(LOADINGS @ LOADINGS) / NOISE**2
    mean = float(LOADINGS @ x) / NOISE**2 / precision
    sd = precision**-0.5
    post = est.posterior(x, key=4, n=4000)
    got, got_sd, se = _mean_and_se(post, "theta")
    assert abs(got[0] - mean) <= 0.1 * sd + 3 * se[0], (got, mean, sd)
    assert abs(got_sd[0] / sd - 1) <= 0.15


@pytest.mark.slow
def test_iid_trials_share_one_learned_trial_likelihood():
    """``iid=True``: the flow is one trial's; a data set's log likelihood is the sum over its
    trials (so it ignores their order) and a simulated data set has the plate's shape."""

    def trials(y=None):
        mu = pi.sample("mu", dist.Normal(0.0, 1.0))
        with pi.plate("trials", 6):
            pi.sample("y", dist.Normal(mu, 1.0), obs=y)

    small = dict(num_simulations=200, num_steps=5, flow="realnvp", num_layers=1, progress=False)
    est = pi.nle(trials, key=0, iid=True, model_kwargs={"y": jnp.zeros(6)}, **small)
    assert est.flow.dim == 1 and est.settings["iid"]
    y = jnp.linspace(-1.0, 2.0, 6)
    np.testing.assert_allclose(
        est.log_likelihood(0.3, y), est.log_likelihood(0.3, y[::-1]), rtol=1e-5
    )
    u = (y[:, None] - est.layout.loc) / est.layout.scale  # each trial alone, through the flow
    one_trial = est.flow.log_prob(est.params["flow"], u, est._context(jnp.full((6, 1), 0.3)))
    one_trial = one_trial - jnp.log(est.layout.scale).sum()
    np.testing.assert_allclose(est.log_likelihood(0.3, y), one_trial.sum(), rtol=1e-5)
    assert est.simulate(1, jnp.zeros(4))["y"].shape == (4, 6)
    assert est.likelihood(jnp.zeros(3)).log_prob(jnp.zeros((3, 6))).shape == (3,)
