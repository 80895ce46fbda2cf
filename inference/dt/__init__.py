"""Distribution Transformers (issue 16, in progress): amortized posteriors that take the prior
as an input, represented as Gaussian mixtures (ALGORITHMS §11). Built so far: the mixture
representation (:class:`Mixture`) and the exact linear-Gaussian update the tests compare against.
"""

from probinfer.inference.dt.mixture import Mixture, linear_gaussian_update

__all__ = ["Mixture", "linear_gaussian_update"]
