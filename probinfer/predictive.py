"""Posterior predictive checks on held-out data, for any method's Posterior (BNNs in mind).

With draws θ_1..θ_S and test points (x_n, y_n), the posterior predictive is the ensemble average
``p(y_n | x_n, D) ≈ (1/S) Σ_s p(y_n | x_n, θ_s)``. Reported:

* ``nll``: ``−(1/N) Σ_n log (1/S) Σ_s p(y_n | x_n, θ_s)`` (logsumexp, stable);
* classification (Categorical or Bernoulli observation): the mean class probabilities p̄,
  ``accuracy`` of argmax p̄, and the expected calibration error
  ``ece = Σ_b (|B_b| / N) |acc(B_b) − conf(B_b)|`` over ``bins`` equal-width bins of the
  confidence max_c p̄_nc (Guo et al. 2017);
* regression: the predictive mean and its ``rmse``;
* ``draw_log_likelihood``: each draw's mean test log-likelihood, in the posterior's (chain,
  draw) order — a scalar summary whose ESS measures how well the predictive mixes.

Entropy-MCMC posteriors carry the anchor chain θ_a in ``diagnostics["anchor_draws"]``;
``anchors=True`` predicts with the ensemble of θ and θ_a (Li & Zhang 2023).

>>> pred = pi.predict(target, post, {"x": x_test, "y": y_test})     # doctest: +SKIP
>>> pred.accuracy, pred.nll, pred.ece                               # doctest: +SKIP
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp
from numpyro import distributions as numpyro_dist

from probinfer._utils import need_key
from probinfer.errors import DataError

__all__ = ["predict", "Prediction", "expected_calibration_error"]


class Prediction(NamedTuple):
    """Predictive summaries on N test points (see the module docstring)."""

    log_predictive: np.ndarray  # (N,) log p(y_n | x_n, D)
    nll: float
    probs: np.ndarray | None  # (N, C) classification
    mean: np.ndarray | None  # (N,) regression
    accuracy: float | None
    ece: float | None
    rmse: float | None
    num_draws: int
    draw_log_likelihood: np.ndarray  # (S,) mean test log-likelihood of each draw, in draw order


def expected_calibration_error(probs, labels, bins=15):
    """ECE of class probabilities ``probs (N, C)`` against integer ``labels (N,)``."""
    probs, labels = np.asarray(probs), np.asarray(labels)
    confidence, guess = probs.max(-1), probs.argmax(-1)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            gap = np.mean(guess[members] == labels[members]) - np.mean(confidence[members])
            total += members.mean() * abs(gap)
    return float(total)


def _draws(posterior, key, num_draws, anchors):
    sets = [posterior.draws]
    if anchors:
        if "anchor_draws" not in posterior.diagnostics:
            raise DataError(
                "anchors=True needs an Entropy-MCMC posterior (pi.sgmcmc(..., kernel=entropy(...)))."
            )
        sets.append(posterior.diagnostics["anchor_draws"])
    out = []
    for draws in sets:
        flat = {k: v.reshape((-1,) + v.shape[2:]) for k, v in draws.items()}
        total = next(iter(flat.values())).shape[0]
        if posterior.log_weights is not None:
            flat = posterior.sample(key=key, n=num_draws or total)
        elif num_draws is not None and num_draws < total:
            index = np.linspace(0, total - 1, num_draws).round().astype(int)
            flat = {k: v[index] for k, v in flat.items()}
        out.append(flat)
    return {k: np.concatenate([d[k] for d in out]) for k in out[0]}


def predict(
    target,
    posterior,
    data,
    *,
    site=None,
    num_draws=None,
    anchors=False,
    bins=15,
    key=None,
    chunk=64,
):
    """Posterior predictive on held-out data.

    Args:
        target: the :class:`~probinfer.Target` the posterior belongs to.
        posterior: a :class:`~probinfer.Posterior` (weighted ones are resampled to ``num_draws``).
        data: ``{argument: array (N, ...)}`` — the test inputs and the observed values, under the
            model's argument names (e.g. ``{"x": x_test, "y": y_test}``).
        site: the observed site to predict (default: the model's only observed site).
        num_draws: use this many draws (evenly spaced) instead of all.
        anchors: also use the Entropy-MCMC anchor draws θ_a.
        bins: bins of the calibration error.
        key: int seed or PRNG key; needed only to resample a weighted posterior.
        chunk: draws evaluated at once (memory ``chunk × N × classes``).

    Returns:
        :class:`Prediction`.
    """
    overrides = target.check_new_data(data, "predict")
    if site is None:
        if len(target.observed_sites) != 1:
            raise DataError(
                f"'{target.name}' has observed sites {list(target.observed_sites)}; name one with site=."
            )
        site = target.observed_sites[0]
    if site not in target.observed_sites:
        raise DataError(
            f"site '{site}' is not an observed site of '{target.name}' (those are "
            f"{list(target.observed_sites)})."
        )
    if posterior.log_weights is not None:  # only weighted draws are resampled
        key = need_key(key, "predict on weighted draws")
    draws = _draws(posterior, key, num_draws, anchors)
    z = jax.jit(jax.vmap(target.unconstrain))({k: draws[k] for k in target.latent_sites})

    def one(z):
        trace = target.trace(target.unravel(z), data=overrides)
        if site not in trace:
            raise DataError(f"site '{site}' is not in the model's trace with the test data.")
        fn, value = trace[site]["fn"], trace[site]["value"]
        log_prob = fn.log_prob(value)
        base = fn.base_dist if isinstance(fn, numpyro_dist.Independent) else fn
        if isinstance(base, numpyro_dist.CategoricalProbs | numpyro_dist.CategoricalLogits):
            return log_prob, base.probs, value
        if isinstance(base, numpyro_dist.BernoulliProbs | numpyro_dist.BernoulliLogits):
            return log_prob, jnp.stack([1 - base.probs, base.probs], -1), value
        return log_prob, base.mean, value

    log_probs, outputs, values = jax.jit(lambda z: jax.lax.map(one, z, batch_size=chunk))(z)
    log_probs = np.asarray(log_probs, np.float64)
    if log_probs.ndim != 2:
        raise DataError(
            f"site '{site}' gives log densities of shape {log_probs.shape[1:]} per draw; predict "
            "needs one value per test point (the site inside the data plate)."
        )
    if not np.all(np.isfinite(log_probs)):
        raise DataError(
            f"the predictive log density of site '{site}' is not finite at some test points."
        )
    s = log_probs.shape[0]
    log_predictive = np.asarray(logsumexp(log_probs, axis=0) - np.log(s))
    y = np.asarray(values[0])
    outputs = np.asarray(outputs, np.float64).mean(0)
    classification = outputs.ndim == 2
    return Prediction(
        log_predictive=log_predictive,
        nll=float(-log_predictive.mean()),
        probs=outputs if classification else None,
        mean=None if classification else outputs,
        accuracy=float(np.mean(outputs.argmax(-1) == y)) if classification else None,
        ece=expected_calibration_error(outputs, y, bins) if classification else None,
        rmse=None if classification else float(np.sqrt(np.mean((outputs - y) ** 2))),
        num_draws=s,
        draw_log_likelihood=log_probs.mean(1),
    )
