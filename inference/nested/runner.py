"""The nested sampling runner: BlackJAX's nested slice sampler on a Target, run to termination.

Skilling (2006), "Nested sampling for general Bayesian computation": ``num_live`` points are drawn
from the prior; at every step the ``num_delete`` lowest-likelihood points die and are replaced by
points drawn from the prior restricted to ``L > L_dead`` (here by slice sampling inside the
contour: hit-and-run along directions shaped by the live points' covariance, Yallup, Kroupa &
Handley 2026, or axis-aligned slice-within-Gibbs). Each death shrinks the enclosed prior volume by
a Beta-distributed factor, ``E[log X_i] = −Σ_j 1 / m_j`` with ``m_j`` the live points at death j
(Fowlie, Handley & Su 2021 for batch deletion), so ``Z = Σ_i L_i ΔX_i`` and the dead points are
posterior draws with weights ``L_i ΔX_i / Z``.

The run stops when the live points hold less than ``STOP_FRACTION`` of the evidence found
(``X · mean(L_live) < STOP_FRACTION · Z_dead``); the final live points join the dead ones. The
evidence's standard error comes from simulating the volume shrinkages (``NUM_VOLUME_DRAWS``
draws of the log X sequence, Higson et al. 2019): ``log_evidence`` is their mean and
``log_evidence_se`` their standard deviation.

>>> post = pi.nested(target, key=0)                               # doctest: +SKIP
>>> post.log_evidence, post.diagnostics["log_evidence_se"]        # doctest: +SKIP
"""

import math
import warnings
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from blackjax.ns import utils as ns_utils
from blackjax.ns.base import NSInfo
from jax.scipy.special import logsumexp

from probinfer import health
from probinfer._utils import as_key, user_stacklevel
from probinfer.checkpoint import boundaries, fingerprint, path_for, run_chunks
from probinfer.errors import ProbinferError
from probinfer.health import ProbinferWarning
from probinfer.posterior import Posterior
from probinfer.programs import cached_program
from probinfer.progress import Heartbeat, host_bar, should_show

__all__ = ["nested", "Slice", "STOP_FRACTION", "NUM_VOLUME_DRAWS"]

#: The run stops when the live points could add at most this fraction to the evidence.
STOP_FRACTION = 1e-3
#: Simulated log-volume sequences behind the evidence's standard error.
NUM_VOLUME_DRAWS = 200
#: Log prior volume compressed per jitted chunk (checkpoints and progress come between chunks).
CHUNK_COMPRESSION = 5.0
#: The most log prior volume a run compresses (nats) before it stops with a warning.
MAX_COMPRESSION = 5000.0


class Slice(NamedTuple):
    """The constrained move of nested slice sampling: ``num_inner_steps`` slice moves per new
    point (default ``max(5, 3 × dim)``: BlackJAX's documentation warns that fewer than 2 × dim
    bias the evidence upward above 10 dimensions) along covariance-shaped directions
    (``axis_aligned=False``, hit-and-run) or along each axis in turn (slice-within-Gibbs)."""

    num_inner_steps: int | None = None
    axis_aligned: bool = False

    @property
    def name(self):
        return "slice_gibbs" if self.axis_aligned else "slice"


_KERNELS = {"slice": Slice(), "slice_gibbs": Slice(axis_aligned=True)}


def _kernel(kernel, dim):
    if isinstance(kernel, str):
        if kernel not in _KERNELS:
            raise ProbinferError(
                f"nested: kernel must be one of {sorted(_KERNELS)} or a "
                f"probinfer.inference.nested.Slice(...), got '{kernel}'."
            )
        kernel = _KERNELS[kernel]
    if not isinstance(kernel, Slice):
        raise ProbinferError(
            f"nested: kernel must be 'slice', 'slice_gibbs' or a Slice(...), got {kernel!r}."
        )
    steps = max(5, 3 * dim) if kernel.num_inner_steps is None else kernel.num_inner_steps
    if isinstance(steps, bool) or int(steps) != steps or steps < 1:
        raise ProbinferError(f"nested: num_inner_steps must be a positive integer, got {steps}.")
    return kernel._replace(num_inner_steps=int(steps))


