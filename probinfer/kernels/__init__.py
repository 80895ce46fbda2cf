"""Shared MCMC kernels and their adaptation pieces, for every family to compose.

A kernel is a :class:`Kernel`: a NamedTuple of pure functions (as optax's
``GradientTransformation``) with the transition's own options fixed by its constructor —

* ``init(position, log_density_fn) -> State``
* ``step(key, state, log_density_fn, step_size, inverse_mass_matrix) -> (State, Info)``

``State`` has ``position`` (dim,) and ``log_density``; ``Info`` has ``acceptance_rate``,
``is_accepted`` and ``is_divergent``. The MCMC runner chains kernels, SMC mutates particles with
them, PMMH proposes with the random walk. A user's own kernel of this shape works everywhere a
name does.

>>> kernel = hmc(num_integration_steps=10)
>>> state = kernel.init(jnp.zeros(2), log_density_fn)                        # doctest: +SKIP
>>> state, info = kernel.step(key, state, log_density_fn, 0.1, jnp.ones(2))  # doctest: +SKIP
"""

import difflib
from collections.abc import Callable
from functools import cache, partial
from typing import NamedTuple

from probinfer.errors import ProbinferError
from probinfer.kernels import adaptation
from probinfer.kernels import hmc as _hmc
from probinfer.kernels import mala as _mala
from probinfer.kernels import mams as _mams
from probinfer.kernels import mclmc as _mclmc
from probinfer.kernels import nuts as _nuts
from probinfer.kernels import rwm as _rwm

__all__ = [
    "Kernel",
    "nuts",
    "hmc",
    "mams",
    "mclmc",
    "mala",
    "rwm",
    "get",
    "NAMES",
    "adaptation",
    "is_nuts",
]


class Kernel(NamedTuple):
    """A Markov transition (see the module docstring).

    Attributes:
        name: label stored in ``Posterior.settings["kernel"]``.
        init: ``(position (dim,), log_density_fn) -> State``.
        step: ``(key, state, log_density_fn, step_size, inverse_mass_matrix (dim,)) ->
            (State, Info)``.
        target_accept: acceptance rate a runner tunes the step size to.
        initial_step_size: ``dim -> float``, a first step size for a unit-scale target.
        options: the constructor's settings (recorded with the run).
    """

    name: str
    init: Callable
    step: Callable
    target_accept: float
    initial_step_size: Callable
    options: tuple = ()


@cache  # one object per options: programs cache on it
def nuts(max_tree_depth=10, dense_mass=False):
    """The No-U-Turn Sampler (NumPyro's, :mod:`probinfer.kernels.nuts`): trajectory lengths
    chosen per transition, trees up to ``max_tree_depth`` (2^depth − 1 leapfrog steps), a
    diagonal or ``dense_mass`` inverse mass matrix; its step size is tuned to 0.8 acceptance.
    It drives :func:`probinfer.mcmc` (its default); SMC and PMMH take the kernels below."""
    if int(max_tree_depth) < 1:
        raise ProbinferError(f"max_tree_depth must be ≥ 1, got {max_tree_depth}.")
    return Kernel(
        "nuts",
        _nuts.not_a_transition,
        _nuts.not_a_transition,
        0.8,
        _nuts.initial_step_size,
        (("max_tree_depth", int(max_tree_depth)), ("dense_mass", bool(dense_mass))),
    )


def is_nuts(kernel):
    """Whether ``kernel`` is :func:`nuts` (which has no standalone transition)."""
    return isinstance(kernel, Kernel) and kernel.step is _nuts.not_a_transition


@cache  # one object per options: programs cache on it
def hmc(num_integration_steps=16, divergence_threshold=1000.0):
    """Hamiltonian Monte Carlo with ``num_integration_steps`` leapfrog steps
    (:mod:`probinfer.kernels.hmc`); its step size is tuned to 0.8 acceptance by default."""
    if int(num_integration_steps) < 1:
        raise ProbinferError(f"num_integration_steps must be ≥ 1, got {num_integration_steps}.")
    step = partial(
        _hmc.step,
        num_integration_steps=int(num_integration_steps),
        divergence_threshold=float(divergence_threshold),
    )
    return Kernel(
        "hmc",
        _hmc.init,
        step,
        0.8,
        partial(adaptation.initial_step_size, "hmc"),
        (("num_integration_steps", int(num_integration_steps)),),
    )


