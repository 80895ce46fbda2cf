"""Property tests (hypothesis) where the input space is the point (issue 34): the spline
bijector, every resampler, the Target's constrain/unconstrain maps over NumPyro's supports and
TARP's invariances, each on inputs hypothesis draws rather than on one hand-picked case.

Examples are derandomised (the same on every machine) and no example database is written.
Exact identities are checked in float64 (``jax.enable_x64``), where rounding cannot flip a
comparison; the one statistical check (resampler counts) states its false-alarm rate.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import probinfer as pi
from probinfer import dist
from probinfer.inference.calibration import tarp
from probinfer.inference.smc import resampling
from probinfer.nn.flow_layers import rational_quadratic

PROPERTY = settings(derandomize=True, database=None, deadline=None, max_examples=25)


@jax.jit
def _spline_identities(x, raw, bound):
    """Forward, inverse and autodiff's derivative, compiled once per number of bins."""
    y, log_det = rational_quadratic(x, raw, bound)
    back, inverse_log_det = rational_quadratic(y, raw, bound, inverse=True)
    derivative = jax.vmap(jax.grad(lambda v, r: rational_quadratic(v, r, bound)[0]))(x, raw)
    return y, log_det, back, inverse_log_det, derivative


@PROPERTY
@given(
    num_bins=st.integers(2, 10),
    bound=st.floats(0.5, 5.0),
    spread=st.floats(0.0, 3.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_the_spline_inverts_and_its_log_det_is_the_derivative(num_bins, bound, spread, seed):
    """Any knots (raw parameters at any scale, minimum slopes included), points inside and
    outside [−B, B]: inverse(forward(x)) = x, log|dy/dx| equals autodiff's derivative, and the
    inverse's log-det is its negative. float64, so the identities hold to 1e-8."""
    with jax.enable_x64(True):
        key_raw, key_x = jax.random.split(jax.random.PRNGKey(seed))
        raw = spread * jax.random.normal(key_raw, (7, 3 * num_bins - 1), jnp.float64)
        x = jax.random.uniform(key_x, (7,), jnp.float64, -1.5 * bound, 1.5 * bound)
        y, log_det, back, inverse_log_det, derivative = _spline_identities(x, raw, bound)
        np.testing.assert_allclose(back, x, atol=1e-8 * bound)
        np.testing.assert_allclose(log_det, np.log(derivative), atol=1e-8)
        np.testing.assert_allclose(inverse_log_det, -log_det, atol=1e-8)
        outside = np.abs(np.asarray(x)) >= bound
        np.testing.assert_array_equal(np.asarray(y)[outside], np.asarray(x)[outside])
        assert np.all(np.abs(np.asarray(y)[~outside]) <= bound)


@functools.partial(jax.jit, static_argnums=0)
def _counts(scheme, keys, log_w):
    """Offspring counts (replicates, n) of one scheme, compiled once per scheme and size."""
    ancestors = jax.vmap(resampling.RESAMPLERS[scheme], (0, None))(keys, log_w)
    return jax.vmap(lambda a: jnp.bincount(a, length=log_w.size))(ancestors)


NUM_REPLICATES = 4000
# Per coordinate |mean − n w| < 5 standard errors + 13 / M: a two-sided normal tail of 5.7e-7,
# and a count that moves with probability p < 13 / M may never move in M replicates (its sample
# sd is then 0) with probability (1 − p)^M > e^-13. Over at most 12 coordinates × 4 schemes × 25
# examples (2,400 checks) the false-alarm rate is < 0.2 %.
Z = 5.0


@PROPERTY
@given(
    # Four sizes (the smallest, odd, even, the largest): each size compiles every scheme once,
    # and 2-12 drawn freely compiled 44 programs (22 s); the weights stay free.
    log_weights=st.sampled_from([2, 3, 7, 12]).flatmap(
        lambda n: st.lists(st.floats(-2.0, 2.0), min_size=n, max_size=n)
    ),
    dead=st.integers(0, 11),
    seed=st.integers(0, 2**31 - 1),
)
def test_every_resampler_is_unbiased_in_its_counts(log_weights, dead, seed):
    """E[count_i] = n w_i for any weights (one of them −inf, never chosen): weights within e⁴ of
    each other, so each expected count is ≥ 70 over the replicates and the normal
    approximation of the mean count holds."""
    log_w = np.asarray(log_weights, np.float32)
    if dead < log_w.size:
        log_w[dead] = -np.inf
    n = log_w.size
    weights = np.exp(log_w - np.max(log_w))
    weights /= weights.sum()
    keys = jax.random.split(jax.random.PRNGKey(seed), NUM_REPLICATES)
    for scheme in sorted(resampling.RESAMPLERS):
        counts = np.asarray(_counts(scheme, keys, jnp.asarray(log_w)))
        assert (counts.sum(1) == n).all(), scheme
        assert (counts[:, ~np.isfinite(log_w)] == 0).all(), scheme
        mean, se = counts.mean(0), counts.std(0) / np.sqrt(NUM_REPLICATES)
        rounding = 8 * n * np.finfo(np.float32).eps  # n w_i from float32 cumulative sums
        bound = Z * se + 13 / NUM_REPLICATES + rounding
        np.testing.assert_array_less(np.abs(mean - n * weights), bound, scheme)


def _every_support(d=None):
    """One site per support the Target maps (real, positive, unit interval, interval, greater-
    and less-than, simplex, ordered vector, correlation Cholesky factor, correlation and
    positive-definite matrices, lower Cholesky factor)."""
    pi.sample("real", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    pi.sample("positive", dist.HalfNormal(2.0))
    pi.sample("unit", dist.Beta(2.0, 3.0))
    pi.sample("interval", dist.Uniform(-3.0, 5.0))
    pi.sample("greater", dist.TruncatedNormal(0.0, 1.0, low=1.5))
    pi.sample("less", dist.TruncatedNormal(0.0, 1.0, high=-0.5))
    pi.sample("simplex", dist.Dirichlet(jnp.ones(4)))
    pi.sample("ordered", dist.ImproperUniform(dist.constraints.ordered_vector, (), (3,)))
    pi.sample("corr_cholesky", dist.LKJCholesky(3, 2.0))
    pi.sample("corr", dist.LKJ(3, 2.0))
    pi.sample("covariance", dist.Wishart(5.0, scale_tril=jnp.eye(3)))
    pi.sample("cholesky", dist.WishartCholesky(5.0, scale_tril=jnp.eye(3)))
    pi.sample("d", dist.Normal(0.0, 1.0), obs=d)


SUPPORTS = pi.compile(_every_support, d=0.3)


@jax.jit
def _round_trip(z):
    """Constrained values, whether each lies in its support, the way back, and the density."""
    values = SUPPORTS.constrain(z)
    inside = {
        name: jnp.all(site.support.check(values[name]))
        for name, site in SUPPORTS.latent_sites.items()
    }
    return values, inside, SUPPORTS.unconstrain(values), SUPPORTS.log_density(z)


@PROPERTY
@given(scale=st.floats(0.05, 2.0), seed=st.integers(0, 2**31 - 1))
def test_constrain_and_unconstrain_round_trip_on_every_support(scale, seed):
    """Any unconstrained point: constrain lands in each site's support, unconstrain maps it
    back (float64: to 1e-6), and the log density there is finite."""
    with jax.enable_x64(True):
        z = scale * jax.random.normal(jax.random.PRNGKey(seed), (SUPPORTS.dim,), jnp.float64)
        values, inside, back, log_density = _round_trip(z)
        assert all(bool(ok) for ok in inside.values()), (inside, values)
        np.testing.assert_allclose(back, z, atol=1e-6)
        assert np.isfinite(float(log_density))


def test_the_support_model_covers_every_support_the_property_claims():
    """The property above is only as wide as its model: one site per support, twelve apart."""

    def base(support):  # IndependentConstraint(Real()) is Real; (OrderedVector()) is OrderedVector
        return getattr(support, "base_constraint", support)

    supports = {type(base(site.support)).__name__ for site in SUPPORTS.latent_sites.values()}
    assert len(supports) == len(SUPPORTS.latent_sites) == 12, supports


@PROPERTY
@given(
    num_sims=st.integers(12, 40),
    dim=st.integers(1, 4),
    shift=st.floats(-100.0, 100.0),
    log_scale=st.floats(-5.0, 5.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_tarp_is_invariant_to_the_order_of_simulations_and_to_rescaling(
    num_sims, dim, shift, log_scale, seed
):
    """Expected coverage is a mean over simulations, so permuting them (with their references)
    changes nothing; with ``normalize=True`` each coordinate is mapped to [0, 1] by θ*'s range,
    so an affine map a·θ + b of every coordinate (samples, θ* and references alike) changes
    nothing either. float64: no distance comparison can flip by rounding."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(seed)
        theta = rng.normal(size=(num_sims, dim))
        samples = theta[None] + rng.normal(size=(30, num_sims, dim)) * rng.uniform(0.5, 2.0)
        references = rng.normal(size=(num_sims, dim))
        base = tarp(samples, theta, references=references, key=0)
        order = rng.permutation(num_sims)
        permuted = tarp(samples[:, order], theta[order], references=references[order], key=0)
        np.testing.assert_allclose(permuted.ecp, base.ecp, atol=1e-12)
        scale = np.exp(log_scale) * rng.uniform(0.5, 2.0, size=dim)
        moved = tarp(
            scale * samples + shift, scale * theta + shift, references=scale * references + shift,
            key=0,
        )  # fmt: skip
        np.testing.assert_allclose(moved.ecp, base.ecp, atol=1e-12)
