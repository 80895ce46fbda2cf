"""Job files: what to run, read from TOML (``tomllib``) or a dict, validated whole before anything
is imported or compiled.

A job names a model, its data, a method with its settings, a seed and an output folder::

    title = "Logistic regression on my data"     # optional
    seed = 0
    out = "runs/logreg"                          # relative to the job file's folder

    [model]
    name = "model.py:logistic"     # a zoo name, "package.module:function" or "file.py:function"
    data = ["x", "y"]              # arguments whose leading axis indexes data points (optional)
    args = { prior_sd = 2.0 }      # other keyword arguments, inline (numbers, strings, arrays)

    [data]
    file = "patients.csv"          # .csv, .npz or .parquet, relative to the job file
    columns = { x = ["age", "bmi"], y = "outcome" }   # model argument = column(s)

    [method]
    name = "smc"
    num_particles = 4000           # any setting the runner takes (`probinfer run --help`)

    [calibrate]                    # optional: TARP + SBC on data simulated from the model
    num_sims = 100
    num_draws = 500

    [compare]                      # optional: other models, same data and method, by PSIS-LOO
    models = ["model.py:robust", { name = "model.py:logistic", args = { prior_sd = 10.0 } }]

    [distributed]                  # optional: one process of a multi-host run
    coordinator = "10.0.0.1:1234"
    num_processes = 2
    process_id = 0

``model = "eight_schools"`` and ``method = "smc"`` are shorthands for tables with only a name.
Every problem is reported at once, one sentence each, naming the key and the file.
"""

import difflib
import os
import tomllib
from dataclasses import dataclass, field

from probinfer.errors import ProbinferError

__all__ = ["JobError", "JobSpec", "read_job", "SCHEMA"]


class JobError(ProbinferError):
    """A job file (or dict) that cannot be run as written."""


# Key → (accepted types, description). Tables hold their own schemas.
SCHEMA = {
    "title": ((str,), "a title for the report"),
    "seed": ((int,), "the random seed (an integer)"),
    "out": ((str,), "the output folder"),
    "model": ((str, dict), "the model: a name or a table"),
    "data": ((dict,), "the data file and its columns"),
    "method": ((str, dict), "the method: a name or a table with its settings"),
    "calibrate": ((dict,), "a calibration check after the run"),
    "distributed": ((dict,), "multi-process settings"),
    "report": ((dict,), "what the report holds"),
    "compare": ((dict,), "other models to fit with the same data and method, compared by LOO"),
}
MODEL_SCHEMA = {
    "name": ((str,), "a zoo name, 'package.module:function' or 'file.py:function'"),
    "data": ((list,), "names of the minibatchable data arguments"),
    "args": ((dict,), "keyword arguments of the model"),
}
COMPARE_SCHEMA = {
    "models": ((list,), "the other models: names or tables like [model]"),
}
DATA_SCHEMA = {
    "file": ((str,), "a .csv, .npz or .parquet file"),
    "columns": ((dict,), "model argument = column name or list of column names"),
}
CALIBRATE_SCHEMA = {
    "num_sims": ((int,), "simulated data sets"),
    "num_draws": ((int,), "posterior draws per data set"),
    "method": ((str,), "the method to check (default: the job's method)"),
    "settings": (
        (dict,),
        "settings of the method for each simulated data set (nle, nre: their runner's)",
    ),
    "local_c2st": ((bool,), "also L-C2ST at the job's data (an npe job's estimator)"),
}
DISTRIBUTED_SCHEMA = {
    "coordinator": ((str,), "host:port of process 0"),
    "num_processes": ((int,), "how many processes take part"),
    "process_id": ((int,), "this process's index (default: from the cluster's environment)"),
}
REPORT_SCHEMA = {
    "plots": ((bool,), "write PNG plots and embed them in report.html"),
    "max_components": ((int,), "at most this many scalar components in the plots"),
}
# Settings a job sets itself: the user does not pass them as method settings.
RESERVED_SETTINGS = ("target", "key", "progress", "checkpoint")