@cache  # one object per options: programs cache on it
def mams(max_num_steps=128, divergence_threshold=1000.0):
    """Metropolis-adjusted microcanonical HMC (Robnik et al. 2025; BlackJAX's transition,
    :mod:`probinfer.kernels.mams`): isokinetic dynamics with McLachlan's integrator (two gradients
    per step), random trajectory lengths with mean ``L``, exact Metropolis correction. Its step
    size is tuned to 0.9 acceptance (the paper's choice); ``L`` starts at ``√d`` (whitened) and
    :func:`probinfer.mcmc` tunes it from the chains' autocorrelation at the end of warm-up.
    ``max_num_steps`` caps the mean number of steps per transition."""
    if int(max_num_steps) < 1:
        raise ProbinferError(f"max_num_steps must be ≥ 1, got {max_num_steps}.")
    step = partial(
        _mams.step,
        max_num_steps=int(max_num_steps),
        divergence_threshold=float(divergence_threshold),
    )
    return Kernel(
        "mams",
        _mams.init,
        step,
        0.9,
        _mams_initial_step_size,
        (("max_num_steps", int(max_num_steps)),),
    )


@cache  # one object per options: programs cache on it
def mclmc(max_num_steps=128, divergence_threshold=1000.0):
    """Unadjusted microcanonical Langevin Monte Carlo (Robnik et al. 2023; BlackJAX's integrator
    step, :mod:`probinfer.kernels.mclmc`): MAMS's isokinetic dynamics with partial velocity
    refreshment and no Metropolis correction; a transition is ``round(L / ε)`` steps. Its step
    size is tuned so that the energy error per dimension is the paper's ``5·10⁻⁴`` (dual
    averaging on ``1 / (1 + ξ/ξ*)`` to 0.5); ``L`` as MAMS's. Unadjusted, so biased: variances
    2–6 % low on a 10-D Gaussian (measured); use ``"mams"`` when exactness matters."""
    if int(max_num_steps) < 1:
        raise ProbinferError(f"max_num_steps must be ≥ 1, got {max_num_steps}.")
    step = partial(
        _mclmc.step,
        max_num_steps=int(max_num_steps),
        divergence_threshold=float(divergence_threshold),
    )
    return Kernel(
        "mclmc",
        _mclmc.init,
        step,
        0.5,
        _mams_initial_step_size,
        (("max_num_steps", int(max_num_steps)),),
    )


def _mams_initial_step_size(dim):
    """BlackJAX's first guess, ``0.2 √d`` (isokinetic steps are long: ``L = √d`` is ~5 steps)."""
    return 0.2 * max(int(dim), 1) ** 0.5


@cache  # one object per options: programs cache on it
def mala():
    """Metropolis-adjusted Langevin (:mod:`probinfer.kernels.mala`), tuned to 0.57 acceptance."""
    return Kernel(
        "mala", _mala.init, _mala.step, 0.57, partial(adaptation.initial_step_size, "mala")
    )


@cache  # one object per options: programs cache on it
def rwm():
    """Gaussian random-walk Metropolis (:mod:`probinfer.kernels.rwm`), tuned to 0.234."""
    return Kernel("rwm", _rwm.init, _rwm.step, 0.234, partial(adaptation.initial_step_size, "rwm"))


NAMES = {"nuts": nuts, "hmc": hmc, "mams": mams, "mclmc": mclmc, "mala": mala, "rwm": rwm}


def get(kernel, **options):
    """A :class:`Kernel` from a registered name (built with ``options``) or a kernel object
    (returned as is). Unknown names get the closest valid one in the error."""
    if isinstance(kernel, Kernel):
        if options:
            raise ProbinferError(
                f"options {sorted(options)} belong in the kernel's constructor; pass "
                f"probinfer.kernels.{kernel.name}(...) with them instead."
            )
        return kernel
    if isinstance(kernel, str) and kernel in NAMES:
        return NAMES[kernel](**options)
    if hasattr(kernel, "init") and hasattr(kernel, "step"):
        raise ProbinferError(
            "a kernel object must be a probinfer.kernels.Kernel (name, init, step, "
            "target_accept, initial_step_size); wrap your init/step pair in one."
        )
    close = difflib.get_close_matches(str(kernel), list(NAMES), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise ProbinferError(f"unknown kernel '{kernel}'{hint}; choose one of {sorted(NAMES)}.")
