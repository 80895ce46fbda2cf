"""Stochastic-gradient MCMC: kernels on pytrees (SGLD, SGHMC, SGNHT, pSGLD) and the ``sgmcmc``
runner with mode finding and Laplace preconditioning by default.

>>> post = pi.sgmcmc(target, key=0)          # doctest: +SKIP
"""

from probinfer import runners
from probinfer.inference.sgmcmc.kernels import KERNELS, psgld, sghmc, sgld, sgnht
from probinfer.inference.sgmcmc.runner import (
    find_mode,
    gradient_estimator,
    laplace_covariance,
    sgmcmc,
)

__all__ = [
    "sgmcmc",
    "find_mode",
    "laplace_covariance",
    "gradient_estimator",
    "KERNELS",
    "sgld",
    "sghmc",
    "sgnht",
    "psgld",
]

runners.register("sgmcmc", sgmcmc)
