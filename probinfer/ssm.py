"""``StateSpaceModel``: a state-space model in Feynman–Kac form, as plain per-particle functions,
and :func:`state_space`, which builds one from three small models in the model language.

It lives in the core so the model zoo can build one and the particle filters
(:mod:`probinfer.inference.smc`) can run it without either importing the other.
"""

from collections.abc import Callable
from typing import NamedTuple

import jax.numpy as jnp
from numpyro import handlers

from probinfer.errors import ModelError

__all__ = ["StateSpaceModel", "state_space"]


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


def _site(model, name, kind):
    """The single latent (kind="latent") sample site of a traced step model, checked."""
    sites = [
        site
        for site in model.values()
        if site["type"] == "sample" and (not site["is_observed"]) == (kind == "latent")
    ]
    if len(sites) != 1:
        found = [site["name"] for site in sites]
        raise ModelError(
            f"the {name} model must have exactly one {kind} sample site (the state"
            f"{'' if kind == 'latent' else ' observation'}); it has {found}."
        )
    return sites[0]


def _trace_once(model, name, arguments, *args):
    """The trace of one call of a step model, or one sentence naming the step and its call."""
    try:
        return handlers.trace(handlers.seed(model, 0)).get_trace(*args)
    except TypeError as error:
        raise ModelError(
            f"calling the {name} model as {getattr(model, '__name__', name)}{arguments} failed "
            f"({error}); state_space calls initial(), transition(x_prev, t) and "
            "observation(x, t, y)."
        ) from None


def state_space(initial, transition, observation):
    """A :class:`StateSpaceModel` from three models written with ``pi.sample``:

    * ``initial()`` samples the state x_0 (one latent site);
    * ``transition(x_prev, t)`` samples x_t given x_{t−1} (one latent site);
    * ``observation(x, t, y)`` observes y_t given x_t (``pi.sample(..., obs=y)``).

    The state may have any shape; the filter sees it flattened to ``(dx,)``. The log densities
    (``log_transition``, ``log_potential``) come from the sites' distributions, so backward
    sampling works too.

    >>> def initial():
    ...     return pi.sample("x", dist.Normal(0.0, 1.0))
    >>> def transition(x, t):
    ...     return pi.sample("x", dist.Normal(0.9 * x, 0.5))
    >>> def observation(x, t, y):
    ...     pi.sample("y", dist.Normal(x, 1.0), obs=y)
    >>> ssm = state_space(initial, transition, observation)   # doctest: +SKIP
    """
    prototype = _trace_once(initial, "initial", "()")
    x0 = _site(prototype, "initial", "latent")["value"]
    shape = jnp.shape(x0)
    step = _trace_once(transition, "transition", "(x_prev, t)", x0, 0)
    state = _site(step, "transition", "latent")
    state_name = state["name"]
    if jnp.shape(state["value"]) != shape:
        raise ModelError(
            f"the transition model's state has shape {jnp.shape(state['value'])} but the "
            f"initial model's has shape {shape}; the state must keep one shape over time."
        )

    def unflatten(x):
        return jnp.reshape(x, shape)

    def latent(model, key, *args):
        tr = handlers.trace(handlers.seed(model, key)).get_trace(*args)
        return jnp.ravel(_site(tr, "transition" if args else "initial", "latent")["value"])

    def log_transition(x, x_prev, t):
        fixed = handlers.substitute(handlers.seed(transition, 0), data={state_name: unflatten(x)})
        tr = handlers.trace(fixed).get_trace(unflatten(x_prev), t)
        site = _site(tr, "transition", "latent")
        return jnp.sum(site["fn"].log_prob(site["value"]))

    def log_potential(x, y, t):
        tr = handlers.trace(handlers.seed(observation, 0)).get_trace(unflatten(x), t, y)
        site = _site(tr, "observation", "observed")
        return jnp.sum(site["fn"].log_prob(site["value"]))

    return StateSpaceModel(
        initial=lambda key: latent(initial, key),
        transition=lambda key, x, t: latent(transition, key, unflatten(x), t),
        log_potential=log_potential,
        log_transition=log_transition,
    )
