"""The starting point and the geometry of an SGMCMC run: the mode, a preconditioner at it, and
the minibatch gradient estimators.

* ``find_mode``: Adam on minibatches (:func:`probinfer.nn.training.train_steps`), then
  full-batch L-BFGS (optax).
* ``laplace_covariance``: the dense ``(−∇² log π(θ̂))⁻¹`` (a few thousand dimensions at most).
* ``fisher_diagonal``: a diagonal precision for large models (BNNs): the empirical Fisher
  ``Σ_n (∇ log p(y_n | θ̂))²`` plus the diagonal of the prior's negative Hessian (Hutchinson,
  exact for a factorised prior) — positive even where the likelihood is not concave.
* ``largest_eigenvalue``: power iteration on ``P^{1/2} H P^{1/2}`` with Hessian-vector products, to
  scale the step to the preconditioned curvature.
* ``gradient_noise_eigenvalue``: the largest eigenvalue of the minibatch gradient's covariance in
  the preconditioner's whitened coordinates, which bounds the SGLD step (:mod:`.pilot`).
* ``gradient_estimator``: plain minibatch gradients or control variates (SGLD-CV).
* ``Geometry``: all of the above for one target, computed lazily and once, for the kernels'
  ``prepare`` and default step sizes.

>>> mode = find_mode(target, key, batch_size=64)                 # doctest: +SKIP
>>> precision = fisher_diagonal(target, mode)                    # doctest: +SKIP
"""

from functools import cached_property, partial

import jax
import jax.numpy as jnp
import optax

from probinfer._utils import as_key, lbfgs_minimise
from probinfer.meanfield import fit_mean_field
from probinfer.nn.training import train_steps
from probinfer.programs import cached_program

__all__ = [
    "find_mode",
    "find_mean",
    "laplace_covariance",
    "fisher_diagonal",
    "largest_eigenvalue",
    "gradient_noise_eigenvalue",
    "gradient_estimator",
    "Geometry",
]

DENSE_LIMIT = 1000  # "auto" preconditioning: dense Laplace up to this dimension, Fisher above


def find_mode(target, key, *, batch_size, num_steps=2000, learning_rate=1e-2):
    """Maximum a posteriori point on the unconstrained space: Adam on minibatches (epochs of
    ``batch_size`` data points, at most N; non-finite steps skipped), then 100 full-batch
    L-BFGS steps, from a uniform(−2, 2) start (a heavy-tailed prior's draw can land
    where 2,000 Adam steps of 0.01 never get back). Returns ``z (dim,)``. The compiled search is
    cached per target and settings."""
    key = as_key(key)
    settings = (int(batch_size), int(num_steps), float(learning_rate))
    search = cached_program(
        target,
        ("mode", settings),
        lambda: target.jit(lambda t: _mode_search(t, *settings)),  # the data are an argument
        share=True,
    )
    return search(target.init(key, 1, strategy="uniform")[0], jax.random.fold_in(key, 1))


def _mode_search(target, batch_size, num_steps, learning_rate):
    n = target.num_data
    rows = jnp.arange(n)

    def minibatch_loss(z, key, index):
        return -target.minibatch_log_density(z, target.batch(index))

    def polish(z):
        def loss(z):
            return -target.log_density(z)

        z_new = lbfgs_minimise(loss, z, 100)
        return jnp.where(jnp.isfinite(loss(z_new)) & (loss(z_new) <= loss(z)), z_new, z)

    def run(z0, key):
        z = train_steps(
            minibatch_loss, z0, key=key, num_steps=num_steps, optimizer=optax.adam(learning_rate),
            data=rows, batch_size=min(batch_size, n),
        )  # fmt: skip
        return polish(z)

    return run


