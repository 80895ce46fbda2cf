"""Compiled programs, kept: :func:`cached_program` builds a runner's compiled program once per
Target (or once per model) and settings; :class:`DataProgram` is a program whose data are an
argument (:meth:`probinfer.Target.jit`), so the targets :meth:`~probinfer.Target.condition` makes
share it.

>>> run = cached_program(target, ("smc", settings), build, share=True)   # doctest: +SKIP
"""

import weakref

import jax

__all__ = ["cached_program", "DataProgram"]

_PROGRAMS = weakref.WeakKeyDictionary()  # owner (a Target or its program_key) -> {key: program}


class DataProgram:
    """A jitted function of a :class:`~probinfer.Target` whose observed data are an *argument* of
    the compiled program, not constants folded into it; made by :meth:`Target.jit`.

    ``make(target) -> function`` builds the function for a target; each trace calls it with a
    copy of the target that holds the traced data, so every closure is new and read-only (JAX
    caches traced loop bodies by function: a closure reading mutable state would be reused with
    stale values). :meth:`bind` gives the same compiled program for another target of the same
    model (:meth:`Target.condition`), whose data it then passes: a runner called once per
    simulated data set compiles once.
    """

    def __init__(self, target, make, *, static_argnums=(), donate_argnums=()):
        def lifted(data, *args, **kwargs):
            return make(target._with_data(data))(*args, **kwargs)

        def shift(numbers):
            numbers = (numbers,) if isinstance(numbers, int) else tuple(numbers)
            return tuple(i + 1 for i in numbers)

        self._jitted = jax.jit(
            lifted, static_argnums=shift(static_argnums), donate_argnums=shift(donate_argnums)
        )
        self._data = target._data_leaves()

    def bind(self, target):
        """The same compiled program, run on ``target``'s data (a target of the same model)."""
        bound = object.__new__(DataProgram)
        bound._jitted, bound._data = self._jitted, target._data_leaves()
        return bound

    def __call__(self, *args, **kwargs):
        return self._jitted(self._data, *args, **kwargs)


def cached_program(owner, key, build, *, share=False):
    """``build()`` once per weakly referenced ``owner`` and hashable ``key``; later calls return the
    same object. Runners cache their compiled programs here so repeated runs (seeds, benchmarks,
    calibration one simulation at a time) compile once; the cache dies with the Target.

    ``share=True`` — the program reads the target only through :class:`DataProgram` pieces
    (:meth:`Target.jit`; plain functions in it must not read the target's data): it is then
    kept once per *model* and serves every target that :meth:`Target.condition` makes from it,
    each piece bound to the calling target's data.

    >>> run = cached_program(target, ("smc", settings), lambda: jax.jit(program))  # doctest: +SKIP
    """
    programs = _PROGRAMS.setdefault(owner.program_key if share else owner, {})
    if key not in programs:
        programs[key] = build()
    if not share:
        return programs[key]
    return jax.tree.map(
        lambda piece: piece.bind(owner) if isinstance(piece, DataProgram) else piece,
        programs[key],
        is_leaf=lambda piece: isinstance(piece, DataProgram),
    )
