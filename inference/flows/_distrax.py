"""The one module of ours that imports distrax (ALGORITHMS §6: distrax rides on TensorFlow
Probability's JAX substrate, the first thing to break on a JAX upgrade). Everything else imports
the bijectors from here, so a break, or a move away from distrax, touches one file."""

import distrax

Block = distrax.Block
MaskedCoupling = distrax.MaskedCoupling
RationalQuadraticSpline = distrax.RationalQuadraticSpline
ScalarAffine = distrax.ScalarAffine

__all__ = ["Block", "MaskedCoupling", "RationalQuadraticSpline", "ScalarAffine"]
