"""How a model's observed sites become the input of an embedding network.

A data set x is the dict ``{observed site: array}`` that :meth:`Target.simulate` returns. An
:class:`ObservationLayout` turns one data set, or a batch of them, into features:

* ``"flat"``: every site raveled and concatenated — ``(b, x_dim)``;
* ``"set"``: the sites' leading axis indexes the ``m`` exchangeable observations (a plate), and
  each observation's values (all sites, raveled) form one element — ``(b, m, e)``.

Features are standardised with statistics of the training simulations; for sets the statistics
are pooled over the elements (a per-position statistic would break permutation invariance).

Absent values are NaN. A layout with ``sizes=(lo, hi)`` (sets only) takes data sets of lo to hi
observations and pads them to the compiled m with NaN elements; one with ``missing_rate > 0``
takes NaN entries as missing. Its estimator was trained for both with :meth:`mask`, which blanks
random elements and entries of the simulated features, and reads them with a masked embedding
(:mod:`probinfer.nn.embeddings`). Any other NaN in x is an error, said in one sentence.

>>> layout = ObservationLayout.from_target(target, "set")        # doctest: +SKIP
>>> features, batched = layout.features({"y": y})                # (1, m, 1), False  # doctest: +SKIP
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from probinfer.errors import DataError, ModelError

__all__ = ["ObservationLayout", "mask_features"]


class ObservationLayout(NamedTuple):
    """``sites`` and their ``shapes``; ``kind`` ``"flat"`` or ``"set"``; ``loc``/``scale`` the
    feature standardisation (``(x_dim,)`` or ``(e,)``), 0 and 1 until :meth:`fitted`;
    ``sizes``: None or the ``(lo, hi)`` observations a set may hold; ``missing_rate``: the share
    of entries blanked in training (0: NaN entries are an error)."""

    sites: tuple
    shapes: tuple
    kind: str
    loc: np.ndarray
    scale: np.ndarray
    sizes: tuple | None = None
    missing_rate: float = 0.0

    @property
    def masked(self):
        """Whether features may hold NaN (absent elements or entries) for a masked embedding."""
        return self.sizes is not None or self.missing_rate > 0

    def with_absences(self, num_observations=None, missing_rate=0.0):
        """This layout taking sets of ``num_observations`` (an int: at least that many, up to
        the compiled size; or ``(lo, hi)``) and missing entries at ``missing_rate`` in [0, 1)."""
        sizes = None
        if num_observations is not None:
            m = self.shapes[0][0] if self.shapes and self.shapes[0] else None
            if self.kind != "set":
                raise DataError(
                    "num_observations needs embedding='set': a flattened x has one size; a set "
                    "embedding reads data sets of any size up to the compiled one."
                )
            lo, hi = (
                (num_observations, m) if np.ndim(num_observations) == 0 else tuple(num_observations)
            )
            if not 1 <= int(lo) <= int(hi) <= m:
                raise DataError(
                    f"num_observations must be 1 ≤ lo ≤ hi ≤ {m} (the size the model was "
                    f"compiled with: simulations are drawn at it and cut down); got "
                    f"{num_observations!r}."
                )
            sizes = (int(lo), int(hi))
        if not 0.0 <= float(missing_rate) < 1.0:
            raise DataError(f"missing_rate must lie in [0, 1), got {missing_rate}.")
        return self._replace(sizes=sizes, missing_rate=float(missing_rate))

    def mask(self, key, features):
        """:func:`mask_features` with this layout's ``sizes`` and ``missing_rate``."""
        return mask_features(key, features, self.sizes, self.missing_rate)

    @classmethod
    def from_target(cls, target, kind):
        if not target.observed_sites:
            raise ModelError(
                f"'{target.name}' has no observed sites: amortized inference learns p(θ | x) from "
                "simulated data sets x shaped like the observed ones, so compile the model with "
                "example data (e.g. model_kwargs={'y': y}) for its obs= sites."
            )
        shapes = target.observed_shapes
        sites = tuple(target.observed_sites)
        shapes = tuple(tuple(shapes[s]) for s in sites)
        if kind == "set":
            sizes = {shape[0] if shape else None for shape in shapes}
            if len(sizes) != 1 or None in sizes:
                listed = ", ".join(f"'{s}' {shape}" for s, shape in zip(sites, shapes, strict=True))
                raise DataError(
                    f"a set embedding needs every observed site of '{target.name}' to have the "
                    f"same leading (observation) axis; got {listed}. Use embedding='mlp'."
                )
            width = sum(int(np.prod(shape[1:])) for shape in shapes)
        else:
            width = sum(int(np.prod(shape)) for shape in shapes)
        return cls(sites, shapes, kind, np.zeros(width, np.float32), np.ones(width, np.float32))

    @property
    def feature_shape(self):
        """Shape of one data set's features: ``(x_dim,)`` or ``(m, e)``."""
        if self.kind == "set":
            return (self.shapes[0][0], self.loc.shape[0])
        return (self.loc.shape[0],)

    def raw(self, x):
        """``(features (b, *feature_shape), batched)`` before standardisation, from one data set
        (each site its own shape) or a batch of b (each site ``(b, *shape)``)."""
        if not isinstance(x, dict):
            if len(self.sites) != 1:
                raise DataError(
                    f"x must be a dict of the observed sites {list(self.sites)}; got "
                    f"{type(x).__name__}."
                )
            x = {self.sites[0]: x}
        unknown = set(x) - set(self.sites)
        missing = [s for s in self.sites if s not in x]
        if unknown or missing:
            raise DataError(
                f"x must hold exactly the observed sites {list(self.sites)}; "
                + (f"missing {missing}" if missing else f"unknown {sorted(unknown)}")
                + "."
            )
        batch, parts = None, []
        for site, shape in zip(self.sites, self.shapes, strict=True):
            value = self.padded(site, x[site])
            if value.shape == shape:
                size = None
            elif value.shape[1:] == shape:
                size = value.shape[0]
            else:
                raise DataError(
                    f"observed site '{site}' has shape {shape} (one data set) or (b, *{shape}) "
                    f"(a batch of b); got {value.shape}."
                )
            if parts and size != batch:
                raise DataError(
                    f"observed sites disagree on the batch of data sets: '{site}' has "
                    f"{value.shape}, the sites before it {'no batch axis' if batch is None else batch}."
                )
            batch = size
            value = value[None] if size is None else value
            if self.kind == "set":
                parts.append(jnp.reshape(value, value.shape[:2] + (-1,)))
            else:
                parts.append(jnp.reshape(value, (value.shape[0], -1)))
        return jnp.concatenate(parts, axis=-1), batch is not None

    def padded(self, site, value):
        """``site``'s values (one data set or a batch) at the compiled shape: a set of n ≤ m
        observations padded to m with NaN elements; NaN entries refused in one sentence unless
        this layout takes missing entries."""
        value = jnp.asarray(value, jnp.float32)
        self._check_absences(site, value)
        shape = tuple(self.shapes[self.sites.index(site)])
        if self.sizes is None:
            return value
        axis = value.ndim - len(shape)  # 0: one data set, 1: a batch
        if axis not in (0, 1) or value.shape[axis + 1 :] != shape[1:]:
            return value  # the shape check after this names it
        n, (lo, hi) = value.shape[axis], self.sizes
        if not lo <= n <= hi:
            raise DataError(
                f"observed site '{site}' holds {n} observations; this estimator was trained "
                f"on data sets of {lo} to {hi} (num_observations)."
            )
        pad = [(0, 0)] * value.ndim
        pad[axis] = (0, shape[0] - n)
        return jnp.pad(value, pad, constant_values=jnp.nan)

    def _check_absences(self, site, value):
        """One sentence for NaN in a site's values unless this layout takes missing entries
        (skipped for traced values)."""
        if self.missing_rate > 0:
            return
        try:
            count = int(np.isnan(np.asarray(value)).sum())
        except jax.errors.TracerArrayConversionError:
            return
        if count:
            raise DataError(
                f"observed site '{site}' has {count} missing (NaN) value(s); this estimator was "
                "trained on complete data — train it with missing_rate= (e.g. 0.1) to answer "
                "for incomplete data sets, or fill them in."
            )

    def features(self, x):
        """``(standardised features, batched)`` — :meth:`raw`, then ``(raw − loc) / scale``."""
        raw, batched = self.raw(x)
        return (raw - self.loc) / self.scale, batched

    def fitted(self, raw):
        """This layout with ``loc``/``scale`` from training features ``raw`` (n, *feature_shape):
        per feature mean and standard deviation (pooled over set elements); a constant feature
        keeps scale 1."""
        values = np.asarray(raw, np.float64).reshape(-1, self.loc.shape[0])
        loc = np.nanmean(values, 0)
        scale = np.nanstd(values, 0)
        scale = np.where(scale > 1e-8 * np.maximum(1.0, np.abs(loc)), scale, 1.0)
        return self._replace(loc=loc.astype(np.float32), scale=scale.astype(np.float32))


def mask_features(key, features, sizes, missing_rate):
    """Training features ``(b, *feature_shape)`` with absences drawn like the data the
    estimator must answer for: each set cut to a size log-uniform on ``sizes`` (small sets
    as common as large ones; the rest of its elements NaN) and each entry NaN with
    probability ``missing_rate``."""
    key_size, key_missing = jax.random.split(key)
    if sizes is not None:
        lo, hi = sizes
        b, m = features.shape[:2]
        log_n = jax.random.uniform(key_size, (b, 1), minval=np.log(lo), maxval=np.log(hi + 1))
        keep = jnp.arange(m)[None, :] < jnp.clip(jnp.floor(jnp.exp(log_n)), lo, hi)
        features = jnp.where(keep[..., None], features, jnp.nan)
    if missing_rate > 0:
        gone = jax.random.bernoulli(key_missing, missing_rate, features.shape)
        features = jnp.where(gone, jnp.nan, features)
    return features
