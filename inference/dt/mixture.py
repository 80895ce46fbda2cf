"""Gaussian mixtures over a model's unconstrained parameters: how a Distribution Transformer takes
a prior and returns a posterior (ALGORITHMS §11).

A :class:`Mixture` holds K components — weights (as logits), means and lower-triangular Cholesky
factors — with optional leading batch axes. It gives ``log_prob``, ``sample``, the mixture's mean
and covariance, :meth:`Mixture.fit` (EM on draws: the mixture form of any prior a user can
write) and the exact posterior under a linear-Gaussian likelihood (:func:`linear_gaussian_update`,
the closed form the tests compare against).

>>> prior = Mixture.gaussian(jnp.zeros(2), jnp.eye(2))
>>> prior.log_prob(jnp.zeros(2)).round(4)
Array(-1.8379, dtype=float32)
"""

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from probinfer.errors import DataError

__all__ = ["Mixture", "linear_gaussian_update"]


@flax.struct.dataclass
class Mixture:
    """A Gaussian mixture.

    Attributes:
        logits: ``(..., K)`` unnormalised log weights.
        means: ``(..., K, D)``.
        scale_tril: ``(..., K, D, D)`` lower-triangular Cholesky factors of the covariances.
    """

    logits: jax.Array
    means: jax.Array
    scale_tril: jax.Array

    @classmethod
    def gaussian(cls, mean, cov):
        """One component N(mean, cov)."""
        mean = jnp.asarray(mean, jnp.float32)
        return cls(
            jnp.zeros(1), mean[None], jnp.linalg.cholesky(jnp.asarray(cov, jnp.float32))[None]
        )

    @property
    def num_components(self):
        return self.logits.shape[-1]

    @property
    def dim(self):
        return self.means.shape[-1]

    @property
    def weights(self):
        return jax.nn.softmax(self.logits, -1)

    def component_log_prob(self, theta):
        """``(..., K)``: log N(θ | μ_k, L_k L_kᵀ) for ``theta (..., D)``."""
        diff = theta[..., None, :] - self.means
        z = jax.scipy.linalg.solve_triangular(self.scale_tril, diff[..., None], lower=True)[..., 0]
        log_det = jnp.sum(jnp.log(jnp.abs(jnp.diagonal(self.scale_tril, 0, -2, -1))), -1)
        return -0.5 * jnp.sum(z**2, -1) - log_det - 0.5 * self.dim * jnp.log(2 * jnp.pi)

    def log_prob(self, theta):
        """``(...)``: log Σ_k w_k N(θ | μ_k, Σ_k)."""
        log_w = jax.nn.log_softmax(self.logits, -1)
        return jax.scipy.special.logsumexp(log_w + self.component_log_prob(theta), -1)

    def sample(self, key, n):
        """``(n, ..., D)`` draws."""
        key_k, key_z = jax.random.split(key)
        batch = self.logits.shape[:-1]
        k = jax.random.categorical(key_k, self.logits, shape=(int(n), *batch))
        z = jax.random.normal(key_z, (int(n), *batch, self.dim))
        mean = jnp.take_along_axis(self.means[None], k[..., None, None], axis=-2)[..., 0, :]
        tril = jnp.take_along_axis(self.scale_tril[None], k[..., None, None, None], axis=-3)
        tril = tril[..., 0, :, :]
        return mean + jnp.einsum("...ij,...j->...i", tril, z)

    def mean(self):
        """``(..., D)``."""
        return jnp.einsum("...k,...kd->...d", self.weights, self.means)

    def covariance(self):
        """``(..., D, D)``: Σ_k w_k (Σ_k + μ_k μ_kᵀ) − μ μᵀ."""
        w = self.weights
        cov = self.scale_tril @ jnp.swapaxes(self.scale_tril, -1, -2)
        second = cov + self.means[..., :, None] * self.means[..., None, :]
        mean = self.mean()
        return jnp.einsum("...k,...kij->...ij", w, second) - mean[..., :, None] * mean[..., None, :]

    @classmethod
    def fit(cls, draws, num_components, *, key, num_iterations=200, jitter=1e-6):
        """Fit K components to ``draws (n, D)`` by EM (k-means++-style start from random draws;
        a small ``jitter`` keeps every covariance positive definite)."""
        draws = jnp.asarray(draws, jnp.float32)
        if draws.ndim != 2 or draws.shape[0] < 2 * num_components:
            raise DataError(
                f"Mixture.fit needs draws of shape (n, D) with n ≥ 2·num_components; got "
                f"{draws.shape} for {num_components} components."
            )
        n, d = draws.shape
        start = jax.random.choice(key, n, (num_components,), replace=False)
        spread = jnp.cov(draws.T).reshape(d, d) + jitter * jnp.eye(d)
        init = cls(
            jnp.zeros(num_components),
            draws[start],
            jnp.broadcast_to(jnp.linalg.cholesky(spread), (num_components, d, d)),
        )

        def em(mixture, _):
            log_r = jax.nn.log_softmax(
                jax.nn.log_softmax(mixture.logits) + mixture.component_log_prob(draws), -1
            )
            r = jnp.exp(log_r)  # (n, K)
            mass = r.sum(0) + 1e-10
            means = (r.T @ draws) / mass[:, None]
            diff = draws[None] - means[:, None]
            cov = jnp.einsum("nk,kni,knj->kij", r, diff, diff) / mass[:, None, None]
            cov = cov + jitter * jnp.eye(d)
            return cls(jnp.log(mass / n), means, jnp.linalg.cholesky(cov)), None

        return jax.lax.scan(em, init, None, int(num_iterations))[0]


def linear_gaussian_update(prior, design, noise_cov, y):
    """The exact posterior of θ under a mixture prior and y = A θ + ε, ε ~ N(0, R).

    Each component is updated as a Kalman step; its weight is multiplied by the component's
    evidence N(y | A μ_k, A Σ_k Aᵀ + R). ``design`` A ``(m, D)``, ``noise_cov`` R ``(m, m)``,
    ``y (m,)``. Returns a :class:`Mixture` with the prior's number of components.
    """
    design, noise_cov = jnp.asarray(design), jnp.asarray(noise_cov)
    cov = prior.scale_tril @ jnp.swapaxes(prior.scale_tril, -1, -2)  # (K, D, D)
    s = design @ cov @ design.T + noise_cov  # (K, m, m)
    gain = jnp.swapaxes(jnp.linalg.solve(s, design @ cov), -1, -2)  # (K, D, m)
    resid = y - prior.means @ design.T  # (K, m)
    means = prior.means + jnp.einsum("kdm,km->kd", gain, resid)
    post_cov = cov - gain @ design @ cov
    post_cov = 0.5 * (post_cov + jnp.swapaxes(post_cov, -1, -2))
    chol_s = jnp.linalg.cholesky(s)
    z = jax.scipy.linalg.solve_triangular(chol_s, resid[..., None], lower=True)[..., 0]
    log_evidence = (
        -0.5 * jnp.sum(z**2, -1)
        - jnp.sum(jnp.log(jnp.diagonal(chol_s, 0, -2, -1)), -1)
        - 0.5 * y.shape[-1] * np.log(2 * np.pi)
    )
    return Mixture(
        jax.nn.log_softmax(prior.logits) + log_evidence, means, jnp.linalg.cholesky(post_cov)
    )
