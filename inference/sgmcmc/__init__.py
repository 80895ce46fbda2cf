"""Stochastic-gradient MCMC: kernels on pytrees (SGLD, SGHMC, SGNHT, pSGLD), Structured SGMCMC
and Entropy-MCMC as kernels wrapping a base kernel, step-size schedules, and the ``sgmcmc`` runner
with mode finding and preconditioning by default.

>>> from probinfer.inference.sgmcmc import sghmc, structured, schedules
>>> post = pi.sgmcmc(target, key=0)                                                # doctest: +SKIP
>>> post = pi.sgmcmc(target, key=0, kernel=sghmc(friction=0.2), schedule="cyclical")  # doctest: +SKIP
"""

from probinfer import runners
from probinfer.inference.sgmcmc import schedules
from probinfer.inference.sgmcmc.entropy import entropy
from probinfer.inference.sgmcmc.kernels import SGKernel, SGMCMCInfo, psgld, sghmc, sgld, sgnht
from probinfer.inference.sgmcmc.preconditioning import (
    Geometry,
    find_mode,
    fisher_diagonal,
    gradient_estimator,
    laplace_covariance,
    largest_eigenvalue,
)
from probinfer.inference.sgmcmc.runner import sgmcmc
from probinfer.inference.sgmcmc.structured import group_index, structured, structured_gradient

__all__ = [
    "sgmcmc",
    "SGKernel",
    "SGMCMCInfo",
    "sgld",
    "sghmc",
    "sgnht",
    "psgld",
    "structured",
    "entropy",
    "schedules",
    "Geometry",
    "find_mode",
    "laplace_covariance",
    "fisher_diagonal",
    "largest_eigenvalue",
    "gradient_estimator",
    "group_index",
    "structured_gradient",
]

runners.register("sgmcmc", sgmcmc)
