"""Amortized methods as job methods: train an estimator on the model's own simulations, then ask
it about the job's data.

A registered runner fits a posterior to one data set (``runner(target, *, key, **settings) ->
Posterior``). An amortized method trains once for every data set the model can produce, so a job
runs it in two steps: train (checkpointed like any long loop), then evaluate the trained estimator
at the observed values the model was compiled with (:meth:`Target.observations`). The estimator
itself is written to the report folder (``estimator.msgpack``; ``pi.load`` reads it back with
the model), and a ``[calibrate]`` table checks the trained estimator — one vmapped program over
the simulations, no retraining.

``tsnpe`` trains in rounds focused on the job's data and returns a Posterior only (its estimator
answers for that one data set: nothing to save or calibrate without retraining).

``nle`` (``nre``) trains a likelihood (likelihood-ratio) estimator the same way and answers with
NUTS on the prior times the learned likelihood (:data:`~.learned.POSTERIOR_METHOD`); its
``[calibrate]`` check vmaps that sampler over the simulations.

The family registers the methods with :func:`probinfer.runners.register_job` (the job layer
finds them there): ``npe`` returns ``(Posterior, AmortizedPosterior)``; ``amortized_vi`` (AEVB)
fits per-datum latents and globals on the job's own data and returns a Posterior, but is not a
runner ``calibrate`` may refit by name (it would retrain for every simulation).
"""

import inspect

import jax

from probinfer._utils import as_key
from probinfer.inference.amortized.nle import nle
from probinfer.inference.amortized.npe import npe
from probinfer.inference.amortized.nre import nre
from probinfer.inference.amortized.tsnpe import tsnpe

__all__ = [
    "npe_job", "job_npe", "nle_job", "job_nle", "nre_job", "job_nre", "tsnpe_job", "job_tsnpe"
]  # fmt: skip


def npe_job(target, *, key, num_draws=4000, progress="auto", checkpoint=None, local_c2st=False,
            **settings):  # fmt: skip
    """Train :func:`probinfer.npe` on ``target``'s simulations and draw ``num_draws`` from q(θ | x)
    at the target's observed data. ``local_c2st=True`` also runs :func:`probinfer.local_c2st`
    (its defaults; a minute or two on a CPU) at the job's data: ``local_c2st_p`` in the
    posterior's diagnostics, and the report warns when it rejects. Returns
    ``(Posterior, AmortizedPosterior)``."""
    train_key, draw_key = jax.random.split(as_key(key))
    estimator = npe(target, key=train_key, progress=progress, checkpoint=checkpoint, **settings)
    posterior = estimator.posterior(target.observations(), key=draw_key, n=num_draws)
    if local_c2st:
        check = estimator.local_c2st(key=jax.random.fold_in(draw_key, 11))
        result = check.test(target.observations(), key=jax.random.fold_in(draw_key, 12))
        posterior.diagnostics["local_c2st_p"] = result.p_value
    return _checked(posterior, estimator, target, draw_key), estimator


def nle_job(target, *, key, num_draws=4000, progress="auto", checkpoint=None, **settings):
    """Train :func:`probinfer.nle` on ``target``'s simulations, then run NUTS on the prior times
    the learned likelihood of the target's observed data (``num_draws`` pooled draws). Returns
    ``(Posterior, LikelihoodEstimator)``; a ``[calibrate]`` table checks the estimator with
    NUTS vmapped over the simulations (no retraining)."""
    return _learned_site_job(nle, target, key, num_draws, progress, checkpoint, settings)


def nre_job(target, *, key, num_draws=4000, progress="auto", checkpoint=None, **settings):
    """:func:`nle_job` with :func:`probinfer.nre`'s learned likelihood ratio: NUTS on the prior
    times r(θ, x) at the target's observed data. Returns ``(Posterior, RatioEstimator)``."""
    return _learned_site_job(nre, target, key, num_draws, progress, checkpoint, settings)


def tsnpe_job(target, *, key, num_draws=4000, progress="auto", **settings):
    """Train :func:`probinfer.tsnpe` in rounds focused on the target's observed data and draw
    ``num_draws`` from its q(θ | x). Returns a Posterior: the estimator is valid at this data set
    only, so there is nothing amortized to save or to calibrate without retraining."""
    train_key, draw_key = jax.random.split(as_key(key))
    observed = target.observations()
    estimator = tsnpe(target, observed, key=train_key, progress=progress, **settings)
    posterior = estimator.posterior(observed, key=draw_key, n=num_draws)
    # the rounds, in the report: how far each truncation focused, each round's weight decay
    posterior.diagnostics |= {
        k: estimator.diagnostics[k]
        for k in ("acceptance", "weight_decays", "round_seconds", "num_simulations")
    }
    return _checked(posterior, estimator, target, draw_key)


def _learned_site_job(train, target, key, num_draws, progress, checkpoint, settings):
    train_key, draw_key = jax.random.split(as_key(key))
    estimator = train(target, key=train_key, progress=progress, checkpoint=checkpoint, **settings)
    posterior = estimator.posterior(
        target.observations(), key=draw_key, n=num_draws, progress=progress
    )
    if hasattr(estimator, "misspecification"):
        posterior = _checked(posterior, estimator, target, draw_key)
    return posterior, estimator


def _checked(posterior, estimator, target, key):
    """The posterior with the misspecification check of the job's data in its diagnostics
    (the report warns when it rejects: :mod:`probinfer.health`)."""
    check = estimator.misspecification(target.observations(), key=jax.random.fold_in(key, 7))
    posterior.diagnostics["misspecification_p"] = check.p_value
    return posterior


def _signature(wrapper, trained):
    """The wrapper's signature with the trained method's settings in place of ``**settings``, so
    a job's settings are checked against the real ones."""
    own = [p for p in inspect.signature(wrapper).parameters.values() if p.kind != p.VAR_KEYWORD]
    names = {p.name for p in own}
    extra = [
        p.replace(kind=p.KEYWORD_ONLY)
        for name, p in inspect.signature(trained).parameters.items()
        if name not in names and name not in ("model", "x", "model_args", "model_kwargs", "data")
    ]
    return inspect.Signature(own + extra)


def job_npe():
    """:func:`npe_job` with the real settings of :func:`~probinfer.npe` in its signature."""
    npe_job.__signature__ = _signature(npe_job, npe)
    return npe_job


def job_nle():
    """:func:`nle_job` with the real settings of :func:`~probinfer.nle` in its signature."""
    nle_job.__signature__ = _signature(nle_job, nle)
    return nle_job


def job_nre():
    """:func:`nre_job` with the real settings of :func:`~probinfer.nre` in its signature."""
    nre_job.__signature__ = _signature(nre_job, nre)
    return nre_job


def job_tsnpe():
    """:func:`tsnpe_job` with the real settings of :func:`~probinfer.tsnpe` in its signature."""
    tsnpe_job.__signature__ = _signature(tsnpe_job, tsnpe)
    return tsnpe_job
