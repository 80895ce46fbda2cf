"""Amortized parameter posteriors from a PFN-style transformer: q(θ | data set) for a model's
parameters, trained on the model's prior (ALGORITHMS §2 and §10).

The data set's exchangeable observations are encoded by a :class:`SetTransformer` (self-attention
among the observations, no positional encoding, a mean read-out), and the encoding is the context
of a conditional flow fitted to simulations (θ, x) ~ p(θ) p(x | θ) — neural posterior estimation
(:func:`~probinfer.npe`) with a transformer set encoder. The result is an
:class:`~probinfer.AmortizedPosterior`, so ``pi.calibrate(model, post)`` checks it like any other
amortized estimator.

Covariates that vary from data set to data set belong in the model as observed sites (e.g.
``x = pi.sample("x", dist.Uniform(0, 1).expand([n]), obs=x)``): the set elements are the rows of
all observed sites side by side.

>>> post = pi.parameter_posterior(model, key=0, model_kwargs={"x": x, "y": y})  # doctest: +SKIP
>>> post.sample(1, {"x": x_new, "y": y_new}, 1000)                                 # doctest: +SKIP
"""

from probinfer.compiler import as_target
from probinfer.inference.amortized.npe import npe
from probinfer.nn.embeddings import default_features
from probinfer.nn.transformer import SetTransformer

__all__ = ["parameter_posterior"]


def parameter_posterior(model, *, key, num_simulations=20_000, network=None, **settings):
    """Train q(θ | data set) with a transformer set encoder (see the module docstring).

    Args:
        model: a model function (with ``model_args`` / ``model_kwargs`` / ``data`` in
            ``settings``), a Target, a zoo Example or name. Its observed sites share a leading
            plate axis of exchangeable observations.
        key: int seed or PRNG key.
        num_simulations: simulated data sets (validation included).
        network: the set encoder (None: ``SetTransformer`` with 4 features per parameter).
        **settings: any other :func:`~probinfer.npe` setting (``flow``, ``num_steps``,
            ``batch_size``, ``checkpoint``, ``progress``, ``model_args``, …).

    Returns:
        :class:`~probinfer.AmortizedPosterior`.
    """
    target = as_target(
        model, settings.pop("model_args", ()), settings.pop("model_kwargs", None),
        settings.pop("data", ()),
    )  # fmt: skip
    network = network or SetTransformer(features=default_features(target.dim))
    return npe(target, key=key, num_simulations=num_simulations, embedding=network, **settings)
