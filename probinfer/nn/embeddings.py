"""Embedding networks s_ψ(x): a data set's standardised features → the context of a conditional
flow (ALGORITHMS §10).

* :class:`MLPEmbedding` — an MLP on the flattened observations ``(b, x_dim) → (b, features)``.
* :class:`Identity` (``"none"``) — the standardised flattened x itself: the flow conditions on
  it directly (sbi's NPE default; on a small training set of a low-dimensional x the better
  choice, :mod:`probinfer.inference.amortized.npe`'s ``flow="auto"``).
* :class:`SetEmbedding` — DeepSets (Zaheer et al. 2017, "Deep Sets"):
  s(x) = ρ(mean_i φ(x_i)) over the m elements of ``(b, m, e)``; the mean makes it invariant to the
  order of exchangeable observations (exactly, up to the float order of the sum).

With ``masked=True`` both read absent values (NaN: padding past a set's size, missing entries;
:mod:`probinfer.nn.layout`): each entry becomes (value or 0, absent indicator), so a missing
value is told apart from a zero, and the set embedding pools over the elements present only and
appends log(count) — the number of observations, which a posterior's width depends on and a
mean forgets: s(x) = ρ(mean over present i of φ(x_i), log n).

Any flax module mapping ``(b, *feature_shape) → (b, features)`` can stand in for them.

>>> net = SetEmbedding(features=16)
>>> params = net.init(jax.random.PRNGKey(0), jnp.zeros((1, 10, 1)))
>>> net.apply(params, jnp.ones((4, 10, 1))).shape
(4, 16)
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from probinfer.errors import DataError

__all__ = ["MLPEmbedding", "SetEmbedding", "Identity", "default_features", "default_width"]


def default_features(theta_dim):
    """Context size: 4 per parameter, between 16 and 64."""
    return int(min(64, max(16, 4 * theta_dim)))


def default_width(input_dim):
    """Hidden width: twice the input size, between 64 and 256."""
    return int(min(256, max(64, 2 * input_dim)))


def _gelu_layers(x, widths):
    """Dense + GELU layers of ``widths`` (inside a compact module's call)."""
    for width in widths:
        x = nn.gelu(nn.Dense(width)(x))
    return x


def _with_indicators(x):
    """NaN entries as (0, 1), present ones as (value, 0): ``(…, e) → (…, 2e)``."""
    absent = jnp.isnan(x)
    return jnp.concatenate([jnp.where(absent, 0.0, x), absent.astype(x.dtype)], axis=-1)


class MLPEmbedding(nn.Module):
    """``features`` outputs after ``hidden`` GELU layers; ``masked``: NaN entries are missing."""

    features: int = 32
    hidden: tuple = (64, 64)
    masked: bool = False

    @nn.compact
    def __call__(self, x):
        x = _with_indicators(x) if self.masked else x
        return nn.Dense(self.features)(_gelu_layers(x, self.hidden))


class Identity(nn.Module):
    """No embedding: ``(b, x_dim) → (b, x_dim)``, the features as they are (no parameters;
    ``features``, ``hidden`` and ``masked`` only mirror the other embeddings' fields)."""

    features: int = 0
    hidden: tuple = ()
    masked: bool = False

    @nn.compact
    def __call__(self, x):
        return x


class SetEmbedding(nn.Module):
    """ρ(mean over elements of φ(x_i)); φ and ρ are MLPs of ``hidden`` GELU layers. ``masked``:
    the mean runs over the elements with a value (an all-NaN element is absent), entries are read
    with missingness indicators, and ρ also gets log(number present)."""

    features: int = 32
    hidden: tuple = (64, 64)
    masked: bool = False

    @nn.compact
    def __call__(self, x):
        if not self.masked:
            pooled = jnp.mean(_gelu_layers(x, self.hidden), axis=-2)
            return MLPEmbedding(self.features, self.hidden)(pooled)
        present = ~jnp.all(jnp.isnan(x), axis=-1, keepdims=True)  # (b, m, 1)
        count = jnp.maximum(jnp.sum(present, axis=-2), 1).astype(x.dtype)  # (b, 1)
        h = _gelu_layers(_with_indicators(x), self.hidden)
        pooled = jnp.sum(jnp.where(present, h, 0.0), axis=-2) / count
        return MLPEmbedding(self.features, self.hidden)(
            jnp.concatenate([pooled, jnp.log(count)], axis=-1)
        )


def layout_kind(embedding):
    """The observation layout an embedding reads: ``"set"`` for ``"set"`` and for a module whose
    class sets ``reads_sets = True`` (it takes ``(b, m, e)`` sets), else ``"flat"``."""
    if isinstance(embedding, nn.Module):
        return "set" if getattr(embedding, "reads_sets", False) else "flat"
    if embedding in ("mlp", "set", "none"):
        return "set" if embedding == "set" else "flat"
    raise DataError(
        f"embedding must be 'mlp', 'set', 'none' or a flax module mapping (b, x_dim) to "
        f"(b, features); got {embedding!r}."
    )


def embedding_module(embedding, feature_shape, theta_dim, masked=False):
    """The flax module for ``embedding`` (``"mlp"``, ``"set"`` or a module, returned as is),
    sized from the features' shape and the number of parameters; ``masked``: it reads NaN as
    absent (a layout with sizes or missing entries)."""
    if isinstance(embedding, nn.Module):
        return embedding
    if embedding == "none":
        if masked:
            raise DataError(
                "embedding='none' reads x as it is, so it cannot take missing entries or sets "
                "of varying size; use embedding='mlp' or 'set'."
            )
        return Identity()
    features = default_features(theta_dim)
    width = default_width(feature_shape[-1] * (4 if embedding == "set" else 1))
    cls = SetEmbedding if embedding == "set" else MLPEmbedding
    return cls(features, (width, width), masked)


def output_size(module, feature_shape):
    """The module's number of output features for inputs of ``feature_shape``."""
    shapes = jax.eval_shape(
        lambda: module.init_with_output(jax.random.PRNGKey(0), jnp.zeros((1, *feature_shape)))[0]
    )
    return int(shapes.shape[-1])
