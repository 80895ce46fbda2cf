"""Sequential Monte Carlo: resampling, adaptive tempered SMC samplers, particle filters, PMMH,
and SMC training of partial Bayesian neural networks.

>>> import probinfer as pi
>>> post = pi.smc(target, key=0, num_particles=2000)      # doctest: +SKIP
>>> post.log_evidence                                      # doctest: +SKIP
"""

from probinfer import runners
from probinfer.inference.smc import resampling
from probinfer.inference.smc.particle_filter import (
    FilterResult,
    StateSpaceModel,
    backward_sample,
    particle_filter,
)
from probinfer.inference.smc.pbnn import PartialNetwork, map_network, mlp, pbnn_smc
from probinfer.inference.smc.pmmh import pmmh
from probinfer.inference.smc.runner import smc, smc_draws
from probinfer.inference.smc.tempered import SMCInfo, SMCState

__all__ = [
    "resampling",
    "smc",
    "smc_draws",
    "SMCState",
    "SMCInfo",
    "particle_filter",
    "backward_sample",
    "pmmh",
    "pbnn_smc",
    "map_network",
    "mlp",
    "PartialNetwork",
    "StateSpaceModel",
    "FilterResult",
]

runners.register("smc", smc, smc_draws)
