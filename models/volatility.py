"""A stochastic-volatility model with heavy-tailed priors (the Stan manual's, non-centred).

``μ ~ Cauchy(0, 10)``, ``φ ~ Uniform(−1, 1)``, ``σ ~ HalfCauchy(5)``, ``h_std ~ N(0, I_T)``;
``h_1 = μ + σ h_std,1 / √(1 − φ²)``, ``h_t = μ + φ (h_{t−1} − μ) + σ h_std,t``; returns
``y_t ~ N(0, exp(h_t / 2))``. The Cauchy priors send some prior draws to ``|h| ≈ 10⁵``, where
``exp(h / 2)`` overflows or underflows and the likelihood is NaN or −inf: the model SMC must survive
(its prior particles there get weight zero). The returns are simulated from the model with
``μ = −1, φ = 0.95, σ = 0.25`` (no daily return series ships with our dependencies).
"""

import jax
import jax.numpy as jnp

from probinfer.language import deterministic, dist, sample
from probinfer.models._example import Example
from probinfer.models.state_space import StochasticVolatility

__all__ = ["stochastic_volatility", "simulate_returns", "example"]


def stochastic_volatility(returns):
    """``returns``: (T,) observed returns."""
    num_steps = returns.shape[0]
    mu = sample("mu", dist.Cauchy(0.0, 10.0))
    phi = sample("phi", dist.Uniform(-1.0, 1.0))
    sigma = sample("sigma", dist.HalfCauchy(5.0))
    h_std = sample("h_std", dist.Normal(0.0, 1.0).expand([num_steps]).to_event(1))
    first = mu + sigma * h_std[0] / jnp.sqrt(1.0 - phi**2)

    def advance(previous, noise):
        current = mu + phi * (previous - mu) + sigma * noise
        return current, current

    _, rest = jax.lax.scan(advance, first, h_std[1:])
    h = deterministic("h", jnp.concatenate([first[None], rest]))
    sample("returns", dist.Normal(0.0, jnp.exp(h / 2)).to_event(1), obs=returns)


def simulate_returns(seed=0, num_steps=100):
    """``(T,)`` float32 returns simulated with μ = −1, φ = 0.95, σ = 0.25."""
    _, returns = StochasticVolatility().simulate(seed, num_steps)
    return returns[:, 0].astype("float32")


def example(num_steps=100, seed=0):
    """The zoo entry: 100 simulated returns (103 latent dimensions)."""
    return Example(
        "stochastic_volatility",
        stochastic_volatility,
        (simulate_returns(seed, num_steps),),
        description=f"stochastic volatility, Cauchy priors, {num_steps} returns ({num_steps + 3} dims)",
    )
