"""Running a job: validate, compile, run with checkpoints in the output folder, write the report.

>>> result = pi.run("experiments/jobs/smc_eight_schools.toml")       # doctest: +SKIP
>>> result.posterior.summary()                                         # doctest: +SKIP
"""

import dataclasses
import inspect
import json
import os
import shutil
import time
import warnings
from dataclasses import dataclass

from probinfer.health import ProbinferWarning
from probinfer.jobs.compare import fit_alternatives, resolve_alternatives
from probinfer.jobs.resolve import load_model, model_arguments, runner_settings
from probinfer.jobs.spec import JobError, JobSpec, read_job

__all__ = ["run", "JobResult", "prepare", "sweep_temporary_files"]

# The MCMC runners' defaults in a job: four chains, as the summary's R-hat needs.
_MCMC_DEFAULTS = {"num_chains": 4}


@dataclass
class JobResult:
    """What :func:`run` returns: the posterior, the report's files, the time taken."""

    posterior: object
    paths: dict
    seconds: float
    resumed: bool
    spec: JobSpec
    calibration: object = None
    #: ``[compare]``: ArviZ's LOO comparison table of the job's models (pandas), or None.
    comparison: object = None


@dataclass
class Prepared:
    """A job resolved up to (not including) compilation."""

    spec: JobSpec
    model: object
    example: object
    arguments: dict
    data: tuple
    runner: object
    settings: dict
    #: ``[compare]``'s models: ``(label, spec, model, arguments, data names)`` each.
    alternatives: list = dataclasses.field(default_factory=list)


def prepare(job, *, out=None, base_dir=None):
    """Read and check everything a job names — keys, types, the model, its data and the method's
    settings — without compiling. Raises :class:`JobError` listing every problem found."""
    problems = []
    spec = read_job(job, base_dir=base_dir, problems=problems)
    if spec is None:
        raise JobError("\n".join(problems))
    if out is not None:
        spec.out = os.path.abspath(os.fspath(out))
    runner = settings = model = example = arguments = data = None
    try:
        runner, settings = runner_settings(spec)
    except JobError as exc:
        problems.append(str(exc))
    try:
        model, example = load_model(spec)
        arguments, data = model_arguments(spec, model, example)
    except JobError as exc:
        problems.append(str(exc))
    problems.extend(_calibrate_problems(spec))
    problems.extend(_unwritable(spec))
    alternatives, found = resolve_alternatives(spec)
    problems.extend(found)
    if problems:
        raise JobError("\n".join(problems))
    if spec.method in ("mcmc", "nuts", "hmc", "mala", "rwm"):
        settings = {**_MCMC_DEFAULTS, **settings}
    return Prepared(spec, model, example, arguments, data, runner, settings, alternatives)


def _unwritable(spec):
    """The report folder must be writable before the run, not after it: the nearest folder of
    ``spec.out`` that exists must be a writable folder (nothing is created here)."""
    if not spec.out:
        return []
    folder = os.path.abspath(spec.out)
    while not os.path.exists(folder):
        folder = os.path.dirname(folder)
    if os.path.isdir(folder) and os.access(folder, os.W_OK | os.X_OK):
        return []
    why = "is a file, not a folder" if not os.path.isdir(folder) else "is not writable"
    return [
        f"{spec.source}: the report folder '{spec.out}' cannot be written ('{folder}' {why}); "
        "choose another 'out' (or --out)."
    ]


def _trains_estimator(method):
    """Whether the job method returns ``(Posterior, trained estimator)``."""
    from probinfer import runners

    return method in runners.job_names() and runners.job_method(method)[1]


def _calibrate_problems(spec):
    """``calibrate`` refits a registered runner on every simulation, or checks the estimator the
    job trains; anything else is a problem of the job file."""
    from probinfer import runners

    if spec.calibrate is None:
        return []
    method = spec.calibrate.get("method", spec.method)
    if method == spec.method and _trains_estimator(method):
        if "settings" in spec.calibrate and not runners.takes_draw_settings(method):
            return [
                f"{spec.source}: 'calibrate.settings' does not apply to '{method}': the "
                "estimator the job trains is checked as it is, without retraining (nle and nre "
                'take settings of their posterior\'s runner, e.g. { method = "smc" }).'
            ]
        return []
    if method in runners.names():
        return []
    return [
        f"{spec.source}: 'calibrate.method' '{method}' cannot be calibrated here (a trained "
        f"estimator is checked only by the job that trains it); choose one of "
        f"{runners.names()} or drop [calibrate]."
    ]


