"""How a model's observed sites become the input of an embedding network.

A data set x is the dict ``{observed site: array}`` that :meth:`Target.simulate` returns. An
:class:`ObservationLayout` turns one data set, or a batch of them, into features:

* ``"flat"``: every site raveled and concatenated — ``(b, x_dim)``;
* ``"set"``: the sites' leading axis indexes the ``m`` exchangeable observations (a plate), and
  each observation's values (all sites, raveled) form one element — ``(b, m, e)``.

Features are standardised with statistics of the training simulations; for sets the statistics
are pooled over the elements (a per-position statistic would break permutation invariance).

>>> layout = ObservationLayout.from_target(target, "set")        # doctest: +SKIP
>>> features, batched = layout.features({"y": y})                # (1, m, 1), False  # doctest: +SKIP
"""

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from probinfer.errors import DataError, ModelError

__all__ = ["ObservationLayout"]


class ObservationLayout(NamedTuple):
    """``sites`` and their ``shapes``; ``kind`` ``"flat"`` or ``"set"``; ``loc``/``scale`` the
    feature standardisation (``(x_dim,)`` or ``(e,)``), 0 and 1 until :meth:`fitted`."""

    sites: tuple
    shapes: tuple
    kind: str
    loc: np.ndarray
    scale: np.ndarray

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
            value = jnp.asarray(x[site], jnp.float32)
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

    def features(self, x):
        """``(standardised features, batched)`` — :meth:`raw`, then ``(raw − loc) / scale``."""
        raw, batched = self.raw(x)
        return (raw - self.loc) / self.scale, batched

    def fitted(self, raw):
        """This layout with ``loc``/``scale`` from training features ``raw`` (n, *feature_shape):
        per feature mean and standard deviation (pooled over set elements); a constant feature
        keeps scale 1."""
        values = np.asarray(raw, np.float64).reshape(-1, self.loc.shape[0])
        loc = values.mean(0)
        scale = values.std(0)
        scale = np.where(scale > 1e-8 * np.maximum(1.0, np.abs(loc)), scale, 1.0)
        return self._replace(loc=loc.astype(np.float32), scale=scale.astype(np.float32))
