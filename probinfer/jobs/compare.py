"""A job's ``[compare]`` table: other models fitted to the same data with the same method and
seed, each with its own report under ``<out>/compare/<label>/``, and ArviZ's PSIS-LOO comparison
(:func:`probinfer.compare`: elpd_loo, its difference from the best, their standard errors and
stacking weights) in the main report and ``compare.csv``.

>>> [compare]
>>> models = ["model.py:robust", { name = "model.py:wide", args = { prior_sd = 10.0 } }]
"""

import dataclasses
import os
import warnings

from probinfer.errors import ProbinferError
from probinfer.health import ProbinferWarning
from probinfer.jobs.resolve import load_model, model_arguments
from probinfer.jobs.spec import JobError

__all__ = ["resolve_alternatives", "fit_alternatives", "label_of"]


def label_of(given):
    """A model's short name: ``"models.py:robust"`` → ``"robust"``."""
    return given.rpartition(":")[2].split("/")[-1] or given


def resolve_alternatives(spec):
    """``([(label, sub-spec, model, arguments, data names)], problems)`` for ``[compare]``'s
    models, each resolved as the job's own model is (its data file and columns shared)."""
    found, problems = [], []
    labels = {label_of(spec.model_given)}
    for alt in spec.alternatives:
        sub = dataclasses.replace(
            spec,
            model=alt["name"],
            model_given=alt["given"],
            model_args=alt["args"],
            model_data=alt["data"],
            alternatives=[],
        )
        label = label_of(alt["given"])
        if label in labels:
            label = f"{label}-{len(found) + 2}"
        labels.add(label)
        try:
            model, example = load_model(sub)
            arguments, data = model_arguments(sub, model, example)
        except JobError as exc:
            where = f"'compare.models' entry '{alt['given']}'"
            problems.extend(
                line.replace(f"{spec.source}: ", f"{spec.source}: {where}: ", 1)
                for line in str(exc).splitlines()
            )
            continue
        found.append((label, sub, model, arguments, data))
    return found, problems


def fit_alternatives(prepared, main, settings, *, folder, checkpoints, progress, writer, say):
    """Fit every ``[compare]`` model (``settings``: the job's, with its checkpoint folder
    replaced per model) and write each one's report; returns ``(fits, comparison, text)`` with
    ``fits = {label: (Posterior, Target)}`` (the job's own model first), ArviZ's comparison table
    (or None) and the sentence saying why it is missing."""
    import probinfer as pi
    from probinfer.jobs.execute import _trains_estimator

    fits = {label_of(prepared.spec.model_given): main}
    for label, sub, model, arguments, data in prepared.alternatives:
        target = pi.compile(model, data=data, name=label, **arguments)
        run = dict(settings)
        if "checkpoint" in run:
            run["checkpoint"] = os.path.join(checkpoints, f"compare-{label}")
        say(f"compare: fitting {sub.model_given} ({target.dim} unconstrained dims)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ProbinferWarning)  # its report states them
            posterior = prepared.runner(target, key=sub.seed, progress=progress, **run)
        if _trains_estimator(sub.method):
            posterior = posterior[0]
        if writer:
            pi.report.write_report(
                posterior,
                os.path.join(folder, "compare", label),
                title=f"{label} ({sub.method})",
                header_lines=[f"model: {sub.model_given}", f"method: {sub.method}"],
                target=target,
                plots=prepared.spec.report.get("plots", True),
            )
        fits[label] = (posterior, target)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ProbinferWarning)  # each report names its k̂ points
            return fits, pi.compare(fits, key=0), ""
    except ProbinferError as error:
        return fits, None, f"The models could not be compared by PSIS-LOO: {error}"
