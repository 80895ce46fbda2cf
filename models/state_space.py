"""State-space models for the particle filters, with exact references where they exist.

* :class:`LinearGaussian`: ``x_0 ~ N(m_0, P_0)``, ``x_t = A x_{t−1} + N(0, Q)``,
  ``y_t = C x_t + N(0, R)``; the Kalman filter gives the exact log likelihood and filtering moments.
* :func:`stochastic_volatility`: ``x_t = μ + φ (x_{t−1} − μ) + σ ε_t``, ``y_t ~ N(0, exp(x_t))``.
* :func:`nonlinear_growth`: the classic univariate nonlinear growth model (Kitagawa 1996),
  ``x_t = x/2 + 25 x/(1 + x²) + 8 cos(1.2 t) + N(0, q)``, ``y_t = x_t²/20 + N(0, r)``.

Each returns a :class:`~probinfer.ssm.StateSpaceModel` via ``feynman_kac()`` and
simulates data with ``simulate(seed, T)``.
"""

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import MultivariateNormal, Normal

from probinfer.ssm import StateSpaceModel

__all__ = ["LinearGaussian", "StochasticVolatility", "NonlinearGrowth"]


@dataclass(frozen=True)
class LinearGaussian:
    """Linear-Gaussian state-space model; arrays: A, Q (dx, dx); C (dy, dx); R (dy, dy)."""

    A: np.ndarray
    C: np.ndarray
    Q: np.ndarray
    R: np.ndarray
    m0: np.ndarray
    P0: np.ndarray

    @classmethod
    def default(cls, dx=2, dy=1, rho=0.9):
        """A damped rotation in ``dx`` dimensions observed through its first ``dy`` coordinates."""
        A = rho * np.eye(dx)
        if dx >= 2:
            c, s = np.cos(0.3), np.sin(0.3)
            A[:2, :2] = rho * np.array([[c, -s], [s, c]])
        C = np.eye(dy, dx)
        return cls(A, C, 0.3 * np.eye(dx), 0.5 * np.eye(dy), np.zeros(dx), np.eye(dx))

    def simulate(self, seed, num_steps):
        """``(states (T, dx), observations (T, dy))``."""
        rng = np.random.default_rng(seed)
        dx, dy = self.A.shape[0], self.C.shape[0]
        x = rng.multivariate_normal(self.m0, self.P0)
        states, observations = [], []
        for _ in range(num_steps):
            states.append(x)
            observations.append(self.C @ x + rng.multivariate_normal(np.zeros(dy), self.R))
            x = self.A @ x + rng.multivariate_normal(np.zeros(dx), self.Q)
        return np.array(states), np.array(observations)

    def kalman(self, observations):
        """Exact ``(log p(y_{0:T−1}), filtering means (T, dx), filtering covariances (T, dx, dx))``."""
        A, C, Q, R, m, P = (
            np.asarray(a, np.float64) for a in (self.A, self.C, self.Q, self.R, self.m0, self.P0)
        )
        log_lik, means, covs = 0.0, [], []
        for t, y in enumerate(np.asarray(observations, np.float64)):
            if t > 0:
                m, P = A @ m, A @ P @ A.T + Q
            S = C @ P @ C.T + R
            residual = y - C @ m
            _, logdet = np.linalg.slogdet(2 * np.pi * S)
            log_lik += -0.5 * (logdet + residual @ np.linalg.solve(S, residual))
            K = P @ C.T @ np.linalg.inv(S)
            m, P = m + K @ residual, (np.eye(len(m)) - K @ C) @ P
            means.append(m)
            covs.append(P)
        return log_lik, np.array(means), np.array(covs)

    def smoother(self, observations):
        """Exact smoothing ``(means (T, dx), covariances (T, dx, dx))`` (Rauch–Tung–Striebel)."""
        _, means, covs = self.kalman(observations)
        smoothed_m, smoothed_P = [means[-1]], [covs[-1]]
        for t in range(len(means) - 2, -1, -1):
            predicted = self.A @ covs[t] @ self.A.T + self.Q
            gain = covs[t] @ self.A.T @ np.linalg.inv(predicted)
            smoothed_m.append(means[t] + gain @ (smoothed_m[-1] - self.A @ means[t]))
            smoothed_P.append(covs[t] + gain @ (smoothed_P[-1] - predicted) @ gain.T)
        return np.array(smoothed_m[::-1]), np.array(smoothed_P[::-1])

    def feynman_kac(self):
        """Bootstrap pieces, the transition density, and the locally optimal guided proposal
        ``p(x_t | x_{t−1}, y_t)`` (exact for this model)."""
        A, C, Q, R = (jnp.asarray(a, jnp.float32) for a in (self.A, self.C, self.Q, self.R))
        m0, P0 = jnp.asarray(self.m0, jnp.float32), jnp.asarray(self.P0, jnp.float32)
        # Optimal proposal: covariance Σ = (Q⁻¹ + CᵀR⁻¹C)⁻¹, mean Σ (Q⁻¹ A x + Cᵀ R⁻¹ y).
        Qi, Ri = jnp.linalg.inv(Q), jnp.linalg.inv(R)
        sigma = jnp.linalg.inv(Qi + C.T @ Ri @ C)

        def initial(key):
            return MultivariateNormal(m0, P0).sample(key)

        def transition(key, x, t):
            return MultivariateNormal(A @ x, Q).sample(key)

        def log_transition(x, x_prev, t):
            return MultivariateNormal(A @ x_prev, Q).log_prob(x)

        def log_potential(x, y, t):
            return MultivariateNormal(C @ x, R).log_prob(y)

        def _optimal(x_prev, y):
            return MultivariateNormal(sigma @ (Qi @ A @ x_prev + C.T @ Ri @ y), sigma)

        def proposal(key, x_prev, y, t):
            return _optimal(x_prev, y).sample(key)

        def log_proposal(x, x_prev, y, t):
            return _optimal(x_prev, y).log_prob(x)

        return StateSpaceModel(
            initial, transition, log_potential, log_transition, proposal, log_proposal
        )


