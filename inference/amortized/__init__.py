"""Amortized inference: pay for training once, then get a posterior for a new data set in one
forward pass — neural posterior estimation (:func:`npe`) on the model's own simulations, and
amortized variational inference (:func:`amortized_vi`, AEVB) for per-datum latents, neural
likelihood estimation (:func:`nle`) and contrastive ratio estimation (:func:`nre`): a learned
likelihood (or likelihood ratio) to put inside another model.

>>> import probinfer as pi
>>> post = pi.npe(model, key=0)                              # doctest: +SKIP
>>> post.sample(1, {"y": y_obs}, 1000)                       # doctest: +SKIP
>>> pi.calibrate(model, post, key=2)                         # doctest: +SKIP
"""

from probinfer.inference.amortized.aevb import amortized_vi
from probinfer.inference.amortized.encoder import EncoderPosterior, FittedEncoder
from probinfer.inference.amortized.job import job_nle, job_npe, job_nre, job_tsnpe
from probinfer.inference.amortized.lc2st import LocalC2ST, local_c2st
from probinfer.inference.amortized.nle import LearnedLikelihood, LikelihoodEstimator, nle
from probinfer.inference.amortized.npe import npe
from probinfer.inference.amortized.nre import RatioEstimator, nre
from probinfer.inference.amortized.parameters import parameter_posterior
from probinfer.inference.amortized.posterior import AmortizedPosterior, load
from probinfer.inference.amortized.tsnpe import truncated_prior, tsnpe
from probinfer.nn.embeddings import MLPEmbedding, SetEmbedding
from probinfer.runners import register_job

register_job("npe", job_npe(), trains_estimator=True)
register_job("nle", job_nle(), trains_estimator=True, draw_settings=True)
register_job("nre", job_nre(), trains_estimator=True, draw_settings=True)
register_job("tsnpe", job_tsnpe())
register_job("amortized_vi", amortized_vi)

__all__ = [
    "parameter_posterior",
    "npe",
    "nle",
    "LikelihoodEstimator",
    "LearnedLikelihood",
    "nre",
    "RatioEstimator",
    "tsnpe",
    "truncated_prior",
    "local_c2st",
    "LocalC2ST",
    "amortized_vi",
    "EncoderPosterior",
    "FittedEncoder",
    "AmortizedPosterior",
    "load",
    "MLPEmbedding",
    "SetEmbedding",
]
