"""Simulation-based-inference benchmark tasks (Lueckmann et al. 2021, "Benchmarking
Simulation-Based Inference"), written as models, so every method — NPE, and the likelihood-based
samplers that give the reference posteriors — runs on the same definition.

* ``gaussian_linear``: θ ∈ R¹⁰, θ ~ N(0, 0.1 I), x | θ ~ N(θ, 0.1 I); the posterior is exact
  (:func:`gaussian_linear_posterior`).
* ``slcp`` (simple likelihood, complex posterior): θ ~ U(−3, 3)⁵; four i.i.d. 2-D Gaussian draws with
  mean (θ₁, θ₂), scales θ₃², θ₄² and correlation tanh θ₅ — four posterior modes (the signs of θ₃,
  θ₄).
* ``two_moons``: θ ~ U(−1, 1)²; a ~ U(−π/2, π/2), r ~ N(0.1, 0.01²), p = (r cos a + 0.25, r sin a),
  x = p − (|θ₁ + θ₂|/√2, (θ₁ − θ₂)/√2): a bimodal crescent posterior. The likelihood is written
  in closed form (:class:`TwoMoonsNoise`: the density of p in polar coordinates, N(r) / (π r)).

Each ``*_example(seed)`` fixes one observation simulated from a prior draw (the true θ in
``exact["theta"]``).
"""

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import constraints as numpyro_constraints
from numpyro.distributions.distribution import Distribution

from probinfer.language import dist, plate, sample
from probinfer.models._example import Example

__all__ = [
    "gaussian_linear",
    "gaussian_linear_posterior",
    "slcp",
    "two_moons",
    "TwoMoonsNoise",
    "gaussian_linear_example",
    "slcp_example",
    "two_moons_example",
]

_VARIANCE = 0.1


def gaussian_linear(x=None, *, dim=10):
    """θ ~ N(0, 0.1 I_dim), x ~ N(θ, 0.1 I_dim)."""
    theta = sample("theta", dist.Normal(0.0, np.sqrt(_VARIANCE)).expand([dim]).to_event(1))
    sample("x", dist.Normal(theta, np.sqrt(_VARIANCE)).to_event(1), obs=x)


def gaussian_linear_posterior(x):
    """Exact posterior ``(mean (…, dim), sd)`` of θ: N(x/2, 0.05 I)."""
    return np.asarray(x, np.float64) / 2.0, np.sqrt(_VARIANCE / 2.0)


def slcp(x=None):
    """θ ~ U(−3, 3)⁵; x: (4, 2) i.i.d. draws of N((θ₁, θ₂), Σ(θ₃, θ₄, θ₅))."""
    theta = sample("theta", dist.Uniform(-3.0, 3.0).expand([5]).to_event(1))
    s1, s2, rho = theta[2] ** 2, theta[3] ** 2, jnp.tanh(theta[4])
    covariance = jnp.array([[s1**2, rho * s1 * s2], [rho * s1 * s2, s2**2]])
    with plate("draws", 4):
        sample("x", dist.MultivariateNormal(theta[:2], covariance), obs=x)


class TwoMoonsNoise(Distribution):
    """The two-moons simulator's noise around ``shift``: x = p − shift with p = (r cos a + 0.25,
    r sin a), a ~ U(−π/2, π/2), r ~ N(0.1, 0.01²). Density: with u = x + shift − (0.25, 0),
    N(‖u‖; 0.1, 0.01) / (π ‖u‖) when u₁ > 0, else 0."""

    arg_constraints = {"shift": numpyro_constraints.real_vector}
    support = numpyro_constraints.real_vector
    reparametrized_params = ["shift"]

    def __init__(self, shift, *, validate_args=None):
        self.shift = shift
        super().__init__(jnp.shape(shift)[:-1], (2,), validate_args=validate_args)

    def sample(self, key, sample_shape=()):
        key_a, key_r = jax.random.split(key)
        shape = sample_shape + self.batch_shape
        a = jax.random.uniform(key_a, shape, minval=-jnp.pi / 2, maxval=jnp.pi / 2)
        r = 0.1 + 0.01 * jax.random.normal(key_r, shape)
        p = jnp.stack([r * jnp.cos(a) + 0.25, r * jnp.sin(a)], -1)
        return p - self.shift

    def log_prob(self, value):
        u = value + self.shift - jnp.array([0.25, 0.0])
        r = jnp.linalg.norm(u, axis=-1)
        safe = jnp.where(r > 0, r, 1.0)
        log_p = (
            -0.5 * ((safe - 0.1) / 0.01) ** 2
            - jnp.log(0.01 * jnp.sqrt(2 * jnp.pi))
            - jnp.log(jnp.pi * safe)
        )
        return jnp.where((u[..., 0] > 0) & (r > 0), log_p, -jnp.inf)


def two_moons(x=None):
    """θ ~ U(−1, 1)²; x: (2,) from :class:`TwoMoonsNoise`."""
    theta = sample("theta", dist.Uniform(-1.0, 1.0).expand([2]).to_event(1))
    shift = jnp.stack(
        [jnp.abs(theta[0] + theta[1]) / np.sqrt(2), (theta[0] - theta[1]) / np.sqrt(2)]
    )
    sample("x", TwoMoonsNoise(shift), obs=x)


def _observed(model, seed, **kwargs):
    """One (θ*, x) from the prior predictive, with numpy seed ``seed``."""
    from probinfer.compiler import compile

    shapes = {"gaussian_linear": (10,), "slcp": (4, 2), "two_moons": (2,)}
    target = compile(model, x=jnp.zeros(shapes[model.__name__]), **kwargs)
    params, observations = target.simulate(int(seed), 1)
    return np.asarray(params["theta"][0]), np.asarray(observations["x"][0], np.float32)


def gaussian_linear_example(seed=0):
    """The 10-D Gaussian linear task at one simulated observation (exact posterior)."""
    theta, x = _observed(gaussian_linear, seed)
    mean, sd = gaussian_linear_posterior(x)
    return Example(
        "sbi_gaussian_linear",
        gaussian_linear,
        kwargs={"x": x},
        description="SBI benchmark: Gaussian linear, 10 dims (exact posterior)",
        exact={"theta": theta, "theta_mean": mean, "theta_sd": sd},
    )


def slcp_example(seed=0):
    """SLCP at one simulated observation (four modes)."""
    theta, x = _observed(slcp, seed)
    return Example(
        "sbi_slcp",
        slcp,
        kwargs={"x": x},
        description="SBI benchmark: SLCP, 5 dims, 4 modes",
        exact={"theta": theta},
    )


def two_moons_example(seed=0):
    """Two moons at one simulated observation (a bimodal crescent)."""
    theta, x = _observed(two_moons, seed)
    return Example(
        "sbi_two_moons",
        two_moons,
        kwargs={"x": x},
        description="SBI benchmark: two moons, 2 dims, bimodal crescent",
        exact={"theta": theta},
    )
