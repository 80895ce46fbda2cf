"""``Example``: a model bundled with its data, ready to compile."""

from collections.abc import Callable
from dataclasses import dataclass, field

from probinfer.compiler import compile

__all__ = ["Example"]


@dataclass(frozen=True)
class Example:
    """A zoo model with its arguments.

    Attributes:
        name: zoo name.
        model: the model function.
        args, kwargs: arguments to call it with (observations included).
        data: names of the minibatchable data arguments.
        description: one line for listings.
        exact: optional dict of exact answers (e.g. ``posterior_mean``, ``log_evidence``).
    """

    name: str
    model: Callable
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    data: tuple = ()
    description: str = ""
    exact: dict = field(default_factory=dict)

    def compile(self):
        """Compile to a :class:`~probinfer.Target`."""
        return compile(self.model, *self.args, data=self.data, name=self.name, **self.kwargs)