def nested(
    target,
    *,
    key,
    num_live=500,
    num_delete=None,
    kernel="slice",
    progress="auto",
    checkpoint=None,
    devices=None,
):
    """Nested sampling for the evidence and the posterior (see the module docstring).

    Args:
        target: a compiled :class:`~probinfer.Target` with a proper prior (continuous latents);
            the prior is sampled on the unconstrained space (Jacobians in the prior density).
        key: int seed or JAX PRNG key.
        num_live: live points. The evidence's standard error shrinks as ``√(H / num_live)``
            (H: the information, in nats, the data carry about the parameters).
        num_delete: points replaced per step, in parallel (default ``num_live // 10``): more is
            faster on parallel hardware at a small loss of compression per evaluation.
        kernel: the constrained move: ``"slice"`` (hit-and-run slice along the live points'
            covariance), ``"slice_gibbs"`` (axis-aligned) or :class:`Slice` with
            ``num_inner_steps``.
        progress: ``"auto"``, True or False: a bar over the compression (log prior volume) on
            a terminal; off one (``"auto"``), a line a minute once the run has taken a minute.
        checkpoint: a folder (``<folder>/nested.npz``) or ``.npz`` path, saved every few units
            of compression; a run started on it resumes and gives the uninterrupted result.
        devices: accepted for the calling convention; the run uses one device (the
            ``num_delete`` replacements are vectorised, not sharded).

    Returns:
        Posterior of all dead points and the final live ones, ``(1, num_points, *site_shape)``,
        with ``log_weights``, ``log_evidence`` and diagnostics ``log_evidence_se``,
        ``information`` (H, nats), ``num_steps``, ``log_volume`` (the final log X),
        ``num_slice_evaluations`` (likelihood evaluations in the slice moves' stepping-out and
        shrinkage) and ``slice_acceptance`` (the share of slice moves that found a point
        inside the contour within BlackJAX's shrinkage budget; the rest stayed put).

    Example:
        >>> post = pi.nested(pi.compile(model, y=y), key=0, num_live=1000)  # doctest: +SKIP
    """
    del devices
    target.check_continuous()
    target.check_proper()
    settings = _settings(target, num_live, num_delete, kernel)
    key = as_key(key)
    key_init, key_run, key_volume = jax.random.split(key, 3)
    program = cached_program(
        target,
        ("nested", tuple((k, v) for k, v in settings.items())),
        lambda: _program(target, settings),
    )
    carry = program.start(key_init, key_run)
    path = path_for(checkpoint, "nested")
    per_chunk = CHUNK_COMPRESSION * settings["num_live"] / settings["num_delete"]
    chunk = max(1, int(math.ceil(per_chunk)))
    max_steps = chunk * int(math.ceil(MAX_COMPRESSION / CHUNK_COMPRESSION))
    record = fingerprint(key, target, **{k: repr(v) for k, v in settings.items()})
    shown = should_show(progress, 1, 0)
    beat = Heartbeat("nested") if progress == "auto" and not shown else None
    with host_bar(None, "nested sampling (log X)", shown) as bar:

        def advance(carry, start, stop):
            carry, dead = program.advance(carry, stop - start)
            bar.update(round(-float(carry.log_volume) - bar.n))
            if beat is not None:
                beat(f"log X = {float(carry.log_volume):.1f} after {int(carry.num_steps)} steps")
            return carry, list(dead)

        carry, dead = run_chunks(
            advance,
            carry,
            boundaries(max_steps, chunk),
            path=path,
            fingerprint=record,
            done=_finished,
        )
    if not _finished(carry):
        warnings.warn(
            f"nested: the live points still hold more than {STOP_FRACTION:g} of the evidence "
            f"after compressing the prior volume by {MAX_COMPRESSION:g} nats; the evidence is "
            "an underestimate. Check the likelihood's scale, or use pi.smc.",
            ProbinferWarning,
            stacklevel=user_stacklevel(),
        )
    return _posterior(target, carry, dead, key_volume, settings)


