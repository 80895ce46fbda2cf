"""Bayesian logistic regression on scikit-learn's bundled breast cancer data (569 × 30).

Features are standardised (zero mean, unit variance); ``w ~ N(0, I)``, ``b ~ N(0, 1)``,
``y_i ~ Bernoulli(σ(x_i·w + b))``. The features are strongly correlated, which is what makes this a
fair test of preconditioning.
"""

import numpy as np

from probinfer.language import dist, plate, sample
from probinfer.models._example import Example

__all__ = ["logistic_regression", "load_breast_cancer", "breast_cancer_example"]


def logistic_regression(x, y=None, *, prior_sd=1.0):
    """``x``: (N, D) features; ``y``: (N,) labels in {0, 1}."""
    w = sample("w", dist.Normal(0.0, prior_sd).expand([x.shape[1]]).to_event(1))
    b = sample("b", dist.Normal(0.0, prior_sd))
    with plate("data", x.shape[0]):
        sample("y", dist.Bernoulli(logits=x @ w + b), obs=y)


def load_breast_cancer():
    """Standardised features ``(569, 30)`` float32 and labels ``(569,)`` float32."""
    from sklearn.datasets import load_breast_cancer as _load

    data = _load()
    x = (data.data - data.data.mean(0)) / data.data.std(0)
    return x.astype(np.float32), data.target.astype(np.float32)


def breast_cancer_example():
    """The zoo entry: logistic regression on breast cancer, data marked for minibatching."""
    x, y = load_breast_cancer()
    return Example(
        "logistic_regression",
        logistic_regression,
        (x,),
        {"y": y},
        data=("x", "y"),
        description="logistic regression, breast cancer data (31 dims)",
    )
