"""Stochastic-gradient MCMC kernels on pytrees (BNN weights are pytrees, not flat vectors).

Every kernel is an :class:`SGKernel`, built by a constructor that holds its options
(``sghmc(friction=0.2)``), with the shape shared by every kernel in probinfer:

* ``init(position) -> State`` (``State.position`` is the chain's position);
* ``step(key, state, grad_fn, step_size, params, noise=None) -> (State, Info)``, where
  ``grad_fn(position)`` is an estimate of ∇ log π at a position (the runner builds it from a
  minibatch, scaled by N/B — a kernel may evaluate it at other points, as Structured SGMCMC does),
  ``params`` is ``kernel.params`` (the numeric options, passed into the compiled loop as arguments
  so changing them does not recompile), and ``noise`` is optional standard normal noise shaped
  like the position (the runner draws a block of steps at once, 2.5× cheaper per number on a CPU
  than one draw per step; without it the kernel draws its own from ``key``).

The updates, with ε the step size:

* SGLD (Welling & Teh 2011): ``θ ← θ + (ε/2) g + √ε ξ``; with a preconditioner P (a matrix for
  flat positions or a pytree of diagonals), ``θ ← θ + (ε/2) P g + √ε P^{1/2} ξ``. ``"laplace"`` /
  ``"fisher"`` / ``"auto"`` are resolved at the mode by the runner (:mod:`.preconditioning`).
* SGHMC (Chen, Fox & Guestrin 2014), in the (ε, α) parameterisation: ``v ← (1 − α) v + ε g +
  √(2 (α − β̂) ε) ξ``, ``θ ← θ + v``; α is the friction, β̂ an estimate of the gradient noise.
* SGNHT (Ding et al. 2014): a Nosé–Hoover thermostat ξ adapts the friction so that the kinetic
  energy per dimension is 1: ``p ← p + ε g − ξ p ε + √(2 A ε) η``, ``θ ← θ + ε p``,
  ``ξ ← ξ + ε (pᵀp / d − 1)``.
* pSGLD (Li et al. 2016): RMSprop preconditioner ``G = 1 / (λ + √V)``, ``V ← β V + (1 − β) g²``;
  ``θ ← θ + (ε/2) G g + √(ε G) ξ`` (the small Γ correction term is dropped, as in the paper).

Structured SGMCMC (:func:`~.structured.structured`) and Entropy-MCMC (:func:`~.entropy.entropy`)
are kernels of the same shape that wrap a base kernel.

>>> kernel = sghmc(friction=0.1)
>>> state = kernel.init(params)                                                     # doctest: +SKIP
>>> state, info = kernel.step(key, state, grad_fn, 1e-4, kernel.params)             # doctest: +SKIP
"""

import difflib
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from probinfer.errors import ProbinferError

__all__ = [
    "SGKernel",
    "SGMCMCInfo",
    "SGLDState",
    "SGHMCState",
    "SGNHTState",
    "PSGLDState",
    "sgld",
    "sghmc",
    "sgnht",
    "psgld",
    "get",
    "NAMES",
    "tree_normal",
]


class SGKernel(NamedTuple):
    """A stochastic-gradient Markov transition (see the module docstring).

    Attributes:
        name: label stored in ``Posterior.settings["kernel"]``.
        init: ``position -> State``.
        step: ``(key, state, grad_fn, step_size, params, noise=None) -> (State, Info)``.
        params: numeric options (a pytree of arrays or None); travel into the compiled loop.
        static: hashable options that shape the program (part of the compiled loop's cache key).
        prepare: ``(kernel, geometry) -> kernel`` completing what needs the model (a
            preconditioner at the mode, group labels), or None.
        default_step_size: ``geometry -> ε`` used when the user gives none, or None (then a
            step size is required).
        settings: the constructor's options, as recorded in the Posterior.
        outputs: ``paths -> (draws, {diagnostic: paths})`` when the state's position is more
            than the draws (Entropy-MCMC's anchors), or None.
    """

    name: str
    init: Callable
    step: Callable
    params: object = None
    static: tuple = ()
    prepare: Callable = None
    default_step_size: Callable = None
    settings: tuple = ()
    outputs: Callable = None


class SGMCMCInfo(NamedTuple):
    """kinetic_energy: mean squared momentum per coordinate (1 at equilibrium for SGHMC/SGNHT
    with unit mass; NaN for the first-order kernels)."""

    kinetic_energy: jax.Array


