"""Bayesian neural networks: a flax linen MLP lifted to a Bayesian model with numpyro's
``random_flax_module`` (every weight and bias a latent site ``N(0, prior_sd²)``, one site per
layer parameter, so ``groups="layer"`` of Structured SGMCMC is a grouping by layer).

``mlp_classifier(x, y)``: ``y_i ~ Categorical(softmax(f(x_i; θ)))``, f a tanh MLP. The zoo entry
``digits_bnn`` is scikit-learn's bundled digits (1,797 images of 8 × 8 pixels, 10 classes),
pixels scaled to [0, 1], split 1,347 / 450 (train / test) with a fixed seed; 50 hidden units give
64·50 + 50 + 50·10 + 10 = 3,760 weights.

>>> example = digits_example()                                     # doctest: +SKIP
>>> post = pi.sgmcmc(example.compile(), key=0)                     # doctest: +SKIP
"""

import flax.linen as nn
import numpy as np
from numpyro.contrib.module import random_flax_module

from probinfer.language import dist, plate, sample
from probinfer.models._example import Example

__all__ = ["MLP", "mlp_classifier", "load_digits", "digits_example"]


class MLP(nn.Module):
    """tanh hidden layers of widths ``hidden``, then a linear layer of width ``out``."""

    hidden: tuple = (50,)
    out: int = 10

    @nn.compact
    def __call__(self, x):
        for width in self.hidden:
            x = nn.tanh(nn.Dense(width)(x))
        return nn.Dense(self.out)(x)


def mlp_classifier(x, y=None, *, hidden=(50,), num_classes=10, prior_sd=1.0):
    """``x``: (N, D) features; ``y``: (N,) integer labels in [0, num_classes)."""
    net = random_flax_module(
        "net",
        MLP(tuple(hidden), int(num_classes)),
        prior=dist.Normal(0.0, prior_sd),
        input_shape=(1, x.shape[1]),
    )
    with plate("data", x.shape[0]):
        sample("y", dist.Categorical(logits=net(x)), obs=y)


def load_digits(test_fraction=0.25, seed=0):
    """``(x_train, y_train, x_test, y_test)``: pixels / 16 as float32, labels int32."""
    from sklearn.datasets import load_digits as _load

    x, y = _load(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(y))
    x, y = (x[order] / 16.0).astype(np.float32), y[order].astype(np.int32)
    cut = int(round(len(y) * (1 - test_fraction)))
    return x[:cut], y[:cut], x[cut:], y[cut:]


def digits_example(hidden=(50,)):
    """The zoo entry: the MLP classifier on the digits training split; the test split is in
    ``exact["test"]`` as ``{"x": ..., "y": ...}`` for predictive checks."""
    x, y, x_test, y_test = load_digits()
    return Example(
        "digits_bnn",
        mlp_classifier,
        (x,),
        {"y": y, "hidden": tuple(hidden)},
        data=("x", "y"),
        description=f"BNN classifier (tanh MLP {tuple(hidden)}), digits data ({x.shape[0]} train)",
        exact={"test": {"x": x_test, "y": y_test}},
    )