def find_mean(target, start, key, *, batch_size=1024, num_steps=2000, learning_rate=3e-2):
    """The mean of a mean-field Gaussian fitted by minibatch ADVI from ``start`` (the mode):
    :func:`probinfer.meanfield.fit_mean_field` (minibatches of ``min(N, batch_size)`` rows,
    2 million rows in all, whatever N).
    Returns ``m (dim,)``. Measured on the 500-group model below (τ's error in posterior sds):
    batch 128 × 2,000 steps at 0.01 left τ 31 sds off (not converged: each group meets a
    quarter of a row per minibatch), 1,024 × 2,000 at 0.03 left 0.4.

    Why not the mode: in a hierarchical model with many groups the joint mode is atypical —
    the group effects shrink and the scale grows along the ridge where their product is fixed
    (on a 500-group random-effects logistic regression the mode has τ = 4.5 where the posterior
    has 0.79 ± 0.05) — so a Laplace approximation and control variates centred there are far
    from the draws. The mean-field mean sits in the posterior's bulk (it under-disperses, but
    only its location is used: the covariance is the Hessian's at that point)."""
    mean, _ = fit_mean_field(
        target,
        key=key,
        start=start,
        num_steps=num_steps,
        batch_size=batch_size,
        learning_rate=learning_rate,
    )
    return mean


def laplace_covariance(target, mode, min_eigenvalue=1e-8):
    """``(−∇² log π(mode))⁻¹``, symmetrised, with eigenvalues of the precision floored."""
    hessian = jax.hessian(target.log_density)(mode)
    precision = -(hessian + hessian.T) / 2
    values, vectors = jnp.linalg.eigh(precision)
    values = jnp.maximum(values, min_eigenvalue * jnp.max(jnp.abs(values)))
    return (vectors / values) @ vectors.T


def fisher_diagonal(target, mode, *, key, num_probes=16, chunk=256):
    """Diagonal precision at ``mode``: ``Σ_n g_n² + diag(−∇² log p(θ))``, ``g_n`` the gradient of
    datum n's log likelihood (computed ``chunk`` data points at a time; memory ``chunk × dim``).

    The prior's diagonal is Hutchinson's ``E[v ⊙ H v]`` over ``num_probes`` Rademacher vectors —
    exact for a prior that factorises over coordinates, an estimate otherwise (floored at 0).
    Returns ``(dim,)``, strictly positive.
    """
    key = as_key(key)
    n = target.num_data
    data = {k: jnp.asarray(v) for k, v in target.data.items()}
    prior_grad = jax.grad(target.log_prior)

    def datum_grad(data, index):
        single = {k: jax.lax.dynamic_slice_in_dim(v, index, 1) for k, v in data.items()}
        # minibatch_log_density of one point is log prior + N log p(y_n | θ).
        full = jax.grad(target.minibatch_log_density)(mode, single)
        return (full - prior_grad(mode)) / n

    @jax.jit
    def run(key, data):  # data as an argument, not a constant folded into the program
        starts = jnp.arange(0, n, chunk)

        def block(start):
            index = jnp.minimum(start + jnp.arange(chunk), n - 1)
            grads = jax.vmap(partial(datum_grad, data))(index)
            valid = (start + jnp.arange(chunk)) < n
            return jnp.sum(jnp.where(valid[:, None], grads**2, 0.0), axis=0)

        fisher = jnp.sum(jax.lax.map(block, starts), axis=0)
        probes = jax.random.rademacher(key, (num_probes, target.dim), mode.dtype)
        hvp = jax.vmap(lambda v: jax.jvp(prior_grad, (mode,), (v,))[1])(probes)
        prior = jnp.maximum(-jnp.mean(probes * hvp, axis=0), 0.0)
        total = fisher + prior
        return jnp.maximum(total, 1e-8 * jnp.max(total))

    return run(key, data)


def largest_eigenvalue(target, mode, preconditioner, *, key, num_iterations=30):
    """``|λ|_max`` of ``P^{1/2} (−∇² log π(mode)) P^{1/2}`` by power iteration (Hessian-vector
    products only). ``preconditioner``: a (dim, dim) matrix or a (dim,) diagonal P."""
    key = as_key(key)
    grad = jax.grad(target.log_density)
    left, right = _whitening(_kind(preconditioner), _root(preconditioner))

    @jax.jit
    def run(key):
        def step(v, _):
            w = -left(jax.jvp(grad, (mode,), (right(v),))[1])
            return w / jnp.linalg.norm(w), jnp.linalg.norm(w)

        v0 = jax.random.normal(key, (target.dim,), mode.dtype)
        _, norms = jax.lax.scan(step, v0 / jnp.linalg.norm(v0), None, length=num_iterations)
        return norms[-1]

    return float(run(key))


