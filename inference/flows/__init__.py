"""Normalizing-flow variational inference: planar, radial, RealNVP, IAF/MAF and neural spline
flows on a Target's unconstrained space, fitted by the ELBO or tighter bounds.

>>> import probinfer as pi
>>> post = pi.flow_vi(target, key=0)                 # doctest: +SKIP
"""

from probinfer import runners
from probinfer.inference.flows.posterior import FittedFlow, FlowPosterior
from probinfer.inference.flows.runner import flow_draws, flow_vi
from probinfer.nn.flows import FLOWS, Flow, make_flow
from probinfer.nn.objectives import OBJECTIVES

__all__ = ["flow_vi", "FlowPosterior", "FittedFlow", "make_flow", "Flow", "FLOWS", "OBJECTIVES"]

runners.register("flow_vi", flow_vi, flow_draws)
