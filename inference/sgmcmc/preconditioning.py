"""The starting point and the geometry of an SGMCMC run: the mode, a preconditioner at it, and
the minibatch gradient estimators.

* ``find_mode``: Adam on minibatches, then full-batch L-BFGS (optax).
* ``laplace_covariance``: the dense ``(−∇² log π(θ̂))⁻¹`` (a few thousand dimensions at most).
* ``fisher_diagonal``: a diagonal precision for large models (BNNs): the empirical Fisher
  ``Σ_n (∇ log p(y_n | θ̂))²`` plus the diagonal of the prior's negative Hessian (Hutchinson,
  exact for a factorised prior) — positive even where the likelihood is not concave.
* ``largest_eigenvalue``: power iteration on ``P^{1/2} H P^{1/2}`` with Hessian-vector products, to
  scale the step to the preconditioned curvature.
* ``gradient_estimator``: plain minibatch gradients or control variates (SGLD-CV).

>>> mode = find_mode(target, key, batch_size=64)                 # doctest: +SKIP
>>> precision = fisher_diagonal(target, mode)                    # doctest: +SKIP
"""

import weakref

import jax
import jax.numpy as jnp
import optax

from probinfer._utils import lbfgs_minimise

__all__ = [
    "find_mode",
    "laplace_covariance",
    "fisher_diagonal",
    "largest_eigenvalue",
    "gradient_estimator",
]


_MODE_PROGRAMS = weakref.WeakKeyDictionary()  # target -> {(batch, steps, rate): jitted search}


def find_mode(target, key, *, batch_size, num_steps=2000, learning_rate=1e-2):
    """Maximum a posteriori point on the unconstrained space: Adam on minibatches, then 100
    full-batch L-BFGS steps. Returns ``z (dim,)``. The compiled search is cached per target and
    settings."""
    programs = _MODE_PROGRAMS.setdefault(target, {})
    settings = (int(batch_size), int(num_steps), float(learning_rate))
    if settings not in programs:
        programs[settings] = _mode_search(target, *settings)
    return programs[settings](target.init(key, 1)[0], jax.random.fold_in(key, 1))


def _mode_search(target, batch_size, num_steps, learning_rate):
    adam = optax.adam(learning_rate)
    n = target.num_data

    def adam_step(carry, key):
        z, state = carry
        index = jax.random.choice(key, n, (batch_size,), replace=False)
        grad = jax.grad(lambda z: -target.minibatch_log_density(z, target.batch(index)))(z)
        updates, state = adam.update(grad, state, z)
        return (optax.apply_updates(z, updates), state), None

    def polish(z):
        def loss(z):
            return -target.log_density(z)

        z_new = lbfgs_minimise(loss, z, 100)
        return jnp.where(jnp.isfinite(loss(z_new)) & (loss(z_new) <= loss(z)), z_new, z)

    @jax.jit
    def run(z0, key):
        (z, _), _ = jax.lax.scan(adam_step, (z0, adam.init(z0)), jax.random.split(key, num_steps))
        return polish(z)

    return run


def laplace_covariance(target, mode, min_eigenvalue=1e-8):
    """``(−∇² log π(mode))⁻¹``, symmetrised, with eigenvalues of the precision floored."""
    hessian = jax.hessian(target.log_density)(mode)
    precision = -(hessian + hessian.T) / 2
    values, vectors = jnp.linalg.eigh(precision)
    values = jnp.maximum(values, min_eigenvalue * jnp.max(jnp.abs(values)))
    return (vectors / values) @ vectors.T