def _initialize_distributed(options):
    """Join a multi-process run (JAX's multi-controller runtime) before any computation."""
    import jax

    from probinfer import devices

    kwargs = {}
    if "coordinator" in options:
        kwargs["coordinator_address"] = options["coordinator"]
    for key in ("num_processes", "process_id"):
        if key in options:
            kwargs[key] = options[key]
    devices.initialize_distributed(**kwargs)
    return jax.process_index()


def _barrier(name):
    """Wait for every process of a multi-process run (nothing in a single-process one)."""
    import jax

    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def sweep_temporary_files(folder):
    """Delete the temporary files (``.tmp-*``) that a writer killed mid-write left in ``folder``
    and its ``checkpoints`` folder; the files they were to replace are intact."""
    for where in (folder, os.path.join(folder, "checkpoints")):
        if os.path.isdir(where):
            for name in os.listdir(where):
                if name.startswith(".tmp-"):
                    os.remove(os.path.join(where, name))


def _save_job(spec, folder):
    from probinfer._utils import atomic_write_bytes

    if spec.source.endswith(".toml") and os.path.isfile(spec.source):
        with open(spec.source, "rb") as fh:
            atomic_write_bytes(os.path.join(folder, "job.toml"), fh.read())
    else:
        text = json.dumps(spec.raw, indent=2, default=repr) + "\n"
        atomic_write_bytes(os.path.join(folder, "job.json"), text.encode())


def _where():
    import jax

    processes = f", {jax.process_count()} processes" if jax.process_count() > 1 else ""
    return f"{jax.default_backend()} ({jax.device_count()} device(s){processes})"


def _header(prepared, seconds, resumed):
    import jax

    import probinfer as pi

    spec, example = prepared.spec, prepared.example
    described = ", ".join(f"{k}={v}" for k, v in prepared.settings.items()) or "defaults"
    model = f"{spec.model}" + (f" ({example.description})" if example is not None else "")
    lines = [
        f"model: {model}",
        f"method: {spec.method} ({described}), seed {spec.seed}",
        f"wall time: {seconds:.1f} s (compilation included)"
        + (", resumed from a checkpoint" if resumed else ""),
        f"probinfer {pi.__version__}, JAX {jax.__version__} on {jax.default_backend()} "
        f"({jax.device_count()} device(s), {jax.process_count()} process(es))",
    ]
    if spec.data_file:
        lines.insert(1, f"data: {os.path.basename(spec.data_file)}")
    return lines