@dataclass(frozen=True)
class StochasticVolatility:
    """``x_t = μ + φ (x_{t−1} − μ) + σ ε``, ``x_0 ~ N(μ, σ²/(1 − φ²))``, ``y_t ~ N(0, e^{x_t})``."""

    mu: float = -1.0
    phi: float = 0.95
    sigma: float = 0.25

    def simulate(self, seed, num_steps):
        rng = np.random.default_rng(seed)
        x = rng.normal(self.mu, self.sigma / np.sqrt(1 - self.phi**2))
        states = []
        for _ in range(num_steps):
            states.append(x)
            x = self.mu + self.phi * (x - self.mu) + self.sigma * rng.normal()
        states = np.array(states)[:, None]
        return states, rng.normal(size=states.shape) * np.exp(states / 2)

    def feynman_kac(self):
        mu, phi, sigma = self.mu, self.phi, self.sigma

        def initial(key):
            return mu + sigma / jnp.sqrt(1 - phi**2) * jax.random.normal(key, (1,))

        def transition(key, x, t):
            return mu + phi * (x - mu) + sigma * jax.random.normal(key, (1,))

        def log_transition(x, x_prev, t):
            return Normal(mu + phi * (x_prev - mu), sigma).log_prob(x).sum()

        def log_potential(x, y, t):
            return Normal(0.0, jnp.exp(x / 2)).log_prob(y).sum()

        return StateSpaceModel(initial, transition, log_potential, log_transition)


@dataclass(frozen=True)
class NonlinearGrowth:
    """Kitagawa's univariate nonlinear growth model (bimodal filtering distributions)."""

    q: float = 10.0
    r: float = 1.0

    def _drift(self, x, t):
        return x / 2 + 25 * x / (1 + x**2) + 8 * np.cos(1.2 * t)

    def simulate(self, seed, num_steps):
        rng = np.random.default_rng(seed)
        x = rng.normal(0.0, np.sqrt(5.0))
        states = []
        for t in range(num_steps):
            states.append(x)
            x = self._drift(x, t + 1) + np.sqrt(self.q) * rng.normal()
        states = np.array(states)[:, None]
        return states, states**2 / 20 + np.sqrt(self.r) * rng.normal(size=states.shape)

    def feynman_kac(self):
        q, r = self.q, self.r

        def drift(x, t):
            return x / 2 + 25 * x / (1 + x**2) + 8 * jnp.cos(1.2 * t)

        def initial(key):
            return jnp.sqrt(5.0) * jax.random.normal(key, (1,))

        def transition(key, x, t):
            return drift(x, t) + jnp.sqrt(q) * jax.random.normal(key, (1,))

        def log_transition(x, x_prev, t):
            return Normal(drift(x_prev, t), jnp.sqrt(q)).log_prob(x).sum()

        def log_potential(x, y, t):
            return Normal(x**2 / 20, jnp.sqrt(r)).log_prob(y).sum()

        return StateSpaceModel(initial, transition, log_potential, log_transition)
