"""probinfer: write a Bayesian model once; compile it; run any inference method; check calibration.

>>> import probinfer as pi
>>> from probinfer import dist
>>> def model(y=None):
...     mu = pi.sample("mu", dist.Normal(0.0, 1.0))
...     with pi.plate("data", 3):
...         pi.sample("y", dist.Normal(mu, 1.0), obs=y)
>>> target = pi.compile(model, y=jnp.array([0.1, -0.3, 0.5]))   # doctest: +SKIP
>>> post = pi.mcmc(target, key=0)                                # doctest: +SKIP
"""

import importlib

from probinfer import devices, diagnostics, health, kernels, report, runners
from probinfer.caching import enable_compilation_cache
from probinfer.comparison import compare, loo
from probinfer.compiler import compile
from probinfer.errors import (
    DataError,
    DiscreteLatentError,
    ModelError,
    NonFiniteError,
    ProbinferError,
)
from probinfer.health import ProbinferWarning
from probinfer.language import constraints, deterministic, dist, factor, param, plate, sample
from probinfer.mcmc import mcmc
from probinfer.pathfinder import pathfinder
from probinfer.posterior import Posterior
from probinfer.predictive import Prediction, predict
from probinfer.ssm import StateSpaceModel, state_space
from probinfer.target import Target

__version__ = "0.2.0"

__all__ = [
    "sample",
    "plate",
    "param",
    "deterministic",
    "factor",
    "dist",
    "constraints",
    "compile",
    "Target",
    "Posterior",
    "predict",
    "Prediction",
    "StateSpaceModel",
    "state_space",
    "mcmc",
    "pathfinder",
    "loo",
    "compare",
    "kernels",
    "devices",
    "diagnostics",
    "report",
    "runners",
    "tarp",
    "sbc",
    "calibrate",
    "smc",
    "particle_filter",
    "sgmcmc",
    "coin_svgd",
    "coin_ksdd",
    "flow_vi",
    "nested",
    "svgd",
    "npe",
    "nle",
    "LikelihoodEstimator",
    "nre",
    "RatioEstimator",
    "tsnpe",
    "local_c2st",
    "parameter_posterior",
    "amortized_vi",
    "AmortizedPosterior",
    "pfn",
    "dt",
    "run",
    "load",
    "enable_compilation_cache",
    "jobs",
    "models",
    "inference",
    "ProbinferError",
    "ModelError",
    "DataError",
    "DiscreteLatentError",
    "NonFiniteError",
    "ProbinferWarning",
    "health",
]

_LAZY_SUBPACKAGES = {"models", "inference", "jobs"}
# Families used as a namespace (``pi.pfn.train``): name → module.
_LAZY_MODULES = {"pfn": "probinfer.inference.pfn", "dt": "probinfer.inference.dt"}
# Convenience functions of the inference families: name → module, imported on first use.
_LAZY_FUNCTIONS = {
    "tarp": "probinfer.inference.calibration",
    "sbc": "probinfer.inference.calibration",
    "calibrate": "probinfer.inference.calibration",
    "smc": "probinfer.inference.smc",
    "particle_filter": "probinfer.inference.smc",
    "sgmcmc": "probinfer.inference.sgmcmc",
    "coin_svgd": "probinfer.inference.coin",
    "coin_ksdd": "probinfer.inference.coin",
    "svgd": "probinfer.inference.coin",
    "flow_vi": "probinfer.inference.flows",
    "nested": "probinfer.inference.nested",
    "npe": "probinfer.inference.amortized",
    "nle": "probinfer.inference.amortized",
    "LikelihoodEstimator": "probinfer.inference.amortized",
    "nre": "probinfer.inference.amortized",
    "tsnpe": "probinfer.inference.amortized",
    "local_c2st": "probinfer.inference.amortized",
    "RatioEstimator": "probinfer.inference.amortized",
    "parameter_posterior": "probinfer.inference.amortized",
    "amortized_vi": "probinfer.inference.amortized",
    "AmortizedPosterior": "probinfer.inference.amortized",
    "run": "probinfer.jobs",
}


# Families whose trained estimators pi.load reads: each registers its kind with
# probinfer.nn.estimator when imported.
_ESTIMATOR_FAMILIES = (
    "probinfer.inference.flows",
    "probinfer.inference.amortized",
    "probinfer.inference.pfn",
    "probinfer.inference.dt",
)


def _import_estimator_families():
    for module in _ESTIMATOR_FAMILIES:
        importlib.import_module(module)


def load(path, model=None, **kwargs):
    """The trained estimator saved at ``path`` — NPE, PFN, Distribution Transformer, whichever
    kind the file holds (:func:`probinfer.nn.estimator.load`; ``model``: what it was trained on,
    None for a PFN; ``**kwargs``: the kind's loading options, e.g. ``model_kwargs=``).

    >>> post = pi.load("npe.msgpack", model)                  # doctest: +SKIP
    """
    from probinfer.nn import estimator

    _import_estimator_families()
    return estimator.load(path, model, **kwargs)


def __getattr__(name):
    # The model zoo and the inference families import the core, never the reverse: load on demand.
    if name in _LAZY_SUBPACKAGES:
        return importlib.import_module(f"probinfer.{name}")
    if name in _LAZY_MODULES:
        return importlib.import_module(_LAZY_MODULES[name])
    if name in _LAZY_FUNCTIONS:
        return getattr(importlib.import_module(_LAZY_FUNCTIONS[name]), name)
    raise AttributeError(f"module 'probinfer' has no attribute '{name}'")