def tree_normal(key, tree, leading=()):
    """Standard normal noise shaped like ``tree`` (each leaf with extra ``leading`` axes)."""
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, len(leaves))
    noise = [
        jax.random.normal(k, tuple(leading) + jnp.shape(x), jnp.result_type(x))
        for k, x in zip(keys, leaves, strict=True)
    ]
    return jax.tree.unflatten(treedef, noise)


def _axpy(a, x, y):
    return jax.tree.map(lambda xi, yi: a * xi + yi, x, y)


def _kinetic(momentum):
    leaves = jax.tree.leaves(momentum)
    return sum(jnp.sum(x**2) for x in leaves) / sum(x.size for x in leaves)


_NO_INFO = SGMCMCInfo(jnp.nan)


class SGLDState(NamedTuple):
    position: object


class SGHMCState(NamedTuple):
    position: object
    momentum: object


class SGNHTState(NamedTuple):
    position: object
    momentum: object
    thermostat: jax.Array


class PSGLDState(NamedTuple):
    position: object
    square_avg: object


def _sgld_step(key, state, grad_fn, step_size, params, noise=None):
    grad = grad_fn(state.position)
    preconditioner = params["preconditioner"]
    noise = tree_normal(key, state.position) if noise is None else noise
    scale = jnp.sqrt(step_size * params["temperature"])
    if preconditioner is None:
        drift, diffusion = grad, noise
    elif isinstance(preconditioner, jax.Array) and preconditioner.ndim == 2:
        drift = preconditioner @ grad
        diffusion = jnp.linalg.cholesky(preconditioner) @ noise
    else:
        drift = jax.tree.map(jnp.multiply, preconditioner, grad)
        diffusion = jax.tree.map(lambda p, n: jnp.sqrt(p) * n, preconditioner, noise)
    position = jax.tree.map(
        lambda x, d, n: x + 0.5 * step_size * d + scale * n, state.position, drift, diffusion
    )
    return SGLDState(position), _NO_INFO


def sgld(preconditioner=None, temperature=1.0):
    """Stochastic-gradient Langevin dynamics.

    Args:
        preconditioner: None; a (d, d) matrix or a pytree of positive diagonals shaped like the
            position; or ``"laplace"`` (dense inverse Hessian at the mode), ``"fisher"``
            (inverse diagonal Fisher at the mode) or ``"auto"`` (Laplace up to 1,000 dimensions,
            Fisher above), resolved by the runner (:mod:`.preconditioning`).
        temperature: τ of the injected noise (τ < 1: a cold posterior).
    """
    if isinstance(preconditioner, str) and preconditioner not in ("laplace", "fisher", "auto"):
        raise ProbinferError(
            f"preconditioner must be 'laplace', 'fisher', 'auto', an array or None, got "
            f"'{preconditioner}'."
        )
    named = preconditioner if isinstance(preconditioner, str) else None
    params = {
        "preconditioner": None if named else preconditioner,
        "temperature": jnp.asarray(temperature, jnp.float32),
    }

    def prepare(kernel, geometry):
        if named is None:
            return kernel
        matrix = geometry.preconditioner(named)
        return kernel._replace(params={**kernel.params, "preconditioner": matrix})

    def default_step_size(geometry):
        if named is None:
            return 0.1 * geometry.min_variance
        return geometry.preconditioned_step(named)

    recorded = named or ("custom" if preconditioner is not None else None)
    return SGKernel(
        name="sgld",
        init=SGLDState,
        step=_sgld_step,
        params=params,
        static=("sgld", recorded, preconditioner is None),
        prepare=prepare,
        default_step_size=default_step_size,
        settings=(("preconditioner", recorded), ("temperature", float(temperature))),
    )


def _sghmc_step(key, state, grad_fn, step_size, params, noise=None):
    grad = grad_fn(state.position)
    friction = params["friction"]
    noise = tree_normal(key, state.position) if noise is None else noise
    scale = jnp.sqrt(2.0 * (friction - params["noise_estimate"]) * step_size)
    momentum = jax.tree.map(
        lambda v, g, n: (1.0 - friction) * v + step_size * g + scale * n,
        state.momentum,
        grad,
        noise,
    )
    new = SGHMCState(_axpy(1.0, momentum, state.position), momentum)
    return new, SGMCMCInfo(_kinetic(momentum) / step_size)


