"""From a validated :class:`JobSpec` to the things a run needs: the model function and its
arguments (inline values and data-file columns), the runner and its checked settings.

Nothing here compiles: every problem is found and named before the first trace.
"""

import difflib
import importlib
import importlib.util
import inspect
import os

import numpy as np

from probinfer._utils import read_npz
from probinfer.jobs.spec import RESERVED_SETTINGS, JobError

__all__ = ["load_model", "load_data", "model_arguments", "runner_settings"]


def load_model(spec):
    """``(model function, zoo Example or None)`` named by ``spec.model``."""
    from probinfer._utils import zoo

    models = zoo()

    name = spec.model
    if ":" not in name:
        if name not in models.ZOO:
            close = difflib.get_close_matches(name, list(models.ZOO), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise JobError(
                f"{spec.source}: 'model.name' = '{name}' is not in the zoo{hint}; use a zoo name "
                "(`probinfer models`), 'package.module:function' or 'file.py:function'."
            )
        example = models.get(name)
        return example.model, example
    where, _, function = name.rpartition(":")
    given = spec.model_given.rpartition(":")[0] or where
    if where.endswith(".py"):
        if not os.path.isfile(where):
            raise JobError(
                f"{spec.source}: 'model.name' names the file '{given}', which does not exist."
            )
        module_name = f"probinfer_job_{abs(hash(where))}"
        module_spec = importlib.util.spec_from_file_location(module_name, where)
        module = importlib.util.module_from_spec(module_spec)
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:
            raise JobError(
                f"{spec.source}: importing the model file '{given}' failed: "
                f"{type(exc).__name__}: {exc}."
            ) from exc
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise JobError(
                f"{spec.source}: 'model.name' = '{name}': cannot import module '{where}' ({exc})."
            ) from exc
    model = getattr(module, function, None)
    if not callable(model):
        found = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
        close = difflib.get_close_matches(function, found, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise JobError(
            f"{spec.source}: 'model.name': '{given}' has no function '{function}'{hint}."
        )
    return model, None


def _read_table(path):
    """``{column: 1-D array}`` of a CSV or Parquet file, or the arrays of an NPZ file."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".npz":
        return read_npz(path, "NPZ data file", "write it again with numpy.savez")
    import pandas as pd

    if suffix == ".parquet":
        try:
            frame = pd.read_parquet(path)
        except ImportError as exc:
            raise JobError(
                f"reading '{path}' needs a Parquet engine: pip install pyarrow ({exc})."
            ) from exc
    else:
        frame = pd.read_csv(path)
    return {str(c): frame[c].to_numpy() for c in frame.columns}


def _check_column(values, file, column):
    """One sentence naming the file, the column and the first row (1 = the first data row) that
    is empty or not a number; an NPZ array is checked alike."""
    values = np.asarray(values)
    if values.dtype == object or values.dtype.kind in "US":
        flat = np.ravel(values)
        first = next((i for i, v in enumerate(flat) if np.isnan(_number(v))), 0)
        row = np.unravel_index(first, values.shape)[0] if values.ndim else 0
        raise JobError(
            f"'{file}': column '{column}' is not numeric (row {row + 1} holds {flat[first]!r}); "
            "models take numbers."
        )
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        row = int(np.flatnonzero(~np.isfinite(values.reshape(len(values), -1)).all(1))[0])
        raise JobError(
            f"'{file}': column '{column}' has {int((~np.isfinite(values)).sum())} empty, NaN or "
            f"infinite cells (the first in row {row + 1}); fill or drop those rows."
        )
    return values


def _number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return np.nan


def _as_array(values, where):
    values = np.asarray(values)
    if values.dtype == object or values.dtype.kind in "US":
        raise JobError(f"{where} is not numeric (dtype {values.dtype}); models take numbers.")
    if values.dtype.kind == "f":
        return values.astype(np.float32)
    if values.dtype.kind in "iub":
        return values.astype(np.int32)
    return values


def load_data(spec):
    """Model arguments read from ``spec.data_file``: ``{argument: array}``. A list of columns is
    stacked into an ``(N, k)`` matrix; without ``columns`` every column (or NPZ array) is an
    argument of its own name."""
    if spec.data_file is None:
        return {}
    table = _read_table(spec.data_file)
    columns = spec.data_columns or {name: name for name in table}
    arguments, problems = {}, []
    for arg, cols in columns.items():
        wanted = [cols] if isinstance(cols, str) else list(cols)
        missing = [c for c in wanted if c not in table]
        for c in missing:
            close = difflib.get_close_matches(c, list(table), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            problems.append(
                f"{spec.source}: 'data.columns.{arg}' names column '{c}', which "
                f"'{os.path.basename(spec.data_file)}' does not have{hint}."
            )
        if missing:
            continue
        where = f"{spec.source}: column(s) {wanted} of '{os.path.basename(spec.data_file)}'"
        for c in wanted:
            _check_column(table[c], spec.data_file, c)
        if isinstance(cols, str):
            arguments[arg] = _as_array(table[cols], where)
        else:
            arguments[arg] = _as_array(np.stack([table[c] for c in wanted], axis=-1), where)
    if problems:
        raise JobError("\n".join(problems))
    return arguments


def _inline(value, where):
    if isinstance(value, list):
        return _as_array(value, where)
    return value


def model_arguments(spec, model, example):
    """``(args, kwargs, data names)`` to compile ``model`` with: the zoo example's own
    arguments, overridden by the job's inline ``model.args`` and data columns by name."""
    signature = inspect.signature(model)
    takes_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    given = {}
    if example is not None:
        given = dict(signature.bind_partial(*example.args, **example.kwargs).arguments)
    inline = {k: _inline(v, f"{spec.source}: 'model.args.{k}'") for k, v in spec.model_args.items()}
    from_file = load_data(spec)
    problems = []
    both = sorted(set(inline) & set(from_file))
    if both:
        problems.append(
            f"{spec.source}: argument(s) {both} are given both in 'model.args' and "
            "in 'data.columns'; give each once."
        )
    given.update(inline)
    given.update(from_file)
    names = list(signature.parameters)
    for arg in given:
        if arg not in signature.parameters and not takes_any:
            close = difflib.get_close_matches(arg, names, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            origin = "data.columns" if arg in from_file else "model.args"
            problems.append(
                f"{spec.source}: '{origin}.{arg}': the model takes no argument "
                f"'{arg}'{hint}; it takes {names}."
            )
    data = spec.model_data or (example.data if example is not None else ())
    for arg in data:
        if arg not in given:
            problems.append(
                f"{spec.source}: 'model.data' names '{arg}', which is not among the "
                f"model's given arguments {sorted(given)}."
            )
    if problems:
        raise JobError("\n".join(problems))
    return given, tuple(data)


def method_names():
    """Every method a job can name: the registered runners and the amortized trainers."""
    from probinfer import runners

    return runners.job_names()


def method_runner(name):
    """The function a job calls for method ``name`` (its signature lists the settings)."""
    from probinfer import runners

    return runners.job_method(name)[0]


def method_settings(runner):
    """``{name: inspect.Parameter}``: the settings a job may give ``runner`` — its keyword
    parameters less the ones a job sets itself (key, progress, checkpoint, …) and the ones its
    name fixes (``kernel`` of the ``hmc`` shorthand)."""
    fixed = set(getattr(runner, "keywords", None) or ())
    return {
        k: p
        for k, p in inspect.signature(runner).parameters.items()
        if k not in RESERVED_SETTINGS and k not in fixed and p.kind is p.KEYWORD_ONLY
    }


def runner_settings(spec):
    """``(runner, settings)``: the registered runner of ``spec.method`` and the job's settings,
    each checked against the runner's signature (name and, where its default says, type)."""
    from probinfer._utils import renamed_in

    known = method_names()
    if spec.method not in known:
        close = difflib.get_close_matches(str(spec.method), known, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise JobError(
            f"{spec.source}: 'method.name': unknown method '{spec.method}'{hint}; choose one "
            f"of {known}."
        )
    try:
        runner = method_runner(spec.method)
    except Exception as exc:
        raise JobError(f"{spec.source}: 'method.name': {exc}") from None
    parameters = method_settings(runner)
    valid = sorted(parameters)
    renamed = renamed_in(runner)  # settings 0.2.0 renamed: their error names the new spelling
    problems = []
    for name, value in spec.settings.items():
        if name not in parameters:
            close = difflib.get_close_matches(name, valid, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            if name in renamed:
                hint = f" (0.2.0 replaced it with {renamed[name]})"
            problems.append(
                f"{spec.source}: method '{spec.method}' has no setting "
                f"'method.{name}'{hint}; it takes {valid}."
            )
            continue
        default = parameters[name].default
        expected = _expected_type(default)
        if expected and not _matches(value, expected):
            problems.append(
                f"{spec.source}: 'method.{name}' must be {expected[1]} (the default "
                f"is {default!r}), got {value!r}."
            )
    if problems:
        raise JobError("\n".join(problems))
    return runner, dict(spec.settings)


def _expected_type(default):
    if isinstance(default, bool):
        return (bool,), "true or false"
    if isinstance(default, int):
        return (int,), "an integer"
    if isinstance(default, float):
        return (int, float), "a number"
    return None


def _matches(value, expected):
    types = expected[0]
    if isinstance(value, bool):
        return bool in types
    return isinstance(value, types)