def run(
    job, *, out=None, fresh=False, progress="auto", verbose=False, base_dir=None, distributed=None
):
    """Run a job (a TOML path or a dict; see :mod:`probinfer.jobs.spec`) and write its report.

    The runner checkpoints into ``<out>/checkpoints`` after every chunk; running the same job
    again on the same folder resumes and gives the draws an uninterrupted run gives (``fresh=True``
    deletes the checkpoint and starts over). In a multi-process run (``[distributed]``) every
    process computes and process 0 writes the files.

    Args:
        job: path to a ``.toml`` job file, or a dict of the same shape.
        out: output folder, overriding the job's ``out``.
        fresh: ignore and delete an existing checkpoint.
        progress: progress bars (``True``, ``False`` or ``"auto"``: on a terminal).
        verbose: print what runs, the summary table and where the report went.
        base_dir: folder that a dict job's relative paths are relative to.
        distributed: ``{coordinator, num_processes, process_id}`` entries that override the
            job's ``[distributed]`` table (``probinfer run --process-id`` passes them).

    Returns:
        :class:`JobResult`.
    """
    prepared = prepare(job, out=out, base_dir=base_dir)
    spec = prepared.spec
    writer = True
    if spec.distributed is not None or distributed:
        writer = _initialize_distributed({**(spec.distributed or {}), **(distributed or {})}) == 0
    verbose = verbose and writer  # process 0 speaks for a multi-process run
    progress = progress if writer else False
    say = print if verbose else (lambda *a, **k: None)
    import probinfer as pi

    target = pi.compile(
        prepared.model, data=prepared.data, name=spec.model.split(":")[-1], **prepared.arguments
    )
    settings = dict(prepared.settings)
    folder = spec.out
    checkpoints = os.path.join(folder, "checkpoints")
    if fresh and os.path.isdir(checkpoints) and writer:
        shutil.rmtree(checkpoints)
    _barrier("fresh")  # no process looks for a checkpoint before process 0 has deleted it
    accepts = inspect.signature(prepared.runner).parameters
    resumed = False
    if "checkpoint" in accepts:  # every process reads it; process 0 writes it
        settings["checkpoint"] = checkpoints
        resumed = os.path.isdir(checkpoints) and bool(os.listdir(checkpoints))
    if writer:
        os.makedirs(folder, exist_ok=True)
        sweep_temporary_files(folder)
        _save_job(spec, folder)
    say(f"probinfer {pi.__version__} on {_where()}")
    say(f"model: {spec.model}; {target.dim} unconstrained dims")
    say(
        f"method: {spec.method} "
        f"({', '.join(f'{k}={v}' for k, v in prepared.settings.items()) or 'defaults'}), "
        f"seed {spec.seed}" + ("; resuming from its checkpoint" if resumed else "")
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        # The job prints the run's health sentences under its summary (and in the report).
        warnings.simplefilter("ignore", ProbinferWarning)
        posterior = prepared.runner(target, key=spec.seed, progress=progress, **settings)
    estimator = None
    if _trains_estimator(spec.method):
        posterior, estimator = posterior
        if writer:
            os.makedirs(folder, exist_ok=True)
            estimator.save(os.path.join(folder, "estimator.msgpack"))
    seconds = time.perf_counter() - start
    calibration = None
    if spec.calibrate is not None:
        calibration = _calibrate(prepared, say, estimator)
    comparison = note = None
    if prepared.alternatives:
        _, comparison, note = fit_alternatives(
            prepared,
            (posterior, target),
            settings,
            folder=folder,
            checkpoints=checkpoints,
            progress=progress,
            writer=writer,
            say=say,
        )
    header = _header(prepared, seconds, resumed)
    title = spec.title or f"{spec.model.split(':')[-1].split('/')[-1]} ({spec.method})"
    paths = {}
    if writer:
        report = spec.report
        paths = pi.report.write_report(
            posterior,
            folder,
            title=title,
            header_lines=header,
            calibration=calibration,
            plots=report.get("plots", True),
            max_components=report.get("max_components", 12),
            target=target,
            comparison=comparison if comparison is not None else note,
        )
        if estimator is not None:
            paths["estimator.msgpack"] = os.path.join(folder, "estimator.msgpack")
    result = JobResult(posterior, paths, seconds, resumed, spec, calibration, comparison)
    if verbose:
        _print_summary(result, header)
    return result


def _calibrate(prepared, say, estimator=None):
    """Calibrate the job's method (refitted on every simulation), another named method, or the
    estimator the job trained (one vmapped program: no retraining)."""
    import probinfer as pi

    options = dict(prepared.spec.calibrate)
    method = options.pop("method", prepared.spec.method)
    kwargs = options.pop("settings", {})
    say(f"calibrating {method} on {options.get('num_sims', 200)} simulated data sets …")
    if estimator is not None and method == prepared.spec.method:
        method = estimator  # its draws take the settings (nle, nre) or none were allowed
    return pi.calibrate(
        prepared.model,
        method,
        key=prepared.spec.seed + 1,
        method_kwargs=kwargs,
        model_kwargs=prepared.arguments,
        data=prepared.data,
        **options,
    )


def _print_summary(result, header):
    table = result.posterior.summary()
    print()
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    print()
    for line in header[2:3]:
        print(line)
    from probinfer.health import check

    if result.posterior.log_evidence is not None:
        se = result.posterior.diagnostics.get("log_evidence_se")
        error = "" if se is None else f" ± {se:.3f} (standard error)"
        print(f"log evidence: {result.posterior.log_evidence:.3f}{error}")
    for warning in check(result.posterior, table):
        print(f"warning: {warning}")
    if result.calibration is not None:
        print(result.calibration.verdict())
    if result.comparison is not None:
        print("\nmodel comparison (PSIS-LOO; elpd_diff from the best, with its se 'dse'):")
        print(result.comparison.to_string(float_format=lambda v: f"{v:.2f}"))
    if result.paths:
        names = ", ".join(sorted(os.path.basename(p) for p in result.paths.values()))
        print(f"report written to {result.spec.out}/ ({names})")
