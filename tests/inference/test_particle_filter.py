"""Particle filters against the Kalman filter and the RTS smoother on a linear-Gaussian model."""

import jax.numpy as jnp
import numpy as np
import pytest

from probinfer import NonFiniteError, ProbinferError
from probinfer.inference.smc import StateSpaceModel, backward_sample, particle_filter
from probinfer.models.state_space import LinearGaussian, NonlinearGrowth, StochasticVolatility

MODEL = LinearGaussian.default()
STATES, Y = MODEL.simulate(0, 40)
EXACT, MEANS, COVS = MODEL.kalman(Y)
SSM = MODEL.feynman_kac()


def _likelihood_ratios(guided, num_runs=200, num_particles=100):
    log_lik = np.array(
        [
            float(
                particle_filter(
                    SSM, Y, key=k, num_particles=num_particles, guided=guided
                ).log_likelihood
            )
            for k in range(num_runs)
        ]
    )
    return np.exp(log_lik - EXACT), log_lik


@pytest.mark.parametrize("guided", [False, True])
def test_likelihood_is_unbiased_on_the_natural_scale(guided):
    ratios, _ = _likelihood_ratios(guided)
    se = ratios.std(ddof=1) / np.sqrt(ratios.size)
    assert abs(ratios.mean() - 1.0) < 3 * se + 1e-3, (ratios.mean(), se)


def test_optimal_proposal_reduces_the_variance():
    _, bootstrap = _likelihood_ratios(False, num_runs=60)
    _, guided = _likelihood_ratios(True, num_runs=60)
    assert guided.var() < bootstrap.var()


def test_filtering_means_match_the_kalman_filter():
    # A filter's particles are correlated (resampling), so the MC error comes from replicates.
    runs = [particle_filter(SSM, Y, key=k, num_particles=1000) for k in range(20)]
    means = np.stack([np.asarray(r.filtering_mean) for r in runs])
    se = means.std(0, ddof=1) / np.sqrt(len(runs))
    z = (means.mean(0) - MEANS) / se
    assert np.abs(z).max() < 5.0, np.abs(z).max()  # 80 comparisons, t with 19 dof
    # The weighted variance is biased low by a factor (1 − Σ W²) = (1 − 1/ESS): allow that, plus
    # 5 replicate standard errors.
    variances = np.stack([np.asarray(r.filtering_var) for r in runs])
    exact = np.diagonal(COVS, axis1=1, axis2=2)
    min_ess = min(float(np.min(r.ess)) for r in runs)
    se = variances.std(0, ddof=1) / np.sqrt(len(runs))
    gap = np.abs(variances.mean(0) - exact)
    assert np.all(gap < 5 * se + exact / min_ess), (gap / se).max()


def test_backward_sampling_matches_the_smoother():
    result = particle_filter(SSM, Y, key=2, num_particles=2000)
    paths = np.asarray(backward_sample(3, result, SSM.log_transition, num_paths=400))
    assert paths.shape == (400, 40, 2)
    means, covs = MODEL.smoother(Y)
    sd = np.sqrt(np.diagonal(covs, axis1=1, axis2=2))
    z = (paths.mean(0) - means) / (sd / np.sqrt(400))
    assert np.abs(z).max() < 5.0, np.abs(z).max()


@pytest.mark.parametrize("model", [StochasticVolatility(), NonlinearGrowth()])
def test_nonlinear_models_have_unbiased_likelihoods_against_a_large_filter(model):
    """No closed form here: 40 filters of 200 particles against the likelihood of 4 filters of
    20,000 (whose log-mean-exp is exact to well under the small filters' error). On the natural
    scale the small filters' mean ratio is 1 within 3 standard errors (plus the reference's)."""
    _, y = model.simulate(0, 30)
    ssm = model.feynman_kac()
    large = np.array(
        [
            float(particle_filter(ssm, y, key=100 + k, num_particles=20_000).log_likelihood)
            for k in range(4)
        ]
    )
    reference = np.log(np.mean(np.exp(large - large.max()))) + large.max()
    small = np.array(
        [float(particle_filter(ssm, y, key=k, num_particles=200).log_likelihood) for k in range(40)]
    )
    ratios = np.exp(small - reference)
    se = ratios.std(ddof=1) / np.sqrt(ratios.size)
    reference_se = large.std(ddof=1) / np.sqrt(large.size)  # relative error of the reference
    assert abs(ratios.mean() - 1.0) < 3 * se + 3 * reference_se, (ratios.mean(), se, reference_se)
    assert particle_filter(ssm, y, key=0, num_particles=50).filtering_mean.shape == (30, 1)


def test_bad_input():
    with pytest.raises(ProbinferError, match="at least 2 particles"):
        particle_filter(SSM, Y, key=0, num_particles=1)
    bootstrap_only = StateSpaceModel(SSM.initial, SSM.transition, SSM.log_potential)
    with pytest.raises(ProbinferError, match="guided=True needs"):
        particle_filter(bootstrap_only, Y, key=0, guided=True)
    nan_model = StateSpaceModel(
        SSM.initial, SSM.transition, lambda x, y, t: jnp.where(t == 3, jnp.nan, 0.0)
    )
    with pytest.raises(NonFiniteError, match="NaN at time step 3"):
        particle_filter(nan_model, Y, key=0, num_particles=10)
    dead = StateSpaceModel(
        SSM.initial, SSM.transition, lambda x, y, t: jnp.where(t == 5, -jnp.inf, 0.0)
    )
    with pytest.raises(NonFiniteError, match="zero potential at time step 5"):
        particle_filter(dead, Y, key=0, num_particles=10)


def test_a_state_space_model_written_in_the_model_language():
    """A 1-D linear-Gaussian model as three small models: same densities as the hand-written
    Feynman–Kac functions, and a filter likelihood at the Kalman value within MC error."""
    import probinfer as pi
    from probinfer import dist

    exact_model = LinearGaussian(
        np.array([[0.8]]), np.eye(1), 0.5 * np.eye(1), 0.5 * np.eye(1), np.zeros(1), np.eye(1)
    )
    _, y = exact_model.simulate(1, 30)

    def initial():
        return pi.sample("x", dist.Normal(0.0, 1.0))

    def transition(x, t):
        return pi.sample("x", dist.Normal(0.8 * x, np.sqrt(0.5)))

    def observation(x, t, y_t):
        pi.sample("y", dist.Normal(x, np.sqrt(0.5)), obs=y_t[0])

    ssm = pi.state_space(initial, transition, observation)
    reference = exact_model.feynman_kac()
    x, x_prev = jnp.array([0.3]), jnp.array([-0.4])
    np.testing.assert_allclose(
        ssm.log_transition(x, x_prev, 1), reference.log_transition(x, x_prev, 1), rtol=1e-5
    )
    np.testing.assert_allclose(
        ssm.log_potential(x, y[0], 0), reference.log_potential(x, y[0], 0), rtol=1e-5
    )
    log_lik = np.array(
        [float(particle_filter(ssm, y, key=k, num_particles=500).log_likelihood) for k in range(10)]
    )
    exact = exact_model.kalman(y)[0]
    # log p̂ is unbiased only on the natural scale: on the log scale it sits ≈ var/2 low (Jensen).
    bias = log_lik.var(ddof=1) / 2
    assert abs(log_lik.mean() + bias - exact) < 3 * log_lik.std(ddof=1) / np.sqrt(10), (
        log_lik,
        exact,
    )
    paths = backward_sample(
        0, particle_filter(ssm, y, key=0, num_particles=200), ssm.log_transition, 5
    )
    assert paths.shape == (5, 30, 1)
