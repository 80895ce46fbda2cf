"""``Posterior``: the one result type every inference method returns.

Draws are named constrained values with leading axes ``(chains, draws)`` — for particle methods
``(1, num_particles)`` — optionally with normalised log weights (``logsumexp = 0`` over all draws)
and a log evidence estimate. It summarises (mean, sd, 5/50/95 % quantiles, bulk/tail ESS, R-hat),
converts to ArviZ ``InferenceData``, saves and loads atomically, and draws unweighted samples.
"""

import io
import json
import math

import jax
import jax.numpy as jnp
import numpy as np

from probinfer._utils import as_key, atomic_write_bytes, need_key, read_npz
from probinfer.devices import to_host
from probinfer.diagnostics import chain_diagnostics, kish_ess
from probinfer.errors import DataError, ProbinferError

__all__ = ["Posterior", "kish_ess"]


def _component_labels(name, shape):
    if not shape:
        return [name]
    return [f"{name}[{','.join(map(str, idx))}]" for idx in np.ndindex(*shape)]


def _weighted_quantiles(values, weights, qs):
    order = np.argsort(values)
    cdf = np.cumsum(weights[order])
    cdf = cdf / cdf[-1]
    return [values[order][min(np.searchsorted(cdf, q), len(values) - 1)] for q in qs]


