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
from probinfer.inference.pfn.priors import BNNPrior, GPHyperPrior, GPPrior, ModelPrior
from probinfer.inference.pfn.train import train
from probinfer.nn.transformer import Block, SetTransformer, Transformer

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
    "Transformer",
    "SetTransformer",
    "Block",
]


def __getattr__(name):
    # parameter_posterior is NPE with a set encoder: it moved to the amortized family (families
    # do not import each other); the old name forwards through the core's public accessor.
    if name == "parameter_posterior":
        import warnings

        import probinfer

        warnings.warn(
            "pi.pfn.parameter_posterior moved: call pi.parameter_posterior (the old name goes "
            "in 0.3.0).",
            DeprecationWarning,
            stacklevel=2,
        )
        return probinfer.parameter_posterior
    raise AttributeError(f"module 'probinfer.inference.pfn' has no attribute '{name}'")
