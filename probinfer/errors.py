"""Errors probinfer raises for bad models, bad data and failed runs.

Every error says, in one sentence, *which* site or argument, *where* (step, temperature, chain) and
*what to do*. They subclass ``ValueError`` so code that already catches ``ValueError`` keeps working.
"""

__all__ = ["ProbinferError", "ModelError", "DataError", "DiscreteLatentError", "NonFiniteError"]


class ProbinferError(ValueError):
    """Base class of every error probinfer raises on purpose."""


class ModelError(ProbinferError):
    """The model cannot be compiled as written (bad signature, improper site sampled, ...)."""


class DataError(ProbinferError):
    """Data arguments are missing, unknown or of inconsistent shapes."""


class DiscreteLatentError(ProbinferError):
    """A method that needs a continuous latent space was given a model with discrete latents."""


class NonFiniteError(ProbinferError):
    """A log density or a sampler state became NaN or infinite where it must be finite."""