def gradient_noise_eigenvalue(
    target, points, preconditioner, *, batch_size, key, centre=None, num_iterations=30
):
    """``λ_max`` of ``R^T Cov(ĝ) R``: the minibatch gradient's noise in the coordinates where the
    preconditioned SGLD step is isotropic (``R`` = chol(P), √P for a diagonal P, I for None),
    averaged over ``points`` ((dim,) or (M, dim)). ĝ draws ``batch_size`` data points with
    replacement (as the runner does), so ``Cov(ĝ) = (N² / B) Cov_n(g_n)`` with ``g_n`` datum n's
    log-likelihood gradient, or with ``centre`` θ̂ (control variates) ``g_n(θ) − g_n(θ̂)``, whose
    noise vanishes at θ̂ and so must be measured at typical points, not at the mode. Power
    iteration on products with the per-datum Jacobian J (one ``jvp`` and one ``vjp`` over the
    data each: ``Cov_n u = JᵀJu / N − ḡ (ḡ·u)``). 0 when ``batch_size`` is N (full data).

    SGLD's move ``(ε/2) P ĝ + √(ετ) R ξ`` in those coordinates has gradient noise of variance
    ``(ε²/4) λ`` against injected noise ``ετ`` in the worst direction (Welling & Teh 2011: the
    chain samples the posterior once the injected noise dominates); on a Gaussian the chain's
    variance there is inflated by about ``ελ / (4τ)``."""
    n = target.num_data
    if batch_size >= n:
        return 0.0
    kind = _kind(preconditioner)
    with_centre = centre is not None
    run = cached_program(
        target,
        ("sgmcmc-gradient-noise", kind, int(num_iterations), with_centre),
        lambda: target.jit(
            lambda t: partial(_noise_power_iteration, t, kind, int(num_iterations), with_centre)
        ),
        share=True,
    )
    data = {k: jnp.asarray(v) for k, v in target.data.items()}
    points = jnp.atleast_2d(jnp.asarray(points))
    centre = points[0] if centre is None else jnp.asarray(centre)
    value = run(points, centre, _root(preconditioner), as_key(key), data)
    return float(value) * n * n / batch_size


def _kind(preconditioner):
    if preconditioner is None:
        return "none"
    return "dense" if preconditioner.ndim == 2 else "diagonal"


def _root(preconditioner):
    """R with R Rᵀ = P: chol(P) for a matrix, √P for a diagonal, None for none."""
    if preconditioner is None:
        return None
    if preconditioner.ndim == 2:
        return jnp.linalg.cholesky(preconditioner)
    return jnp.sqrt(preconditioner)


def _whitening(kind, root):
    """``(v ↦ Rᵀ v, v ↦ R v)``: the products that turn a matrix M into Rᵀ M R."""
    if kind == "none":
        return (lambda v: v), (lambda v: v)
    if kind == "dense":
        return (lambda v: root.T @ v), (lambda v: root @ v)
    return (lambda v: root * v), (lambda v: root * v)


