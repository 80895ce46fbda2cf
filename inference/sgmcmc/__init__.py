"""Stochastic-gradient MCMC: kernels on pytrees (SGLD, SGHMC, SGNHT, pSGLD), Structured SGMCMC,
Entropy-MCMC, and the ``sgmcmc`` runner with mode finding and preconditioning by default.

>>> post = pi.sgmcmc(target, key=0)          # doctest: +SKIP
"""

from probinfer import runners
from probinfer.inference.sgmcmc.kernels import KERNELS, psgld, sghmc, sgld, sgnht
from probinfer.inference.sgmcmc.preconditioning import (
    find_mode,
    fisher_diagonal,
    gradient_estimator,
    laplace_covariance,
    largest_eigenvalue,
)
from probinfer.inference.sgmcmc.runner import METHODS, SCHEDULES, sgmcmc
from probinfer.inference.sgmcmc.structured import group_index, structured_gradient

__all__ = [
    "sgmcmc",
    "METHODS",
    "SCHEDULES",
    "find_mode",
    "laplace_covariance",
    "fisher_diagonal",
    "largest_eigenvalue",
    "gradient_estimator",
    "group_index",
    "structured_gradient",
    "KERNELS",
    "sgld",
    "sghmc",
    "sgnht",
    "psgld",
]

runners.register("sgmcmc", sgmcmc)
