"""Distribution Transformers (Whittle et al., "Fast Approximate Bayesian Inference With
On-The-Fly Prior Adaptation"; ALGORITHMS §11): amortized posteriors that take the prior as an
input, both represented as Gaussian mixtures over the model's unconstrained parameters — so a
new prior, or yesterday's posterior as today's prior, is one forward pass.

>>> import probinfer as pi
>>> dt = pi.dt.train(model, key=0, num_steps=20_000)                  # doctest: +SKIP
>>> prior = pi.dt.Mixture.gaussian(jnp.zeros(2), jnp.eye(2))          # doctest: +SKIP
>>> dt.mixture(prior, {"y": y}).mean()                                # doctest: +SKIP
>>> dt.save("dt.msgpack"); same = pi.dt.load("dt.msgpack", model)    # doctest: +SKIP
"""

from probinfer.inference.dt.mixture import Mixture, linear_gaussian_update
from probinfer.inference.dt.model import DT, load
from probinfer.inference.dt.network import DistributionTransformer
from probinfer.inference.dt.train import MetaPrior, train

__all__ = [
    "train",
    "DT",
    "load",
    "MetaPrior",
    "Mixture",
    "DistributionTransformer",
    "linear_gaussian_update",
]