def fisher_diagonal(target, mode, *, key=None, num_probes=16, chunk=256):
    """Diagonal precision at ``mode``: ``Σ_n g_n² + diag(−∇² log p(θ))``, ``g_n`` the gradient of
    datum n's log likelihood (computed ``chunk`` data points at a time; memory ``chunk × dim``).

    The prior's diagonal is Hutchinson's ``E[v ⊙ H v]`` over ``num_probes`` Rademacher vectors —
    exact for a prior that factorises over coordinates, an estimate otherwise (floored at 0).
    Returns ``(dim,)``, strictly positive.
    """
    key = jax.random.PRNGKey(0) if key is None else key
    n = target.num_data
    data = {k: jnp.asarray(v) for k, v in target.data.items()}
    prior_grad = jax.grad(target.log_prior)

    def datum_grad(index):
        single = {k: jax.lax.dynamic_slice_in_dim(v, index, 1) for k, v in data.items()}
        # minibatch_log_density of one point is log prior + N log p(y_n | θ).
        full = jax.grad(target.minibatch_log_density)(mode, single)
        return (full - prior_grad(mode)) / n

    @jax.jit
    def run(key):
        starts = jnp.arange(0, n, chunk)

        def block(start):
            index = jnp.minimum(start + jnp.arange(chunk), n - 1)
            grads = jax.vmap(datum_grad)(index)
            valid = (start + jnp.arange(chunk)) < n
            return jnp.sum(jnp.where(valid[:, None], grads**2, 0.0), axis=0)

        fisher = jnp.sum(jax.lax.map(block, starts), axis=0)
        probes = jax.random.rademacher(key, (num_probes, target.dim), mode.dtype)
        hvp = jax.vmap(lambda v: jax.jvp(prior_grad, (mode,), (v,))[1])(probes)
        prior = jnp.maximum(-jnp.mean(probes * hvp, axis=0), 0.0)
        total = fisher + prior
        return jnp.maximum(total, 1e-8 * jnp.max(total))

    return run(key)


def largest_eigenvalue(target, mode, preconditioner, *, key=None, num_iterations=30):
    """``|λ|_max`` of ``P^{1/2} (−∇² log π(mode)) P^{1/2}`` by power iteration (Hessian-vector
    products only). ``preconditioner``: a (dim, dim) matrix or a (dim,) diagonal P."""
    key = jax.random.PRNGKey(1) if key is None else key
    grad = jax.grad(target.log_density)
    if preconditioner.ndim == 2:
        root = jnp.linalg.cholesky(preconditioner)
        left, right = (lambda v: root.T @ v), (lambda v: root @ v)
    else:
        root = jnp.sqrt(preconditioner)
        left = right = lambda v: root * v

    @jax.jit
    def run(key):
        def step(v, _):
            w = -left(jax.jvp(grad, (mode,), (right(v),))[1])
            return w / jnp.linalg.norm(w), jnp.linalg.norm(w)

        v0 = jax.random.normal(key, (target.dim,), mode.dtype)
        _, norms = jax.lax.scan(step, v0 / jnp.linalg.norm(v0), None, length=num_iterations)
        return norms[-1]

    return float(run(key))


def gradient_estimator(target, centre=None, centre_grad=None):
    """``(z, index (B,)) -> ĝ``, an unbiased estimate of ∇ log π(z) from the minibatch ``index``.

    Plain: ``∇U_B(z)`` (:meth:`Target.minibatch_log_density`, likelihood scaled by N/B). With a
    ``centre`` θ̂ (control variates, SGLD-CV; Baker, Fearnhead, Fox & Nemeth 2019):
    ``∇U_B(z) − ∇U_B(θ̂) + ∇U(θ̂)``, whose variance vanishes as z → θ̂. ``centre_grad``: the
    full-data ``∇U(θ̂)`` if already computed (computed here otherwise).
    """
    minibatch_grad = jax.grad(target.minibatch_log_density)
    if centre is None:
        return lambda z, index: minibatch_grad(z, target.batch(index))
    full_at_centre = jax.grad(target.log_density)(centre) if centre_grad is None else centre_grad

    def estimate(z, index):
        batch = target.batch(index)
        return minibatch_grad(z, batch) - minibatch_grad(centre, batch) + full_at_centre

    return estimate
