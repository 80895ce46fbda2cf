"""Runners by name: how the CLI and the calibration layer call any method.

Every runner has the uniform signature ``runner(target, *, key, **settings) -> Posterior`` and
follows DESIGN's calling convention (``tests/test_conventions.py`` checks every registered one). A
runner may also register a *draws function* ``draws(target, key, n, **settings) ->
{site: (n, *shape)}``: a pure, traceable version that the calibration layer vmaps over simulated
data sets. Families outside the core register themselves when imported; the names below
are imported on first use, so the core never imports a family eagerly.

>>> from probinfer import runners
>>> runner, draws = runners.get("hmc")
"""

import importlib
from functools import partial

from probinfer.errors import ProbinferError
from probinfer.mcmc import mcmc, mcmc_draws
from probinfer.pathfinder import pathfinder

__all__ = [
    "register",
    "get",
    "names",
    "register_job",
    "job_method",
    "job_names",
    "takes_draw_settings",
]

_REGISTRY = {}
# Families that register runners on import: name → module.
_LAZY = {
    "smc": "probinfer.inference.smc",
    "sgmcmc": "probinfer.inference.sgmcmc",
    "coin_svgd": "probinfer.inference.coin",
    "coin_ksdd": "probinfer.inference.coin",
    "svgd": "probinfer.inference.coin",
    "flow_vi": "probinfer.inference.flows",
    "nested": "probinfer.inference.nested",
}


def register(name, runner, draws=None):
    """Make ``runner`` (and optionally its pure ``draws`` function) callable by ``name``."""
    _REGISTRY[name] = (runner, draws)


register("mcmc", mcmc, mcmc_draws)
register("pathfinder", pathfinder)
# Shorthands: the MCMC runner with one kernel (Posterior.method is still "mcmc").
for _kernel in ("nuts", "hmc", "mams", "mclmc", "mala", "rwm"):
    register(_kernel, partial(mcmc, kernel=_kernel), partial(mcmc_draws, kernel=_kernel))


# Methods a job may run that calibrate must not refit by name (amortized trainers: one training
# serves every data set): name → (job runner, whether it returns (Posterior, trained estimator)).
_JOBS = {}
_DRAW_SETTINGS = {}  # job method → its estimator's sample takes settings
_LAZY_JOBS = {
    "npe": "probinfer.inference.amortized",
    "nle": "probinfer.inference.amortized",
    "nre": "probinfer.inference.amortized",
    "tsnpe": "probinfer.inference.amortized",
    "amortized_vi": "probinfer.inference.amortized",
}


def register_job(name, runner, *, trains_estimator=False, draw_settings=False):
    """Make ``runner`` a method jobs can name (``runner(target, *, key, **settings)``, returning a
    Posterior, or ``(Posterior, estimator)`` when ``trains_estimator``: the job saves the
    estimator and checks it without retraining) without making it a runner ``calibrate`` refits.
    ``draw_settings``: the estimator's ``sample`` takes settings (NLE's and NRE's: a runner and
    its own), so a job's ``[calibrate] settings`` reach it."""
    _JOBS[name] = (runner, bool(trains_estimator))
    _DRAW_SETTINGS[name] = bool(draw_settings)


def takes_draw_settings(name):
    """Whether the estimator job method ``name`` trains draws with settings (``register_job``)."""
    job_method(name)  # imports a lazily registered family
    return _DRAW_SETTINGS.get(name, False)


def job_names():
    """Every method a job can name: the runners and the job-only methods."""
    return sorted(set(names()) | set(_JOBS) | set(_LAZY_JOBS))


def job_method(name):
    """``(runner, trains_estimator)`` for a job's method ``name``."""
    if name not in _JOBS and name in _LAZY_JOBS:
        importlib.import_module(_LAZY_JOBS[name])
    if name in _JOBS:
        return _JOBS[name]
    return get(name)[0], False


def names():
    """Names that :func:`get` accepts."""
    return sorted(set(_REGISTRY) | set(_LAZY))


def get(name):
    """``(runner, draws or None)`` registered under ``name``."""
    if name not in _REGISTRY and name in _LAZY:
        try:
            importlib.import_module(_LAZY[name])
        except ModuleNotFoundError as exc:
            raise ProbinferError(f"method '{name}' is not available yet ({exc}).") from exc
    if name not in _REGISTRY:
        import difflib

        close = difflib.get_close_matches(str(name), names(), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ProbinferError(f"unknown method '{name}'{hint}; choose one of {names()}.")
    return _REGISTRY[name]
