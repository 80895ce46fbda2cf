"""The flow-matching estimator's ODE and density (:mod:`probinfer.nn.flow_matching`): a field
with random weights (the initial one is zero, the identity map) must give a normalised density
whose value at its own draws agrees with the backward solve, and NPE with ``flow="flow_matching"``
matches exact conjugate posteriors (slow tier)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from probinfer.errors import DataError
from probinfer.nn.flow_matching import EXACT_DIVERGENCE, make_flow_matching


def _random_field(dim, context_dim, seed=0, scale=0.5):
    fm = make_flow_matching(dim, context_dim, hidden=(16, 16), num_ode_steps=40)
    params = fm.init(jax.random.PRNGKey(seed))
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(seed + 1), len(leaves))
    leaves = [x + scale * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys, strict=True)]
    return fm, jax.tree.unflatten(tree, leaves)


def test_the_density_integrates_to_one_and_agrees_with_the_forward_solve():
    """1-D: the trapezoid integral of exp(log q) over ±8 is 1 (to the RK4 and grid error, 1e-3);
    2-D: log q from the forward solve (draw and divergence together) equals log q from the
    backward solve at the same draws (the two RK4 solutions agree to 1e-3 nats)."""
    fm, params = _random_field(1, 2)
    context = jnp.array([0.3, -0.7])
    grid = jnp.linspace(-8.0, 8.0, 2001)
    density = jnp.exp(fm.log_prob(params, grid[:, None], context))
    assert abs(float(jnp.trapezoid(density, grid)) - 1.0) < 1e-3
    fm, params = _random_field(2, 1, seed=3)
    x, log_q = fm.sample_and_log_prob(params, jax.random.PRNGKey(4), 64, jnp.array([1.0]))
    np.testing.assert_allclose(fm.log_prob(params, x, jnp.array([1.0])), log_q, atol=1e-3)
    # The field moved the draws: this is not the identity map.
    assert float(jnp.abs(log_q - (-0.5 * jnp.sum(x**2, -1) - jnp.log(2 * jnp.pi))).max()) > 0.1


def test_densities_above_the_exact_divergence_limit_are_refused():
    fm = make_flow_matching(EXACT_DIVERGENCE + 1, 1)
    params = fm.init(jax.random.PRNGKey(0))
    with pytest.raises(DataError, match="exact divergence"):
        fm.log_prob(params, jnp.zeros((1, EXACT_DIVERGENCE + 1)), jnp.zeros(1))
    assert fm.sample(params, jax.random.PRNGKey(1), 3, jnp.zeros(1)).shape == (3, 33)
