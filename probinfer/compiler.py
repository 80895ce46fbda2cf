"""``compile``: a model written in the model language becomes a :class:`~probinfer.Target`
(the model is read once by :func:`probinfer.tracing.analyse`); ``as_target``: whatever a user
hands a runner (a model function, a Target, a zoo example or its name) as a Target.

>>> target = pi.compile(model, x, y=y, data=("x", "y"))     # doctest: +SKIP
"""

import inspect
from collections import OrderedDict

import jax.numpy as jnp

from probinfer.errors import DataError, ModelError
from probinfer.target import Target
from probinfer.tracing import analyse

__all__ = ["compile", "as_target"]


def as_target(model, model_args=(), model_kwargs=None, data=()):
    """A :class:`Target` from what a user may hand a runner that takes a *model*: a model
    function (compiled with ``model_args``, ``model_kwargs`` and ``data``), a Target, a zoo
    :class:`~probinfer.models.Example` or a zoo name."""
    if isinstance(model, Target):
        return model
    if isinstance(model, str):
        from probinfer._utils import zoo

        return zoo().get(model).compile()
    if hasattr(model, "compile") and not callable(model):  # a zoo Example
        return model.compile()
    if callable(model):
        return compile(model, *model_args, data=data, **(model_kwargs or {}))
    raise ModelError(
        f"expected a model function, a compiled Target, a zoo Example or a zoo name; got "
        f"{type(model).__name__}."
    )


def compile(model, *args, data=(), prior_sites=(), name=None, **kwargs):  # noqa: A001
    """Compile a model in the model language into a :class:`Target`.

    Args:
        model: a Python function using ``probinfer.sample`` / ``plate`` / ``factor`` / ...
            (any NumPyro model).
        *args, **kwargs: the model's arguments, as you would call it (observations included).
        data: names of the model's parameters whose leading axis indexes data points; they are
            what ``minibatch_log_density`` slices. All must share the leading size ``N``.
        prior_sites: observed or ``factor`` sites to count in the prior instead of the likelihood
            (by default every ``factor`` is part of the likelihood, so tempering reaches it).
        name: label used in messages (defaults to the function's name).

    Returns:
        Target with ``dim``, ``log_density``, ``log_prior``, ``log_likelihood``,
        ``minibatch_log_density``, ``constrain``, ``unconstrain``, ``init``, ``sample_prior``,
        ``simulate``.

    Example:
        >>> import probinfer as pi
        >>> from probinfer import dist
        >>> def model(x, y=None):
        ...     w = pi.sample("w", dist.Normal(0, 1).expand([x.shape[1]]).to_event(1))
        ...     with pi.plate("data", x.shape[0]):
        ...         pi.sample("y", dist.Bernoulli(logits=x @ w), obs=y)
        >>> target = pi.compile(model, x, y=y, data=("x", "y"))     # doctest: +SKIP
    """
    name = name or getattr(model, "__name__", "model")
    signature = inspect.signature(model)
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise ModelError(
            f"compile() got arguments that do not fit {name}{signature}: {exc}."
        ) from exc
    bound.apply_defaults()
    if isinstance(data, str):
        data = (data,)
    unknown = [d for d in data if d not in bound.arguments]
    if unknown:
        raise DataError(
            f"data names {unknown} are not parameters of {name}{signature}; name the model "
            f"arguments that hold data points (one of {list(signature.parameters)})."
        )
    shapes = {}
    for d in data:
        value = bound.arguments[d]
        if value is None or jnp.ndim(value) == 0:
            raise DataError(
                f"data argument '{d}' of {name} is {'None' if value is None else 'a scalar'}; "
                "data arguments must be arrays whose leading axis indexes data points."
            )
        shapes[d] = tuple(jnp.shape(value))
    if len({s[0] for s in shapes.values()}) > 1:
        listed = ", ".join(f"'{k}' {v}" for k, v in shapes.items())
        raise DataError(
            f"data arguments of {name} disagree in their leading (data-point) dimension: {listed}; "
            "every data argument must have one row per data point."
        )
    arguments = OrderedDict(
        (k, jnp.asarray(v) if k in data else v) for k, v in bound.arguments.items()
    )
    structure = analyse(model, signature, arguments, tuple(data), prior_sites, name)
    return Target(model, signature, arguments, data, structure, name)
