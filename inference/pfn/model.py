"""A trained PFN: ``predict(x_train, y_train, x_test)`` gives the posterior predictive of y at each
test input in one forward pass; ``save`` / :func:`load` (probinfer's one estimator file format,
:mod:`probinfer.nn.estimator`, written atomically; ``pi.load`` reads it too).

>>> pfn = pi.pfn.load("gp-rbf-1d")                                  # doctest: +SKIP
>>> pred = pfn.predict(x_train, y_train, x_test)                    # doctest: +SKIP
>>> pred.mean(), pred.quantile(0.95), pred.log_prob(y_test)          # doctest: +SKIP
"""

import json
import warnings
from importlib import resources
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from probinfer.errors import DataError
from probinfer.inference.pfn.bar import BarDistribution
from probinfer.inference.pfn.priors import prior_from_config
from probinfer.nn import estimator as estimator_file
from probinfer.nn.transformer import Transformer

__all__ = ["PFN", "load", "SHIPPED"]

KIND = "pfn"
SHIPPED = ("gp-rbf-1d",)
_QUERY_BLOCK = 1024


class PFN(estimator_file.Estimator):
    """A prior-data fitted network (an estimator of kind ``"pfn"``: it answers ``predict``, not
    ``sample``/``log_prob``, and is trained on a prior, not a model).

    Attributes:
        prior: the prior over data sets it was trained on (``GPPrior`` carries ``lengthscale``,
            ``outputscale``, ``noise``).
        network: the flax :class:`~probinfer.inference.pfn.Transformer`; ``params`` its weights.
        borders: ``(K + 1,)`` bar-distribution borders (None for a classification PFN).
        seq_len: training sequence length; at most ``seq_len − 1`` context points.
        settings, diagnostics: training settings and the loss curve (``loss``), ``seconds``.
    """

    kind = KIND

    def __init__(self, *, prior, network, params, borders, scaling, seq_len, settings,
                 diagnostics=None):  # fmt: skip
        self.prior, self.network, self.params = prior, network, params
        self.borders = None if borders is None else jnp.asarray(borders, jnp.float32)
        self.scaling = {k: np.asarray(v, np.float32) for k, v in scaling.items()}
        self.seq_len = int(seq_len)
        self.settings = dict(settings)
        self.diagnostics = dict(diagnostics or {})
        self.num_features = int(self.scaling["x_loc"].shape[-1])
        self._forward = jax.jit(self._forward_impl)

    @property
    def classification(self):
        return self.borders is None

    def _forward_impl(self, params, x_train, y_train, x_test):
        """Logits ``(B, m, K)`` for test points in blocks of ``_QUERY_BLOCK`` (queries never
        attend to each other, so blocking changes nothing)."""
        s = self.scaling
        n, m = x_train.shape[1], x_test.shape[1]
        ctx_x = (x_train - s["x_loc"]) / s["x_scale"]
        ctx_y = (y_train - s["y_loc"]) / s["y_scale"]
        block = min(m, _QUERY_BLOCK)
        pad = (-m) % block
        qx = (x_test - s["x_loc"]) / s["x_scale"]
        qx = jnp.concatenate([qx, jnp.repeat(qx[:, -1:], pad, 1)], 1) if pad else qx
        blocks = qx.reshape(qx.shape[0], -1, block, qx.shape[-1]).swapaxes(0, 1)

        def one(q):
            x = jnp.concatenate([ctx_x, q], 1)
            y = jnp.concatenate([ctx_y, jnp.zeros(q.shape[:2], ctx_y.dtype)], 1)
            return self.network.apply(params, x, y, n)[:, n:]

        logits = jax.lax.map(one, blocks).swapaxes(0, 1)
        return logits.reshape(logits.shape[0], -1, logits.shape[-1])[:, :m]

    def predict(self, x_train, y_train, x_test):
        """The posterior predictive of y at each test input.

        Args:
            x_train: ``(n, d)`` context inputs (``(n,)`` when d = 1), or ``(B, n, d)`` for a
                batch of B data sets; n may be 0.
            y_train: ``(n,)`` or ``(B, n)`` context outputs.
            x_test: ``(m, d)`` or ``(B, m, d)`` test inputs.

        Returns:
            a :class:`~probinfer.inference.pfn.BarDistribution` with batch shape ``(m,)`` (or
            ``(B, m)``); for a classification PFN a NumPyro ``Categorical``.
        """
        x_train, y_train, x_test, batched = self._check(x_train, y_train, x_test)
        logits = self._forward(self.params, x_train, y_train, x_test)
        logits = logits if batched else logits[0]
        if self.classification:
            return dist.Categorical(logits=logits)
        return BarDistribution(self.borders, logits)

    def _check(self, x_train, y_train, x_test):
        x_train, x_test = np.asarray(x_train, np.float32), np.asarray(x_test, np.float32)
        y_train = np.asarray(y_train, np.float32)
        batched = y_train.ndim == 2
        d = self.num_features
        if not batched and x_train.ndim == 1 and d == 1:
            x_train, x_test = x_train[:, None], x_test.reshape(-1, 1)
        if not batched and x_test.ndim == 1 and d == 1:
            x_test = x_test[:, None]
        if not batched:
            x_train, y_train, x_test = x_train[None], y_train[None], x_test[None]
        if x_train.ndim != 3 or x_test.ndim != 3 or y_train.ndim != 2:
            raise DataError(
                "predict takes x_train (n, d), y_train (n,), x_test (m, d) — or with a leading "
                f"batch axis — got shapes {x_train.shape}, {y_train.shape}, {x_test.shape}."
            )
        if x_train.shape[-1] != d or x_test.shape[-1] != d:
            raise DataError(
                f"this PFN was trained on {d}-dimensional inputs; got x_train with "
                f"{x_train.shape[-1]} and x_test with {x_test.shape[-1]} features."
            )
        if x_train.shape[:2] != y_train.shape or x_train.shape[0] != x_test.shape[0]:
            raise DataError(
                f"x_train {x_train.shape}, y_train {y_train.shape} and x_test {x_test.shape} "
                "disagree on the number of data sets or context points."
            )
        if x_train.shape[1] > self.seq_len - 1:
            raise DataError(
                f"{x_train.shape[1]} context points, but this PFN was trained on sequences of "
                f"{self.seq_len} (at most {self.seq_len - 1} context points); subsample the "
                "context or train with a longer seq_len."
            )
        if x_test.shape[1] == 0:
            raise DataError("x_test holds no test inputs.")
        for name, a in (("x_train", x_train), ("y_train", y_train), ("x_test", x_test)):
            if not np.isfinite(a).all():
                raise DataError(f"{name} holds non-finite values; a PFN needs finite data.")
        low, high = self.scaling["x_min"], self.scaling["x_max"]
        slack = 0.05 * (high - low)
        for name, a in (("x_train", x_train), ("x_test", x_test)):
            if a.size and (np.any(a < low - slack) or np.any(a > high + slack)):
                warnings.warn(
                    f"{name} has inputs outside the range this PFN was trained on "
                    f"({low.round(3).tolist()} to {high.round(3).tolist()}); its predictions "
                    "there are extrapolations of the network, not of the prior.",
                    UserWarning,
                    stacklevel=3,
                )
        return x_train, y_train, x_test, batched

    def _meta(self):
        return {
            "network": self.network.config(),
            "prior": self.prior.config() if hasattr(self.prior, "config") else None,
            "seq_len": self.seq_len,
            "settings": self.settings,
        }

    def _arrays(self):
        arrays = {
            "params": jax.tree.map(np.asarray, self.params),
            "scaling": self.scaling,
            "loss": np.asarray(self.diagnostics.get("loss", np.zeros(0)), np.float32),
        }
        if self.borders is not None:
            arrays["borders"] = np.asarray(self.borders)
        return arrays

    def save(self, path):
        """Write the PFN to ``path`` (one file of probinfer's estimator format, kind ``"pfn"``,
        written atomically); :func:`load` or ``pi.load(path)`` reads it. Returns the path."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return super().save(path)

    def __repr__(self):
        return f"PFN(prior={self.prior!r}, seq_len={self.seq_len}, network={self.network.config()})"


def load(name_or_path, *, prior=None):
    """Load a PFN saved with :meth:`PFN.save`, or a shipped one by name (``"gp-rbf-1d"``: a
    1-D GP-regression PFN, see docs/guide/pfn-dt.md for its training command and evaluation).

    ``prior``: the prior it was trained on, needed only for a ``ModelPrior`` (code is not saved).
    Files of the format before :mod:`probinfer.nn.estimator` keep loading.
    """
    if str(name_or_path) in SHIPPED:
        shipped = resources.files("probinfer.inference.pfn") / "weights" / f"{name_or_path}.msgpack"
        with resources.as_file(shipped) as path:
            return estimator_file.load(path, kind=KIND, prior=prior)
    if not Path(name_or_path).exists():
        raise DataError(
            f"no PFN at '{name_or_path}': pass the path of a saved PFN or one of the shipped "
            f"names {list(SHIPPED)}."
        )
    return estimator_file.load(name_or_path, kind=KIND, prior=prior)


def _loader(path, header, arrays, model, *, prior=None):
    if model is not None:
        raise DataError(
            f"'{path}' holds a PFN, which was trained on a prior, not a model: load it without "
            "one (pass prior= for a ModelPrior)."
        )
    meta = header["meta"]
    config = dict(meta["network"])
    config["dtype"] = jnp.dtype(config["dtype"])
    borders = arrays.get("borders")
    return PFN(
        prior=prior if prior is not None else prior_from_config(meta["prior"] or {"kind": "-"}),
        network=Transformer(**config),
        params=jax.tree.map(jnp.asarray, arrays["params"]),
        borders=None if borders is None or not np.size(borders) else np.asarray(borders),
        scaling=arrays["scaling"],
        seq_len=meta["seq_len"],
        settings=meta["settings"],
        diagnostics={"loss": np.asarray(arrays.get("loss", np.zeros(0)), np.float32)},
    )


def _migrate(payload):
    """A file of the legacy PFN format (no header; a JSON ``header`` with the network's
    configuration) as ``(meta, arrays, sites)``; None for any other file."""
    raw = payload.get("header")
    if not isinstance(raw, str) or "seq_len" not in raw or "params" not in payload:
        return None
    header = json.loads(raw)
    if not isinstance(header, dict) or not {"network", "seq_len"} <= set(header):
        return None
    meta = {k: header.get(k) for k in ("network", "prior", "seq_len", "settings")}
    arrays = {
        "params": payload["params"],
        "scaling": payload["scaling"],
        "loss": np.asarray(header.get("loss", []), np.float32),
    }
    if np.size(payload.get("borders", ())):
        arrays["borders"] = payload["borders"]
    return meta, arrays, None


estimator_file.register(KIND, _loader, _migrate)
