"""``StateSpaceModel``: a state-space model in Feynman–Kac form, as plain per-particle functions.

It lives in the core so the model zoo can build one and the particle filters
(:mod:`probinfer.inference.smc`) can run it without either importing the other.
"""

from collections.abc import Callable
from typing import NamedTuple

__all__ = ["StateSpaceModel"]


class StateSpaceModel(NamedTuple):
    """The Feynman–Kac pieces, all per particle (vmapped by the filter).

    initial: ``key -> x_0`` (shape (dx,)); transition: ``(key, x_{t−1}, t) -> x_t``;
    log_potential: ``(x_t, y_t, t) -> scalar``; log_transition: optional ``(x_t, x_{t−1}, t) ->
    scalar`` (needed by guided filters and backward sampling); proposal and log_proposal: optional
    guided proposal ``(key, x_{t−1}, y_t, t) -> x_t`` and its log density ``(x_t, x_{t−1}, y_t, t)``.
    """

    initial: Callable
    transition: Callable
    log_potential: Callable
    log_transition: Callable | None = None
    proposal: Callable | None = None
    log_proposal: Callable | None = None