def _settings(target, num_live, num_delete, kernel):
    for label, value in (("num_live", num_live), ("num_delete", num_delete)):
        if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
            raise ProbinferError(f"nested: {label} must be a positive integer, got {value}.")
    num_live = int(num_live)
    if num_live < 2:
        raise ProbinferError(f"nested: num_live must be at least 2, got {num_live}.")
    num_delete = max(1, num_live // 10) if num_delete is None else int(num_delete)
    if num_delete >= num_live:
        raise ProbinferError(
            f"nested: num_delete ({num_delete}) must be below num_live ({num_live})."
        )
    chosen = _kernel(kernel, target.dim)
    return {
        "num_live": num_live,
        "num_delete": num_delete,
        "kernel": chosen.name,
        "num_inner_steps": chosen.num_inner_steps,
    }


class Carry(NamedTuple):
    """The run between chunks: BlackJAX's state, the step's key, the expected log prior volume,
    the evidence of the dead points (expected volumes) and the step count."""

    state: object
    key: jax.Array
    log_volume: jax.Array
    log_evidence: jax.Array
    num_steps: jax.Array


def _finished(carry):
    live = carry.state.particles.loglikelihood
    remaining = float(carry.log_volume + logsumexp(live) - jnp.log(live.shape[0]))
    return remaining < float(carry.log_evidence) + math.log(STOP_FRACTION)


class _Program(NamedTuple):
    start: object
    advance: object


def _program(target, settings):
    import blackjax

    def log_prior(z):
        return target.log_terms(z)[0]

    def log_likelihood(z):
        return target.log_terms(z)[1]

    build = blackjax.nsswig if settings["kernel"] == "slice_gibbs" else blackjax.nss
    algorithm = build(
        log_prior,
        log_likelihood,
        num_inner_steps=settings["num_inner_steps"],
        num_delete=settings["num_delete"],
    )
    n, k = settings["num_live"], settings["num_delete"]
    # Expected shrinkage of log X for the j-th of k points deleted together: 1 / (n − j).
    shrink = 1.0 / (n - jnp.arange(k, dtype=target.dtype))

    @jax.jit
    def start(key_init, key_run):
        z = jax.vmap(lambda key: target.draw_z(key, "prior"))(jax.random.split(key_init, n))
        state = algorithm.init(z, key_init)
        zero = jnp.zeros((), target.dtype)
        return Carry(state, key_run, zero, jnp.asarray(-jnp.inf, target.dtype), jnp.zeros((), int))

    def one_step(carry, _):
        key, step_key = jax.random.split(carry.key)
        state, info = algorithm.step(step_key, carry.state)
        dead = info.particles
        order = jnp.argsort(dead.loglikelihood)
        log_x = carry.log_volume - jnp.cumsum(shrink)
        log_dx = jnp.concatenate([carry.log_volume[None], log_x[:-1]]) + jnp.log(
            -jnp.expm1(-shrink)
        )
        found = logsumexp(dead.loglikelihood[order] + log_dx)
        carry = Carry(
            state,
            key,
            log_x[-1],
            jnp.logaddexp(carry.log_evidence, found),
            carry.num_steps + 1,
        )
        moves = info.update_info  # BlackJAX's SliceInfo of every inner move of this step
        evaluations = jnp.sum(moves.num_expansions) + jnp.sum(moves.num_shrink)
        return carry, (dead, jnp.stack([evaluations, jnp.mean(moves.is_accepted)]))

    @partial(jax.jit, static_argnums=1)
    def advance_jit(carry, steps):
        return jax.lax.scan(one_step, carry, length=steps)

    def advance(carry, steps):
        carry, (dead, evaluations) = advance_jit(carry, steps)
        flat = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), dead)
        leaves = [flat.position, flat.logdensity, flat.loglikelihood, flat.loglikelihood_birth]
        return carry, [*leaves, evaluations]

    return _Program(start, advance)


def _posterior(target, carry, dead, key, settings):
    position, log_prior, log_lik, birth, moves = (np.asarray(x) for x in dead)
    particles = carry.state.particles
    everything = NSInfo(
        type(particles)(
            jnp.concatenate([position, particles.position]),
            jnp.concatenate([log_prior, particles.logdensity]),
            jnp.concatenate([log_lik, particles.loglikelihood]),
            jnp.concatenate([birth, particles.loglikelihood_birth]),
        ),
        None,
    )
    log_w = ns_utils.log_weights(key, everything, shape=NUM_VOLUME_DRAWS)  # (points, draws)
    log_z = np.asarray(logsumexp(log_w, axis=0))
    mean_log_w = np.asarray(log_w.mean(axis=-1))
    normalised = mean_log_w - logsumexp(mean_log_w)
    log_evidence = float(np.mean(log_z))
    loglik = np.asarray(everything.particles.loglikelihood)
    weights = np.exp(normalised)
    finite = weights > 0
    information = float(np.sum(weights[finite] * loglik[finite]) - log_evidence)
    draws = jax.jit(jax.vmap(target.constrain))(everything.particles.position)
    post = Posterior(
        {k: np.asarray(v)[None] for k, v in draws.items()},
        method="nested",
        log_weights=normalised[None],
        log_evidence=log_evidence,
        diagnostics={
            "log_evidence_se": float(np.std(log_z, ddof=1)),
            "information": information,
            "num_steps": int(carry.num_steps),
            "log_volume": float(carry.log_volume),
            "num_slice_evaluations": int(moves[:, 0].sum()),
            "slice_acceptance": float(moves[:, 1].mean()),
        },
        settings=dict(settings),
    )
    return health.attach(post)