def sghmc(friction=0.1, noise_estimate=0.0):
    """Stochastic-gradient HMC with friction α and gradient-noise estimate β̂ (α > β̂ ≥ 0)."""
    if not 0.0 <= noise_estimate < friction:
        raise ProbinferError(
            f"SGHMC needs 0 ≤ noise_estimate < friction; got {noise_estimate} and {friction}."
        )
    return SGKernel(
        name="sghmc",
        init=lambda position: SGHMCState(position, jax.tree.map(jnp.zeros_like, position)),
        step=_sghmc_step,
        params={
            "friction": jnp.asarray(friction, jnp.float32),
            "noise_estimate": jnp.asarray(noise_estimate, jnp.float32),
        },
        static=("sghmc",),
        default_step_size=lambda geometry: 0.1 * geometry.min_variance,
        settings=(("friction", float(friction)), ("noise_estimate", float(noise_estimate))),
    )


def _sgnht_step(key, state, grad_fn, step_size, params, noise=None):
    grad = grad_fn(state.position)
    noise = tree_normal(key, state.position) if noise is None else noise
    scale = jnp.sqrt(2.0 * params["diffusion"] * step_size)
    momentum = jax.tree.map(
        lambda p, g, n: p + step_size * g - state.thermostat * p * step_size + scale * n,
        state.momentum,
        grad,
        noise,
    )
    position = _axpy(step_size, momentum, state.position)
    kinetic = _kinetic(momentum)
    thermostat = state.thermostat + step_size * (kinetic - 1.0)
    return SGNHTState(position, momentum, thermostat), SGMCMCInfo(kinetic)


def sgnht(diffusion=1.0):
    """Stochastic-gradient Nosé–Hoover thermostat with diffusion A (the thermostat starts at A)."""

    def init(position):
        zeros = jax.tree.map(jnp.zeros_like, position)
        return SGNHTState(position, zeros, jnp.asarray(diffusion, jnp.result_type(float)))

    return SGKernel(
        name="sgnht",
        init=init,
        step=_sgnht_step,
        params={"diffusion": jnp.asarray(diffusion, jnp.float32)},
        static=("sgnht", float(diffusion)),
        default_step_size=lambda geometry: 0.3 * geometry.min_variance**0.5,
        settings=(("diffusion", float(diffusion)),),
    )


def _psgld_step(key, state, grad_fn, step_size, params, noise=None):
    grad = grad_fn(state.position)
    decay, epsilon = params["decay"], params["epsilon"]
    square_avg = jax.tree.map(lambda v, g: decay * v + (1.0 - decay) * g**2, state.square_avg, grad)
    preconditioner = jax.tree.map(lambda v: 1.0 / (epsilon + jnp.sqrt(v)), square_avg)
    noise = tree_normal(key, state.position) if noise is None else noise
    position = jax.tree.map(
        lambda x, p, g, n: x + 0.5 * step_size * p * g + jnp.sqrt(step_size * p) * n,
        state.position,
        preconditioner,
        grad,
        noise,
    )
    return PSGLDState(position, square_avg), _NO_INFO


def psgld(decay=0.99, epsilon=1e-5):
    """Preconditioned SGLD with an RMSprop preconditioner (decay β, floor λ); needs a step size
    (its preconditioner has the gradient's scale)."""
    return SGKernel(
        name="psgld",
        init=lambda position: PSGLDState(position, jax.tree.map(jnp.zeros_like, position)),
        step=_psgld_step,
        params={
            "decay": jnp.asarray(decay, jnp.float32),
            "epsilon": jnp.asarray(epsilon, jnp.float32),
        },
        static=("psgld",),
        settings=(("decay", float(decay)), ("epsilon", float(epsilon))),
    )


NAMES = {"sgld": sgld, "sghmc": sghmc, "sgnht": sgnht, "psgld": psgld}


def get(kernel):
    """An :class:`SGKernel` from a registered name (default options) or a kernel object."""
    if isinstance(kernel, SGKernel):
        return kernel
    from probinfer.inference.sgmcmc.entropy import entropy
    from probinfer.inference.sgmcmc.structured import structured

    names = {**NAMES, "structured": structured, "entropy": entropy}
    if isinstance(kernel, str) and kernel in names:
        return names[kernel]()
    close = difflib.get_close_matches(str(kernel), list(names), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise ProbinferError(
        f"unknown SG-MCMC kernel '{kernel}'{hint}; choose one of {sorted(names)} or pass a "
        "kernel object such as probinfer.inference.sgmcmc.sghmc(friction=0.2)."
    )
