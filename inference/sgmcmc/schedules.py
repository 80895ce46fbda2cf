"""Step-size schedules of the SG-MCMC runner: ``ε_t`` for every step and which steps' draws are
kept. A schedule is a :class:`Schedule`, a name (its defaults) or any optax schedule ``t -> ε_t``.

* ``constant()``: ε throughout.
* ``polynomial(decay_power=0.55)``: Welling & Teh (2011), ``ε_t = ε (1 + t / t₀)^(−γ)``,
  γ ∈ (0.5, 1], t₀ a tenth of the run.
* ``cyclical(num_cycles=4, exploration=0.5)``: cSGMCMC (Zhang et al. 2020): cosine cycles from ε
  to 0; only the sampling phase of each cycle (position in the cycle ≥ ``exploration``) is kept.

>>> post = pi.sgmcmc(target, key=0, schedule=cyclical(num_cycles=8))   # doctest: +SKIP
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from probinfer.errors import ProbinferError

__all__ = ["Schedule", "constant", "polynomial", "cyclical", "get"]


class Schedule(NamedTuple):
    """name; sizes: ``(ε, num_steps) -> (ε_t (num_steps,), kept (num_steps,) bool)``; settings."""

    name: str
    sizes: Callable
    settings: tuple = ()


def constant():
    """ε at every step."""
    return Schedule(
        "constant", lambda step_size, num_steps: (np.full(num_steps, step_size), _all(num_steps))
    )


def polynomial(decay_power=0.55):
    """``ε (1 + t / t₀)^(−decay_power)``, t₀ = num_steps / 10 (Welling & Teh 2011)."""

    def sizes(step_size, num_steps):
        t0 = max(1, num_steps // 10)
        return step_size * (1.0 + np.arange(num_steps) / t0) ** (-decay_power), _all(num_steps)

    return Schedule("polynomial", sizes, (("decay_power", float(decay_power)),))


def cyclical(num_cycles=4, exploration=0.5):
    """``num_cycles`` cosine cycles from ε down to 0, keeping draws of the sampling phases only."""
    if int(num_cycles) < 1 or not 0.0 <= exploration < 1.0:
        raise ProbinferError(
            f"cyclical needs num_cycles ≥ 1 and exploration in [0, 1); got {num_cycles}, "
            f"{exploration}."
        )

    def sizes(step_size, num_steps):
        steps = np.arange(num_steps)
        cycle = int(np.ceil(num_steps / int(num_cycles)))
        cosine = optax.cosine_decay_schedule(step_size, cycle)  # ε/2 (cos(π r) + 1) in a cycle
        values = np.asarray(jax.vmap(cosine)(jnp.asarray(steps % cycle)), np.float64)
        return values, (steps % cycle) / cycle >= exploration

    settings = (("num_cycles", int(num_cycles)), ("exploration", float(exploration)))
    return Schedule("cyclical", sizes, settings)


def _all(num_steps):
    return np.ones(num_steps, bool)


_NAMES = {"constant": constant, "polynomial": polynomial, "cyclical": cyclical}


def get(schedule):
    """A :class:`Schedule` from a name, a Schedule, or an optax schedule ``t -> ε_t``."""
    if isinstance(schedule, Schedule):
        return schedule
    if isinstance(schedule, str) and schedule in _NAMES:
        return _NAMES[schedule]()
    if callable(schedule):

        def sizes(_, num_steps):
            values = jax.vmap(schedule)(jnp.arange(num_steps))
            return np.asarray(values, np.float64), _all(num_steps)

        return Schedule("custom", sizes)
    raise ProbinferError(
        f"schedule must be one of {sorted(_NAMES)}, a Schedule or an optax schedule, got "
        f"'{schedule}'."
    )