@dataclass
class JobSpec:
    """A validated job. Paths are absolute (resolved against ``base_dir``)."""

    model: str
    method: str
    settings: dict = field(default_factory=dict)
    model_args: dict = field(default_factory=dict)
    model_data: tuple = ()
    data_file: str | None = None
    data_columns: dict = field(default_factory=dict)
    seed: int = 0
    out: str = "probinfer-report"
    title: str | None = None
    calibrate: dict | None = None
    distributed: dict | None = None
    report: dict = field(default_factory=dict)
    source: str = "<dict>"
    raw: dict = field(default_factory=dict)
    model_given: str = ""  # ``model.name`` as written (for messages)
    #: ``[compare]``'s models: ``{"name", "given", "args", "data"}`` each, names resolved.
    alternatives: list = field(default_factory=list)


def _type_name(types):
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
    names.update({dict: "a table", list: "a list"})
    return " or ".join(names.get(t, t.__name__) for t in types)


def _is(value, types):
    if isinstance(value, bool) and bool not in types:
        return False  # TOML's true is not an integer
    return isinstance(value, types)


def _check_table(table, schema, where, source, problems):
    """Unknown keys (with the closest valid one) and wrong types, appended to ``problems``."""
    for key, value in table.items():
        name = f"{where}.{key}" if where else key
        if key not in schema:
            close = difflib.get_close_matches(key, list(schema), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            problems.append(
                f"{source}: unknown key '{name}'{hint}; valid keys are {sorted(schema)}."
            )
        elif not _is(value, schema[key][0]):
            problems.append(
                f"{source}: '{name}' must be {_type_name(schema[key][0])} "
                f"({schema[key][1]}), got {value!r}."
            )


def _table(value, key):
    return {"name": value} if isinstance(value, str) else dict(value)


def _read_toml(source):
    """The job file's table: UTF-8 (a byte-order mark, as some editors write, is allowed), or
    one sentence naming the file and the first byte that is not."""
    with open(source, "rb") as fh:
        data = fh.read()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise JobError(
            f"{source}: not UTF-8 text (byte {data[exc.start]:#04x} on line {line}); save the "
            "job file as UTF-8."
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise JobError(f"{source}: not valid TOML ({exc}).") from None


def read_job(job, *, base_dir=None, problems=None):
    """A :class:`JobSpec` from a TOML path or a dict, or a :class:`JobError` listing every
    problem. Relative paths resolve against the job file's folder (a dict's: ``base_dir`` or
    the working directory). Method settings are checked later, against the runner.

    With a ``problems`` list, the problems are appended to it instead of raised, and a spec is
    still returned when the model and the method are named (so the caller can check those too);
    otherwise None."""
    collect = problems
    problems = []
    if isinstance(job, (str, os.PathLike)):
        source = os.fspath(job)
        if not os.path.isfile(source):
            raise JobError(f"job file '{source}' does not exist.")
        raw = _read_toml(source)
        base_dir = os.path.dirname(os.path.abspath(source)) if base_dir is None else base_dir
    elif isinstance(job, dict):
        source, raw = "job", dict(job)
    else:
        raise JobError(f"a job is a path to a TOML file or a dict, got {type(job).__name__}.")
    base_dir = os.path.abspath(base_dir or os.getcwd())
    problems = []
    _check_table(raw, SCHEMA, "", source, problems)
    for key in ("model", "method"):
        if key not in raw:
            problems.append(f"{source}: '{key}' is missing; {SCHEMA[key][1]} is required.")
    model = _table(raw["model"], "model") if _is(raw.get("model"), (str, dict)) else {}
    method = _table(raw["method"], "method") if _is(raw.get("method"), (str, dict)) else {}
    data = raw.get("data") if _is(raw.get("data"), (dict,)) else {}
    subtables = [
        ("model", model, MODEL_SCHEMA),
        ("data", data, DATA_SCHEMA),
        ("calibrate", raw.get("calibrate"), CALIBRATE_SCHEMA),
        ("distributed", raw.get("distributed"), DISTRIBUTED_SCHEMA),
        ("report", raw.get("report"), REPORT_SCHEMA),
    ]
    for where, table, schema in subtables:
        if _is(table, (dict,)):
            _check_table(table, schema, where, source, problems)
    if model and "name" not in model:
        problems.append(f"{source}: 'model.name' is missing; {MODEL_SCHEMA['name'][1]}.")
    if method and not _is(method.get("name"), (str,)):
        problems.append(f"{source}: 'method.name' is missing; name a method, e.g. 'mcmc'.")
    if data and "file" not in data:
        problems.append(f"{source}: 'data.file' is missing; a [data] table reads one file.")
    alternatives = _alternatives(raw.get("compare"), source, base_dir, problems)
    names = model.get("data", [])
    if _is(names, (list,)) and not all(isinstance(n, str) for n in names):
        problems.append(f"{source}: 'model.data' must list argument names (strings).")
    for arg, cols in (data.get("columns") or {}).items():
        if not (
            isinstance(cols, str)
            or (isinstance(cols, list) and cols and all(isinstance(c, str) for c in cols))
        ):
            problems.append(
                f"{source}: 'data.columns.{arg}' must be a column name or a list of them, "
                f"got {cols!r}."
            )
    data_file = None
    if _is(data.get("file"), (str,)):
        data_file = os.path.join(base_dir, data["file"])
        if not os.path.isfile(data_file):
            problems.append(
                f"{source}: 'data.file' names '{data['file']}', which does not exist "
                f"(looked in {base_dir})."
            )
        elif os.path.splitext(data_file)[1].lower() not in (".csv", ".npz", ".parquet"):
            problems.append(
                f"{source}: 'data.file' must be a .csv, .npz or .parquet file, got "
                f"'{data['file']}'."
            )
    named = _is(model.get("name"), (str,)) and _is(method.get("name"), (str,))
    if collect is not None:
        collect.extend(problems)
        if not named or any("'data." in p or "'model." in p for p in problems):
            return None
    elif problems:
        raise JobError("\n".join(problems))
    settings = {k: v for k, v in method.items() if k != "name"}
    out = raw.get("out", "probinfer-report")
    return JobSpec(
        model=_resolve_model_path(model["name"], base_dir),
        method=method["name"],
        settings=settings,
        model_args=dict(model.get("args", {})),
        model_data=tuple(model.get("data", ())),
        data_file=data_file if os.path.isfile(data_file or "") else None,
        data_columns=dict(data.get("columns", {})),
        seed=raw.get("seed", 0),
        out=os.path.join(base_dir, out),
        title=raw.get("title"),
        calibrate=raw.get("calibrate"),
        distributed=raw.get("distributed"),
        report=dict(raw.get("report", {})),
        source=source,
        raw=raw,
        model_given=model["name"],
        alternatives=alternatives,
    )


def _alternatives(table, source, base_dir, problems):
    """``[compare]``'s models, each checked as a ``[model]`` table (a name is a table with only
    a name); problems appended."""
    if not _is(table, (dict,)):
        return []
    _check_table(table, COMPARE_SCHEMA, "compare", source, problems)
    entries = table.get("models", [])
    if not _is(entries, (list,)) or not entries:
        problems.append(
            f"{source}: 'compare.models' must list at least one model (a name or a table with "
            "'name', 'args', 'data')."
        )
        return []
    found = []
    for i, entry in enumerate(entries):
        where = f"compare.models[{i}]"
        entry = {"name": entry} if isinstance(entry, str) else entry
        if not isinstance(entry, dict) or not _is(entry.get("name"), (str,)):
            problems.append(f"{source}: '{where}' must be a model name or a table with 'name'.")
            continue
        _check_table(entry, MODEL_SCHEMA, where, source, problems)
        found.append(
            {
                "name": _resolve_model_path(entry["name"], base_dir),
                "given": entry["name"],
                "args": dict(entry.get("args", {})),
                "data": tuple(entry.get("data", ())),
            }
        )
    return found


def _resolve_model_path(name, base_dir):
    """``file.py:function`` becomes absolute; zoo names and module paths stay as they are."""
    path, sep, function = name.rpartition(":")
    if sep and path.endswith(".py"):
        return f"{os.path.join(base_dir, path)}:{function}"
    return name