class Posterior:
    """Result of an inference method.

    Args:
        draws: ``{site: array (chains, draws, *site_shape)}`` of constrained values.
        method: name of the method that produced them (``"hmc"``, ``"smc"``, ...).
        log_weights: optional ``(chains, draws)`` log weights; normalised here over all draws.
        log_evidence: optional estimate of ``log p(data)``.
        diagnostics: per-method diagnostics (acceptance, step sizes, ESS, temperatures, ...).
        settings: the method's settings, saved with the draws.

    Example:
        >>> post = pi.mcmc(target, key=0)              # doctest: +SKIP
        >>> post.summary()                             # doctest: +SKIP
        >>> draws = post.sample(key=1, n=1000)         # {site: (1000, *shape)}  # doctest: +SKIP
    """

    def __init__(
        self, draws, *, method, log_weights=None, log_evidence=None, diagnostics=None, settings=None
    ):
        # to_host: draws split over the processes of a multi-process run are gathered here.
        self.draws = {k: to_host(v) for k, v in draws.items()}
        leading = {v.shape[:2] for v in self.draws.values()}
        if len(leading) > 1 or any(v.ndim < 2 for v in self.draws.values()):
            raise ProbinferError(
                f"Posterior draws need common leading axes (chains, draws); got "
                f"{ {k: v.shape for k, v in self.draws.items()} }."
            )
        self.num_chains, self.num_draws = leading.pop() if leading else (0, 0)
        if log_weights is not None:
            log_weights = np.asarray(to_host(log_weights), dtype=np.float64)
            if log_weights.shape != (self.num_chains, self.num_draws):
                raise ProbinferError(
                    f"log_weights has shape {log_weights.shape}, draws have leading axes "
                    f"{(self.num_chains, self.num_draws)}."
                )
            if np.isnan(log_weights).any():
                raise ProbinferError(
                    "log_weights contain NaN; -inf is the weight of an impossible draw."
                )
            log_weights = log_weights - _logsumexp(log_weights)
        self.log_weights = log_weights
        self.log_evidence = None if log_evidence is None else float(log_evidence)
        self.method = method
        self.diagnostics = {
            k: to_host(v) if isinstance(v, jax.Array) else v for k, v in (diagnostics or {}).items()
        }
        self.settings = dict(settings or {})

    # -- views -------------------------------------------------------------------------------------

    @property
    def sites(self):
        """Names of the sites with draws."""
        return tuple(self.draws)

    def _flat(self):
        return {k: v.reshape((-1,) + v.shape[2:]) for k, v in self.draws.items()}

    def _weights(self):
        if self.log_weights is None:
            return None
        return np.exp(self.log_weights.ravel())

    def mean(self):
        """Posterior mean of each site (weighted where weights exist): ``{site: site_shape}``."""
        weights = self._weights()
        return {
            k: (v.mean(0) if weights is None else np.tensordot(weights, v, axes=(0, 0)))
            for k, v in self._flat().items()
        }

    def sample(self, *, key, n):
        """``n`` unweighted draws: ``{site: array (n, *site_shape)}``.

        Weighted draws are resampled multinomially with their weights, so the result is an i.i.d.
        sample from the weighted empirical distribution; unweighted draws are subsampled without
        replacement when ``n`` does not exceed their number, with replacement otherwise.
        """
        total = self.num_chains * self.num_draws
        key = as_key(key)
        if self.log_weights is not None:
            index = jax.random.categorical(key, jnp.asarray(self.log_weights.ravel()), shape=(n,))
        else:
            index = jax.random.choice(key, total, shape=(n,), replace=n > total)
        index = np.asarray(index)
        return {k: v[index] for k, v in self._flat().items()}

    # -- summaries -----------------------------------------------------------------------------------

    def summary(self, sites=None):
        """Table of mean, sd, 5/50/95 % quantiles, bulk and tail ESS and R-hat per component.

        ESS and R-hat are the rank-normalised estimators of Vehtari et al. (2021), ArviZ's to
        float rounding (:func:`probinfer.diagnostics.chain_diagnostics`, vectorised). For
        weighted draws, moments and quantiles are weighted, ``ess_bulk`` is Kish's ESS of the
        weights and R-hat is not defined (NaN). Returns a ``pandas.DataFrame`` indexed by
        ``site[i,j]``.
        """
        import pandas as pd

        sites = list(sites or self.sites)
        weights = self._weights()
        blocks, index = [], []
        for name in sites:
            values = self.draws[name]
            flat = values.reshape(values.shape[:2] + (-1,)).astype(np.float64)
            index += _component_labels(name, values.shape[2:])
            pooled = flat.reshape(-1, flat.shape[-1])
            if weights is None:
                mean = pooled.mean(axis=0)
                sd = pooled.std(axis=0, ddof=1) if len(pooled) > 1 else np.full(len(mean), np.nan)
                quantiles = np.quantile(pooled, [0.05, 0.5, 0.95], axis=0)
                r_hat, bulk, tail = chain_diagnostics(flat)
                blocks.append(np.column_stack([mean, sd, *quantiles, bulk, tail, r_hat]))
                continue
            ess = float(kish_ess(self.log_weights))
            for x in pooled.T:
                mean = float(np.sum(weights * x))
                sd = float(np.sqrt(np.sum(weights * (x - mean) ** 2)))
                quantiles = _weighted_quantiles(x, weights, [0.05, 0.5, 0.95])
                blocks.append(np.array([[mean, sd, *quantiles, ess, ess, np.nan]]))
        columns = ["mean", "sd", "q5", "q50", "q95", "ess_bulk", "ess_tail", "r_hat"]
        rows = np.concatenate(blocks) if blocks else np.zeros((0, len(columns)))
        return pd.DataFrame(rows, index=index, columns=columns)

    def to_arviz(self, *, key=None):
        """ArviZ ``InferenceData`` with the draws in ``posterior`` and per-draw diagnostics in
        ``sample_stats``. Weighted draws are first resampled (multinomially, with ``key``) to an
        unweighted set of the same size, since ArviZ has no notion of weights; the log weights are
        kept in ``sample_stats.log_weight`` of the original draws' order only when unweighted."""
        from probinfer._utils import import_arviz

        az = import_arviz()

        if self.log_weights is not None:
            key = need_key(key, "Posterior.to_arviz of weighted draws")
            flat = self.sample(key=key, n=self.num_chains * self.num_draws)
            posterior = {
                k: v.reshape((self.num_chains, self.num_draws) + v.shape[1:])
                for k, v in flat.items()
            }
        else:
            posterior = self.draws
        shape = (self.num_chains, self.num_draws)
        sample_stats = {
            k: np.asarray(v)
            for k, v in self.diagnostics.items()
            if np.shape(v) == shape and self.log_weights is None
        }
        attrs = {"method": self.method, "inference_library": "probinfer"}
        if self.log_evidence is not None:
            attrs["log_evidence"] = self.log_evidence
        return az.from_dict(posterior=posterior, sample_stats=sample_stats or None, attrs=attrs)

    def loo(self, target, *, key=None, num_draws=None):
        """PSIS-LOO of these draws of ``target``'s posterior: :func:`probinfer.comparison.loo`."""
        from probinfer.comparison import loo

        return loo(self, target, key=key, num_draws=num_draws)

    # -- persistence ---------------------------------------------------------------------------------

    def save(self, path):
        """Save to ``path`` (``.npz``) atomically: a crash mid-write never leaves a broken file."""
        arrays = {f"draws/{k}": v for k, v in self.draws.items()}
        if self.log_weights is not None:
            arrays["log_weights"] = self.log_weights
        scalars, nested = {}, {}
        for k, v in self.diagnostics.items():
            if isinstance(v, dict):  # e.g. SMC's counts of non-finite prior draws, by kind
                nested[k] = {str(a): np.asarray(b).tolist() for a, b in v.items()}
            elif np.ndim(v) == 0 and isinstance(np.asarray(v).item(), (int, float, bool, str)):
                scalars[k] = np.asarray(v).item()
            else:
                arrays[f"diagnostics/{k}"] = np.asarray(v)
        meta = {
            "method": self.method,
            "log_evidence": self.log_evidence,
            "scalar_diagnostics": scalars,
            "dict_diagnostics": nested,
            "settings": self.settings,
            "format": 1,
        }
        arrays["__meta__"] = np.frombuffer(json.dumps(meta, default=repr).encode(), np.uint8)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        atomic_write_bytes(path, buffer.getvalue())

    @classmethod
    def load(cls, path):
        """Load a Posterior written by :meth:`save`; a damaged or foreign file raises one
        :class:`~probinfer.errors.DataError` naming it."""
        fix = "write it again with Posterior.save"
        data = read_npz(path, "probinfer posterior file", fix)
        try:
            meta = json.loads(bytes(data["__meta__"]).decode())
            missing = {"method", "settings", "log_evidence", "scalar_diagnostics"} - set(meta)
        except (KeyError, TypeError, UnicodeDecodeError, json.JSONDecodeError) as error:
            missing = f"{type(error).__name__}: {error}"
        if missing:
            raise DataError(
                f"'{path}' is an .npz file but not a probinfer posterior (its metadata is missing "
                f"or damaged: {missing}); {fix}."
            )
        draws = {k[len("draws/") :]: v for k, v in data.items() if k.startswith("draws/")}
        diagnostics = {
            k[len("diagnostics/") :]: v for k, v in data.items() if k.startswith("diagnostics/")
        }
        log_weights = data.get("log_weights")
        diagnostics.update(meta["scalar_diagnostics"])
        diagnostics.update(meta.get("dict_diagnostics", {}))
        return cls(
            draws,
            method=meta["method"],
            log_weights=log_weights,
            log_evidence=meta["log_evidence"],
            diagnostics=diagnostics,
            settings=meta["settings"],
        )

    def __repr__(self):
        sites = ", ".join(f"{k}{list(v.shape[2:])}" for k, v in self.draws.items())
        extra = "" if self.log_evidence is None else f", log_evidence={self.log_evidence:.4g}"
        weighted = ", weighted" if self.log_weights is not None else ""
        return (
            f"Posterior({self.method}: {self.num_chains} x {self.num_draws} draws of "
            f"[{sites}]{weighted}{extra})"
        )


def _logsumexp(x):
    top = np.max(x)
    if not math.isfinite(top):
        raise ProbinferError(
            "every log weight is -inf; the weighted sample carries no information."
        )
    return top + np.log(np.sum(np.exp(x - top)))
