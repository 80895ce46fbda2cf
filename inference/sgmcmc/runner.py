"""``sgmcmc``: stochastic-gradient MCMC on a Target, minibatches streamed inside one jitted scan.

Defaults are the product (ALGORITHMS §9): with no method and no step size, the runner finds the
mode (Adam on minibatches, then full-batch L-BFGS polish) and preconditions SGLD there,
``θ ← θ + (ε/2) P g + √ε P^{1/2} ξ``, with P the Laplace covariance ``(−∇² log π)⁻¹`` up to 1,000
dimensions and the inverse of the diagonal Fisher precision above (BNNs). The step is
``ε = 0.1 / max(1, λ)``, λ the largest eigenvalue of the preconditioned Hessian (power iteration;
λ = 1 for the Laplace covariance, where the stationary variance is inflated by ~ε/4 = 2.5 % on a
Gaussian). Chains start at the mode plus noise of the preconditioner's scale; the first 10 % of
steps are dropped.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from probinfer._utils import as_key
from probinfer.errors import DataError, ProbinferError
from probinfer.inference.sgmcmc import structured as _structured
from probinfer.inference.sgmcmc.kernels import KERNELS
from probinfer.inference.sgmcmc.loop import run_blocks
from probinfer.inference.sgmcmc.preconditioning import (
    find_mode,
    fisher_diagonal,
    gradient_estimator,
    laplace_covariance,
    largest_eigenvalue,
)
from probinfer.posterior import Posterior
from probinfer.progress import should_show

__all__ = ["sgmcmc", "METHODS", "SCHEDULES"]

METHODS = ("sgld", "sghmc", "sgnht", "psgld", "structured", "entropy")
SCHEDULES = ("constant", "polynomial", "cyclical")
_DEFAULT_FRICTION = 0.1
_DENSE_LIMIT = 1000


def _step_sizes(schedule, step_size, num_steps, burn_in, num_cycles, exploration, decay_power):
    """ε of every step and the mask of steps whose draws may be kept."""
    steps = np.arange(num_steps)
    keep = steps >= burn_in
    if callable(schedule):
        return np.asarray(jax.vmap(schedule)(jnp.asarray(steps)), np.float64), keep
    if schedule not in SCHEDULES:
        raise ProbinferError(
            f"schedule must be one of {SCHEDULES} or an optax schedule, got '{schedule}'."
        )
    if schedule == "constant":
        return np.full(num_steps, step_size), keep
    if schedule == "polynomial":
        # Welling & Teh (2011): ε_t = ε (1 + t / t₀)^(−γ), γ ∈ (0.5, 1], t₀ = a tenth of the run.
        t0 = max(1, num_steps // 10)
        return step_size * (1.0 + steps / t0) ** (-decay_power), keep
    cycle = int(np.ceil(num_steps / int(num_cycles)))
    cosine = optax.cosine_decay_schedule(step_size, cycle)  # ε/2 (cos(π r) + 1) within a cycle
    sizes = np.asarray(jax.vmap(cosine)(jnp.asarray(steps % cycle)), np.float64)
    return sizes, keep & ((steps % cycle) / cycle >= exploration)


def _initial_positions(target, init, num_chains):
    """``(num_chains, dim)`` starting points from a dict of constrained values (each
    ``site_shape`` or ``(num_chains, *site_shape)``) or from unconstrained ``z``."""
    if isinstance(init, dict):
        missing = set(target.latent_sites) - set(init)
        if missing:
            raise DataError(f"init lacks latent site(s) {sorted(missing)}.")
        z = target.unconstrain({k: jnp.asarray(init[k]) for k in target.latent_sites})
    else:
        z = jnp.asarray(init)
    z = jnp.broadcast_to(z, (num_chains, target.dim)) if z.shape == (target.dim,) else z
    if z.shape != (num_chains, target.dim) or not bool(jnp.all(jnp.isfinite(z))):
        raise DataError(
            f"init gives starting points of shape {z.shape}; need finite ({target.dim},) or "
            f"({num_chains}, {target.dim}) unconstrained values, or a dict of site values."
        )
    return z


def _geometry(
    target,
    key_mode,
    key_start,
    method,
    precondition,
    step_size,
    schedule,
    batch_size,
    num_chains,
    coupling,
):
    """The mode, the preconditioner (or None), starting points around the mode and the step."""
    dim = target.dim
    mode = find_mode(target, key_mode, batch_size=batch_size)
    if precondition == "laplace" or (precondition is None and dim <= _DENSE_LIMIT):
        covariance = laplace_covariance(target, mode)
        start_noise = lambda z: jnp.linalg.cholesky(covariance) @ z  # noqa: E731
        min_variance = float(jnp.linalg.eigvalsh(covariance).min())
    else:
        variances = 1.0 / fisher_diagonal(target, mode)
        start_noise = lambda z: jnp.sqrt(variances) * z  # noqa: E731
        min_variance = None
    preconditioner = {"laplace": lambda: covariance, "fisher": lambda: variances}.get(
        precondition, lambda: None
    )()
    if step_size is None and not callable(schedule):
        if preconditioner is not None:
            curvature = (
                1.0
                if precondition == "laplace"
                else largest_eigenvalue(target, mode, preconditioner)
            )
            step_size = 0.1 / max(1.0, curvature)
        else:
            if min_variance is None:
                min_variance = 1.0 / largest_eigenvalue(target, mode, jnp.ones(dim, mode.dtype))
            step_size = {
                "sgnht": 0.3 * np.sqrt(min_variance),
                "entropy": 0.1 * min(min_variance, coupling),
            }.get(method, 0.1 * min_variance)
    starts = mode + jax.vmap(start_noise)(
        jax.random.normal(key_start, (num_chains, dim), mode.dtype)
    )
    return mode, preconditioner, starts, step_size


def sgmcmc(
    target,
    *,
    key,
    method=None,
    batch_size=None,
    num_steps=10_000,
    step_size=None,
    num_chains=4,
    thinning=10,
    burn_in=None,
    precondition=None,
    friction=_DEFAULT_FRICTION,
    control_variates=False,
    schedule="constant",
    num_cycles=4,
    exploration=0.5,
    decay_power=0.55,
    coupling=1.0,
    groups="layer",
    num_groups=None,
    base="sgld",
    buffer_size=100,
    dropout=None,
    num_copies=4,
    progress="auto",
    checkpoint=None,
    checkpoint_every=None,
    init=None,
):
    """Stochastic-gradient MCMC with minibatches of the Target's data.

    Args:
        target: :class:`~probinfer.Target` compiled with ``data=(...)`` (minibatchable).
        key: int seed or PRNG key.
        method: one of ``"sgld"``, ``"sghmc"``, ``"sgnht"``, ``"psgld"``, ``"structured"``,
            ``"entropy"``; None: preconditioned SGLD with the defaults of the module docstring.
        batch_size: minibatch size B ≤ N (default min(N, 128)); drawn with replacement at every
            step (B = N: the full data), the likelihood scaled by N/B.
        num_steps: steps per chain.
        step_size: ε; None: 0.1 / max(1, λ) when preconditioned (module docstring), otherwise from
            the smallest Laplace variance σ²_min = 1/λ_max(−∇² log π(θ̂)): 0.1 σ²_min for
            SGLD/SGHMC/structured, 0.3 σ_min for SGNHT, 0.1 min(σ²_min, η) for Entropy-MCMC.
            pSGLD needs one given. With a schedule, ε is its peak.
        num_chains: parallel chains (vmapped; sharded over the devices when they divide it).
        thinning: keep one position every ``thinning`` steps.
        burn_in: steps dropped at the start (default num_steps // 10).
        precondition: ``"laplace"`` (dense), ``"fisher"`` (diagonal) or None (SGLD and structured
            SGLD only); the default method picks Laplace up to 1,000 dimensions, Fisher above.
        friction: SGHMC friction α (also for structured SGHMC).
        control_variates: the SGLD-CV gradient (Baker et al. 2019) around the mode θ̂:
            ``g(θ) = ∇U_B(θ) − ∇U_B(θ̂) + ∇U(θ̂)``, unbiased, small variance near θ̂.
        schedule: ``"constant"``; ``"polynomial"`` (ε (1 + t/t₀)^(−decay_power), t₀ = num_steps/10);
            ``"cyclical"`` (cSGMCMC, Zhang et al. 2020: ``num_cycles`` cosine cycles, draws kept
            only in the sampling phase, position in cycle ≥ ``exploration``); or any optax
            schedule ``t -> ε_t``.
        coupling: η of Entropy-MCMC: SGLD on p(θ, θ_a) ∝ π(θ) exp(−‖θ − θ_a‖² / 2η); the draws
            are θ (posterior marginal), ``diagnostics["anchor_draws"]`` holds θ_a (the posterior
            smoothed by N(0, η I)); predict with both (:func:`~probinfer.inference.sgmcmc.predict`).
        groups, num_groups, base, buffer_size, dropout, num_copies: Structured SGMCMC
            (``method="structured"``, :mod:`~probinfer.inference.sgmcmc.structured`): the
            grouping, the base kernel (``"sgld"``, ``"sghmc"``, ``"psgld"``), the ring buffer
            length K, and the dropout variant's activation probability and number of copies.
        progress: True, False or ``"auto"`` (a bar on a terminal for long runs).
        init: starting points — a dict of constrained site values (``site_shape`` or
            ``(num_chains, *site_shape)``) or unconstrained ``z`` (``(dim,)`` or
            ``(num_chains, dim)``). With a step size given, no preconditioning and no control
            variates, the mode is then not searched for at all.
        checkpoint: path of an ``.npz`` file written atomically every ``checkpoint_every`` blocks
            of ``thinning`` steps (default a tenth of the run); when it exists, the run resumes
            from it and gives the same draws as an uninterrupted run (a finished run's file
            returns its draws at once; a file from other settings is refused).

    Returns:
        Posterior with draws ``(num_chains, kept, *site_shape)`` and diagnostics ``mode``,
        ``step_size``, ``preconditioned`` (and ``anchor_draws`` for Entropy-MCMC, ``num_groups``
        for structured runs).

    Example:
        >>> post = pi.sgmcmc(target, key=0)                        # doctest: +SKIP
        >>> post = pi.sgmcmc(target, key=0, method="sghmc", step_size=1e-4, batch_size=64)  # doctest: +SKIP
        >>> post = pi.sgmcmc(target, key=0, method="structured", groups="layer")  # doctest: +SKIP
    """
    target.check_continuous()
    if not target.data_names:
        raise DataError(
            f"Target '{target.name}' has no data marked; SGMCMC needs minibatches: compile with "
            "data=('x', 'y') naming the arguments whose leading axis indexes data points."
        )
    target.check_minibatchable()
    n, dim = target.num_data, target.dim
    default = method is None
    if default:
        method = "sgld"
        if precondition is None:
            precondition = "laplace" if dim <= _DENSE_LIMIT else "fisher"
    if method not in METHODS:
        raise ProbinferError(f"method must be one of {list(METHODS)} or None, got '{method}'.")
    kernel_name = {"structured": base, "entropy": "sgld"}.get(method, method)
    if method == "structured" and base not in ("sgld", "sghmc", "psgld"):
        raise ProbinferError(
            f"base (structured kernel) must be 'sgld', 'sghmc' or 'psgld', got '{base}'."
        )
    if method == "entropy" and not coupling > 0:
        raise ProbinferError(f"coupling (η of Entropy-MCMC) must be positive, got {coupling}.")
    if precondition not in (None, "laplace", "fisher"):
        raise ProbinferError(
            f"precondition must be 'laplace', 'fisher' or None, got '{precondition}'."
        )
    if precondition and kernel_name != "sgld":
        raise ProbinferError("precondition is available for SGLD (plain or structured) only.")
    batch_size = min(n, 128) if batch_size is None else int(batch_size)
    if not 1 <= batch_size <= n:
        raise DataError(f"batch_size must be between 1 and the {n} data points, got {batch_size}.")
    if step_size is not None and not step_size > 0:
        raise ProbinferError(f"step_size must be positive, got {step_size}.")
    if step_size is None and kernel_name == "psgld" and not callable(schedule):
        raise ProbinferError(
            "pSGLD needs a step_size (its preconditioner has the gradient's scale)."
        )
    if dropout is not None and not 0 < dropout <= 1:
        raise ProbinferError(
            f"dropout (probability a group is active) must be in (0, 1], got {dropout}."
        )
    num_steps, num_chains, thinning = int(num_steps), int(num_chains), int(thinning)
    burn_in = num_steps // 10 if burn_in is None else int(burn_in)
    if burn_in >= num_steps or thinning < 1 or num_chains < 1:
        raise ProbinferError("need burn_in < num_steps, thinning ≥ 1 and num_chains ≥ 1.")
    key_mode, key_start, key_run, key_groups = jax.random.split(as_key(key), 4)

    needs_mode = (
        init is None
        or precondition is not None
        or control_variates
        or (step_size is None and not callable(schedule))
    )
    mode, preconditioner = None, None
    if needs_mode:
        mode, preconditioner, starts, step_size = _geometry(
            target,
            key_mode,
            key_start,
            method,
            precondition,
            step_size,
            schedule,
            batch_size,
            num_chains,
            coupling,
        )
    if init is not None:
        starts = _initial_positions(target, init, num_chains)
    step_sizes, keep = _step_sizes(
        schedule, step_size, num_steps, burn_in, num_cycles, exploration, decay_power
    )
    if not np.all(np.isfinite(step_sizes) & (step_sizes >= 0)):
        raise ProbinferError("the step-size schedule gives negative or non-finite step sizes.")

    # -- one step of one chain -----------------------------------------------------------------
    # Every array the step reads travels in `params`, so the compiled loop is cached per target
    # and static settings (see loop.run_blocks) and repeated calls do not recompile.
    kernel = KERNELS[kernel_name]
    params = {
        "preconditioner": preconditioner,
        "friction": jnp.asarray(friction, jnp.float32),
        "coupling": jnp.asarray(coupling, jnp.float32),
        "centre": mode if control_variates else None,
        "centre_grad": jax.grad(target.log_density)(mode) if control_variates else None,
    }
    labels, m = None, None
    if method == "structured":
        labels, m = _structured.group_index(target, groups, num_groups=num_groups, key=key_groups)
        params["labels"] = jnp.asarray(labels)
        states = jax.vmap(lambda z: (kernel.init(z), _structured.ring_init(z, buffer_size)))(starts)
    elif method == "entropy":
        states = jax.vmap(kernel.init)({"theta": starts, "anchor": starts})
    else:
        states = jax.vmap(kernel.init)(starts)

    def step(key, state, t, epsilon, noise, params):
        settings = {
            "sgld": {"preconditioner": params["preconditioner"]},
            "sghmc": {"friction": params["friction"]},
        }.get(kernel_name, {})
        plain = gradient_estimator(target, params["centre"], params["centre_grad"])
        key_batch, key_step = jax.random.split(key)
        if batch_size == n:
            index = jnp.arange(n)
        else:
            index = jax.random.randint(key_batch, (batch_size,), 0, n)
        if method == "structured":
            kstate, buffer = state
            grad_structured = _structured.structured_gradient(
                plain, params["labels"], m, dropout=dropout, num_copies=num_copies
            )
            grad = grad_structured(kstate.position, index, buffer, jax.random.fold_in(key_batch, 1))
            kstate = kernel.step(key_step, kstate, grad, epsilon, noise=noise, **settings)
            return kstate, _structured.ring_push(buffer, kstate.position)
        if method == "entropy":
            # Entropy-MCMC (Li & Zhang 2023): SGLD on p(θ, θ_a) ∝ π(θ) exp(−‖θ − θ_a‖²/2η).
            pair = state.position
            pull = (pair["theta"] - pair["anchor"]) / params["coupling"]
            grad = {"theta": plain(pair["theta"], index) - pull, "anchor": pull}
        else:
            grad = plain(state.position, index)
        return kernel.step(key_step, state, grad, epsilon, noise=noise, **settings)

    def observe(state):
        return (state[0] if method == "structured" else state).position

    fingerprint = {
        "target": target.name,
        "dim": dim,
        "num_data": n,
        "method": method,
        "key": np.asarray(jax.random.key_data(key_run)).tolist(),
        "num_steps": num_steps,
        "num_chains": num_chains,
        "thinning": thinning,
        "batch_size": batch_size,
        "step_size": float(step_sizes[0]),
        "schedule": schedule if isinstance(schedule, str) else "custom",
        "precondition": precondition,
        "control_variates": bool(control_variates),
        "friction": float(friction),
        "coupling": float(coupling),
        "groups": groups if isinstance(groups, str) else np.asarray(groups).tolist(),
        "num_groups": num_groups,
        "base": base,
        "buffer_size": int(buffer_size),
        "dropout": dropout,
        "num_copies": int(num_copies),
    }
    if checkpoint is not None:
        checkpoint = os.fspath(checkpoint)
    paths, _ = run_blocks(
        step,
        states,
        jax.random.split(key_run, num_chains),
        step_sizes,
        thinning=thinning,
        observe=observe,
        params=params,
        cache=(target, (method, kernel_name, batch_size, m, dropout, int(num_copies))),
        progress=should_show(progress, num_steps),
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        fingerprint=fingerprint,
    )
    block_ends = (
        np.minimum(np.arange(1, len(jax.tree.leaves(paths)[0]) + 1) * thinning, num_steps) - 1
    )
    kept = np.flatnonzero(keep[block_ends])
    if kept.size == 0:
        raise ProbinferError("no draws are kept: lower thinning or burn_in, or run longer.")
    for leaf in jax.tree.leaves(paths):
        bad = ~np.all(np.isfinite(leaf.reshape(leaf.shape[0], -1)), axis=1)
        if bad.any():
            first = int(block_ends[np.argmax(bad)])
            raise ProbinferError(
                f"SGMCMC ({method}) diverged (non-finite positions) by step {first} with "
                f"step_size={float(step_sizes[0]):.3g}; use a smaller step size."
            )
    paths = jax.tree.map(lambda p: np.swapaxes(p[kept], 0, 1), paths)  # (chains, kept, dim)
    constrain = jax.jit(jax.vmap(jax.vmap(target.constrain)))
    anchors = None
    if method == "entropy":
        constrained, anchors = constrain(paths["theta"]), constrain(paths["anchor"])
    else:
        constrained = constrain(paths)
    return Posterior(
        {k: np.asarray(v) for k, v in constrained.items()},
        method=method,
        diagnostics={
            "mode": None if mode is None else np.asarray(mode),
            "step_size": float(step_sizes.max()),
            "preconditioned": precondition is not None,
            **({"num_groups": m} if m is not None else {}),
            **(
                {"anchor_draws": {k: np.asarray(v) for k, v in anchors.items()}}
                if anchors is not None
                else {}
            ),
        },
        settings={
            "method": method,
            "batch_size": batch_size,
            "num_steps": num_steps,
            "num_chains": num_chains,
            "thinning": thinning,
            "burn_in": burn_in,
            "precondition": precondition,
            "friction": friction if kernel_name == "sghmc" else None,
            "coupling": coupling if method == "entropy" else None,
            "control_variates": bool(control_variates),
            "schedule": schedule if isinstance(schedule, str) else "custom",
            "num_cycles": int(num_cycles) if schedule == "cyclical" else None,
            "exploration": exploration if schedule == "cyclical" else None,
            "groups": (groups if isinstance(groups, str) else "custom") if m else None,
            "dropout": dropout if m else None,
        },
    )
