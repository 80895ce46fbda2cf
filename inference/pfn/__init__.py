"""Prior-data fitted networks (Müller et al. 2022, "Transformers Can Do Bayesian Inference"):
transformers trained on data sets drawn from a prior that return the posterior predictive for a
new data set in one forward pass (ALGORITHMS §2).

>>> import probinfer as pi
>>> pfn = pi.pfn.load("gp-rbf-1d")                                 # doctest: +SKIP
>>> pred = pfn.predict(x_train, y_train, x_test)                   # doctest: +SKIP
>>> pfn = pi.pfn.train(pi.pfn.GPPrior(), key=0, num_steps=20_000)  # doctest: +SKIP
"""

from probinfer.inference.pfn.bar import BarDistribution, borders_from_samples
from probinfer.inference.pfn.model import PFN, SHIPPED, load
from probinfer.inference.pfn.parameters import parameter_posterior
from probinfer.inference.pfn.priors import BNNPrior, GPHyperPrior, GPPrior, ModelPrior
from probinfer.inference.pfn.train import train
from probinfer.inference.pfn.transformer import Block, SetTransformer, Transformer

__all__ = [
    "train",
    "load",
    "PFN",
    "SHIPPED",
    "BarDistribution",
    "borders_from_samples",
    "GPPrior",
    "GPHyperPrior",
    "BNNPrior",
    "ModelPrior",
    "parameter_posterior",
    "Transformer",
    "SetTransformer",
    "Block",
]
