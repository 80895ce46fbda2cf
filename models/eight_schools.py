"""Eight schools (Rubin 1981; Gelman et al., Bayesian Data Analysis §5.5).

Effects ``y_j`` with known standard errors ``σ_j``; ``μ ~ N(0, 5)``, ``τ ~ HalfCauchy(5)``,
``θ_j ~ N(μ, τ)``, ``y_j ~ N(θ_j, σ_j)``. The centred form has a funnel that defeats plain HMC;
the non-centred form (``θ_j = μ + τ θ̃_j``, ``θ̃_j ~ N(0, 1)``) samples cleanly.
"""

import numpy as np

from probinfer.language import deterministic, dist, plate, sample
from probinfer.models._example import Example

__all__ = ["Y", "SIGMA", "centered", "noncentered", "example_centered", "example_noncentered"]

Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


def centered(sigma, y=None):
    """Centred eight schools: ``sigma`` (J,) known standard errors, ``y`` (J,) observed effects."""
    mu = sample("mu", dist.Normal(0.0, 5.0))
    tau = sample("tau", dist.HalfCauchy(5.0))
    with plate("schools", sigma.shape[0]):
        theta = sample("theta", dist.Normal(mu, tau))
        sample("y", dist.Normal(theta, sigma), obs=y)


def noncentered(sigma, y=None):
    """Non-centred eight schools; ``theta`` is a deterministic site."""
    mu = sample("mu", dist.Normal(0.0, 5.0))
    tau = sample("tau", dist.HalfCauchy(5.0))
    with plate("schools", sigma.shape[0]):
        theta_tilde = sample("theta_tilde", dist.Normal(0.0, 1.0))
        theta = deterministic("theta", mu + tau * theta_tilde)
        sample("y", dist.Normal(theta, sigma), obs=y)


def example_centered():
    """The classic data with the centred model."""
    return Example(
        "eight_schools_centered",
        centered,
        (SIGMA,),
        {"y": Y},
        description="eight schools, centred (funnel geometry)",
    )


def example_noncentered():
    """The classic data with the non-centred model (the CLI's default)."""
    return Example(
        "eight_schools", noncentered, (SIGMA,), {"y": Y}, description="eight schools, non-centred"
    )
