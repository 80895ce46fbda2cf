"""Diagnostics every family shares: the effective sample size of importance weights (more — the
kernel Stein discrepancy and MMD — join as the families that need them land).

>>> kish_ess(jnp.zeros(100))   # 100.0
"""

import jax.numpy as jnp
from jax.scipy.special import logsumexp

__all__ = ["kish_ess"]


def kish_ess(log_weights):
    """Kish's effective sample size ``1 / Σ W_i²`` of the normalised weights ``W`` given by
    (unnormalised) ``log_weights`` of any shape, in [1, number of weights]; ``-inf`` weights
    count as zero. The one implementation SMC, importance sampling and the Posterior use."""
    log_weights = jnp.ravel(log_weights)
    log_weights = log_weights - logsumexp(log_weights)
    return jnp.exp(-logsumexp(2.0 * log_weights))
