"""Is the observed data something the model could have produced? A misspecification check in the
estimator's own embedding space (Schmitt et al. 2021, "Detecting Model Misspecification in
Amortized Bayesian Inference with Neural Networks"; ALGORITHMS §12).

An amortized posterior is only trained where the prior predictive puts data: at an x far from
every simulation it extrapolates, however well it is calibrated on the model's own simulations.
The check compares the embedding s(x_o) with the embeddings of fresh simulations through the
squared maximum mean discrepancy between {s(x_o)} and a reference set R of simulations,

    MMD² = k(s_o, s_o) − 2 mean_{r ∈ R} k(s_o, r) + mean_{r, r' ∈ R} k(r, r'),

with a Gaussian kernel whose bandwidth is the median pairwise distance in R. Its null
distribution is the same statistic for held-out simulations in place of x_o, so the p-value is
the share of held-out simulations at least as far from R as x_o (a rank, exact under the null up
to the finite reference set). A small p-value says x_o is atypical of the model, not that the
posterior is wrong — but the posterior is then extrapolation.

>>> check = misspecification(post, y_obs, key=0)           # doctest: +SKIP
>>> check.p_value, check.verdict()                         # doctest: +SKIP
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from probinfer._utils import as_key
from probinfer.errors import DataError
from probinfer.health import misspecified

__all__ = ["misspecification", "Misspecification"]


class Misspecification(NamedTuple):
    """``statistic`` (MMD² of x_o), ``p_value``, ``num_simulations`` (held-out null draws)."""

    statistic: float
    p_value: float
    num_simulations: int

    def rejected(self, level=0.01):
        return self.p_value < level

    def verdict(self, level=0.01):
        if self.rejected(level):
            return misspecified(self.p_value, level)
        return (
            f"the observed data look like the model's simulations (misspecification MMD "
            f"p = {self.p_value:.3g} against {self.num_simulations} simulations)."
        )


def misspecification(estimator, x, *, key, num_simulations=2000):
    """The misspecification check of one data set ``x`` (module docstring).

    Args:
        estimator: a trained estimator with an embedding of x (NPE's AmortizedPosterior, NRE's
            RatioEstimator): ``target``, ``layout``, ``embedding``, ``params["embedding"]``.
        x: one data set (``{observed site: array}``, or an array for one site).
        key: int seed or PRNG key for the simulations.
        num_simulations: half form the reference set, half the null draws.

    Returns:
        :class:`Misspecification`.
    """
    if int(num_simulations) < 20:
        raise DataError(f"num_simulations must be at least 20, got {num_simulations}.")
    features, batched = estimator.layout.features(x)
    if batched:
        raise DataError("misspecification() checks one data set; got a batch.")
    _, observations = estimator.target.simulate(as_key(key), int(num_simulations))
    simulated, _ = estimator.layout.features(observations)
    params = estimator.params["embedding"]
    if getattr(estimator, "num_estimators", 1) > 1:  # an ensemble: its first member's embedding
        params = jax.tree.map(lambda leaf: leaf[0], params)
    embed = jax.jit(lambda f: estimator.embedding.apply(params, f))
    s_o = np.asarray(embed(features), np.float64)
    s = np.asarray(embed(simulated), np.float64)
    s = s[np.all(np.isfinite(s), axis=1)]
    half = s.shape[0] // 2
    reference, null = s[:half], s[half:]
    bandwidth = _median_distance(reference)
    observed = _mmd_to(s_o, reference, bandwidth)[0]
    nulls = _mmd_to(null, reference, bandwidth)
    p_value = (1 + np.sum(nulls >= observed)) / (1 + nulls.size)
    return Misspecification(float(observed), float(p_value), int(nulls.size))


def _median_distance(points):
    d = np.sqrt(((points[:, None] - points[None]) ** 2).sum(-1))
    median = np.median(d[np.triu_indices(len(points), 1)])
    return median if median > 0 else 1.0


def _mmd_to(queries, reference, bandwidth):
    """MMD² between each query point (as a one-point sample) and the reference set."""
    q, r = jnp.asarray(queries), jnp.asarray(reference)

    def kernel(a, b):
        return jnp.exp(-((a[:, None] - b[None]) ** 2).sum(-1) / (2 * bandwidth**2))

    within = jnp.mean(kernel(r, r))
    return np.asarray(1.0 - 2.0 * jnp.mean(kernel(q, r), axis=1) + within)
