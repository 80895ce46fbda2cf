"""Inference jobs: a TOML file (or a dict) names a model, its data, a method and an output
folder; :func:`run` validates it whole, runs the method with checkpoints in the folder (a second
run resumes), and writes the report (:mod:`probinfer.report`). ``probinfer run JOB.toml`` on the
command line does the same.

>>> result = pi.run({"model": "eight_schools", "method": "smc", "out": "runs/8s"})  # doctest: +SKIP
"""

from probinfer.jobs.execute import JobResult, prepare, run
from probinfer.jobs.spec import JobError, JobSpec, read_job

__all__ = ["run", "prepare", "read_job", "JobResult", "JobSpec", "JobError"]
