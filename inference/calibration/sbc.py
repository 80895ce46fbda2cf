"""Simulation-based calibration — Talts, Betancourt, Simpson, Vehtari & Gelman (2018),
"Validating Bayesian Inference Algorithms with Simulation-Based Calibration".

For each test pair ``(θ*_i, x_i)`` from the prior predictive and n posterior samples, the rank
``r_{i,d} = Σ_j 1[θ_{ij,d} < θ*_{i,d}] ∈ {0, …, n}`` of the truth among the samples is uniform on
``{0, …, n}`` for every coordinate ``d`` when the posterior is exact (for independent samples;
thin correlated chains first). Ranks are spread to ``u = (r + v) / (n + 1)``, ``v ~ U(0, 1)``,
which is exactly U(0, 1) under calibration whatever n is, then binned into ``num_bins`` equal
bins and tested with a chi-square test per coordinate; the verdict uses a Bonferroni correction across coordinates.
SBC looks at marginals, TARP at the joint: they fail on different estimators, so use both.
"""

from dataclasses import dataclass

import jax
import numpy as np
from scipy import stats

from probinfer._utils import need_key
from probinfer.errors import DataError
from probinfer.inference.calibration.tarp import _validate

__all__ = ["sbc", "SBCResult"]


@dataclass(frozen=True)
class SBCResult:
    """ranks: (N, dim) ranks in {0..n}; num_samples: n; num_bins; counts: (dim, num_bins) binned
    rank counts; chi2, pvalues: (dim,) chi-square statistics and p-values of uniformity."""

    ranks: np.ndarray
    num_samples: int
    num_bins: int
    counts: np.ndarray
    chi2: np.ndarray
    pvalues: np.ndarray

    def is_uniform(self, level=0.05):
        """True unless some coordinate rejects uniformity at ``level`` / dim (Bonferroni)."""
        return bool(np.all(self.pvalues >= level / self.pvalues.shape[0]))

    def verdict(self, level=0.05, names=None):
        """One sentence saying which coordinates (if any) have non-uniform ranks."""
        dim = self.pvalues.shape[0]
        names = names or [f"θ[{d}]" for d in range(dim)]
        bad = [n for n, p in zip(names, self.pvalues, strict=True) if p < level / dim]
        head = f"SBC over {self.ranks.shape[0]} simulations, {self.num_samples} samples each"
        if not bad:
            return f"{head}: ranks uniform in every coordinate (min p = {self.pvalues.min():.3g})."
        return (
            f"{head}: ranks NOT uniform for {', '.join(bad)} (p < {level / dim:.3g} after "
            "Bonferroni); the posterior is miscalibrated in those coordinates."
        )

    def plot(self, axes=None, names=None):
        """Rank histograms per coordinate with the 99 % band of a uniform histogram."""
        import matplotlib.pyplot as plt

        dim = self.counts.shape[0]
        if axes is None:
            _, axes = plt.subplots(1, dim, figsize=(2.6 * dim, 2.4), squeeze=False)
            axes = axes[0]
        total = self.ranks.shape[0]
        low, high = stats.binom.ppf([0.005, 0.995], total, 1.0 / self.num_bins)
        for d, ax in enumerate(np.ravel(axes)[:dim]):
            ax.axhspan(low, high, color="0.85", label="99 % uniform band")
            ax.bar(np.arange(self.num_bins), self.counts[d], width=1.0, edgecolor="white")
            ax.set_title(names[d] if names else f"θ[{d}]", fontsize=9)
            ax.set_xlabel("rank bin")
        np.ravel(axes)[0].set_ylabel("count")
        return axes


def sbc(samples, theta, *, key=None, num_bins=None, layout="samples-first"):
    """SBC rank statistics of ``samples`` ``(n_samples, n_sims, dim)`` for truths ``theta``
    ``(n_sims, dim)`` (``layout="sims-first"`` for ``(n_sims, n_samples, dim)``).

    ``num_bins`` defaults to ``n_sims // 10`` clipped to [2, 20]; ``key`` seeds the spreading of
    ranks within their unit cell.

    >>> result = sbc(samples, theta, key=0)   # doctest: +SKIP
    >>> result.is_uniform()                   # doctest: +SKIP
    """
    samples, theta = _validate(samples, theta, layout)
    samples, theta = np.asarray(samples), np.asarray(theta)
    num_samples, num_sims, dim = samples.shape
    ranks = (samples < theta[None]).sum(0)
    num_bins = int(num_bins or max(2, min(20, num_sims // 10)))
    if num_bins < 2:
        raise DataError(f"num_bins must be at least 2 (a histogram of ranks), got {num_bins}.")
    spread = np.asarray(jax.random.uniform(need_key(key, "sbc"), ranks.shape), np.float64)
    binned = np.minimum(((ranks + spread) / (num_samples + 1) * num_bins).astype(int), num_bins - 1)
    counts = np.stack([np.bincount(binned[:, d], minlength=num_bins) for d in range(dim)])
    expected = num_sims / num_bins
    chi2 = ((counts - expected) ** 2 / expected).sum(1)
    pvalues = stats.chi2.sf(chi2, num_bins - 1)
    return SBCResult(ranks, num_samples, num_bins, counts, chi2, pvalues)