def _noise_power_iteration(
    target, kind, num_iterations, with_centre, points, centre, root, key, data
):
    """``uᵀ R^T C R u`` at the power iteration's last unit vector u, C the per-datum gradients'
    covariance (differences from ``centre`` when ``with_centre``) averaged over ``points``
    (``data``: the Target's data, an argument so the program does not embed it)."""
    n = target.num_data
    left, right = _whitening(kind, root)

    def per_datum(z):
        # minibatch_log_density of one point is log prior + N log p(y_n | θ).
        def one(i):
            single = {k: jax.lax.dynamic_slice_in_dim(v, i, 1) for k, v in data.items()}
            return target.minibatch_log_density(z, single)

        return (jax.vmap(one)(jnp.arange(n)) - target.log_prior(z)) / n

    def jacobian_products(z):
        """``(u ↦ J u, w ↦ Jᵀ w)`` of the (differenced) per-datum gradients at z."""
        _, pull_z = jax.vjp(per_datum, z)
        _, pull_c = jax.vjp(per_datum, centre)

        def forward(u):
            jz = jax.jvp(per_datum, (z,), (u,))[1]
            return jz - jax.jvp(per_datum, (centre,), (u,))[1] if with_centre else jz

        def backward(w):
            return pull_z(w)[0] - pull_c(w)[0] if with_centre else pull_z(w)[0]

        return forward, backward

    def covariance_product(z, u):
        forward, backward = jacobian_products(z)
        mean = backward(jnp.ones(n, z.dtype)) / n
        return backward(forward(u)) / n - mean * (mean @ u)

    def product(v):
        u = right(v)
        return left(jnp.mean(jax.vmap(lambda z: covariance_product(z, u))(points), axis=0))

    def step(v, _):
        w = product(v)
        return w / jnp.linalg.norm(w), None

    v0 = jax.random.normal(key, (target.dim,), points.dtype)
    v, _ = jax.lax.scan(step, v0 / jnp.linalg.norm(v0), None, length=num_iterations)
    return v @ product(v)


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


class Geometry:
    """The geometry of one target at its mode, each piece computed on first use and kept.

    ``mode`` (:func:`find_mode`); ``anchor``, the point every other piece is computed at: the
    mode, or with ``anchor="mean"`` the mean-field mean started there (:func:`find_mean`; the
    runner's choice with control variates, which are centred there too);
    ``preconditioner(name)`` for ``"laplace"`` (dense inverse Hessian),
    ``"fisher"`` (inverse diagonal Fisher) or ``"auto"`` (Laplace up to ``DENSE_LIMIT``
    dimensions, Fisher above); ``preconditioned_step(name)`` = 0.1 / max(1, λ), λ the largest
    eigenvalue of the preconditioned Hessian (1 for Laplace); ``min_variance`` = σ²_min, the
    smallest Laplace variance (1 / λ_max of the Hessian by power iteration above
    ``DENSE_LIMIT``); ``starts(key, n)``: n points around the mode with the Laplace (or Fisher)
    scale.
    """

    def __init__(self, target, key, *, batch_size, anchor="mode"):
        self.target = target
        self._anchor = anchor
        self._key = as_key(key)
        self._batch_size = int(batch_size)
        self._dense = target.dim <= DENSE_LIMIT

    def key(self, i):
        """The i-th key derived from this geometry's key (0–3 are its own)."""
        return jax.random.fold_in(self._key, i)

    @cached_property
    def mode(self):
        return find_mode(self.target, self.key(0), batch_size=self._batch_size)

    @cached_property
    def anchor(self):
        if self._anchor == "mode":
            return self.mode
        return find_mean(self.target, self.mode, self.key(4))

    @cached_property
    def _laplace(self):
        return laplace_covariance(self.target, self.anchor)

    @cached_property
    def _fisher(self):
        return 1.0 / fisher_diagonal(self.target, self.anchor, key=self.key(1))

    def _resolve(self, name):
        return ("laplace" if self._dense else "fisher") if name == "auto" else name

    def preconditioner(self, name):
        return self._laplace if self._resolve(name) == "laplace" else self._fisher

    def preconditioned_step(self, name):
        if self._resolve(name) == "laplace":
            return 0.1
        curvature = largest_eigenvalue(self.target, self.anchor, self._fisher, key=self.key(2))
        return 0.1 / max(1.0, curvature)

    @cached_property
    def min_variance(self):
        if self._dense:
            return float(jnp.linalg.eigvalsh(self._laplace).min())
        ones = jnp.ones(self.target.dim, self.anchor.dtype)
        return 1.0 / largest_eigenvalue(self.target, self.anchor, ones, key=self.key(3))

    def starts(self, key, n):
        noise = jax.random.normal(key, (int(n), self.target.dim), self.anchor.dtype)
        if self._dense:
            return self.anchor + noise @ jnp.linalg.cholesky(self._laplace).T
        return self.anchor + jnp.sqrt(self._fisher) * noise

    def resolved(self, name):
        """The concrete preconditioner name ``"auto"`` stands for here."""
        return self._resolve(name)
