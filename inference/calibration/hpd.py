"""Expected coverage of highest-density regions (ALGORITHMS §12; Hermans et al. 2022, "A Trust
Crisis in Simulation-Based Inference?").

For a simulated pair (θ*, x) and an estimator with a density q(θ | x), the smallest HPD region of
q that holds θ* has credibility

    α* = P_{θ ~ q(· | x)}[ log q(θ | x) > log q(θ* | x) ],

estimated by the share of q's draws denser than θ*. A calibrated estimator gives α* ~ Uniform(0, 1)
over the prior predictive: its α-HPD region holds the truth a fraction α of the time, for every
α. An overconfident (too narrow) q leaves θ* in its tails, piling α* towards 1; a conservative one
piles α* towards 0. The check is the Kolmogorov–Smirnov test of the α* against the uniform, and
the curve is the expected coverage ECP(α) = P(α* ≤ α) against α.

Unlike TARP and SBC it needs ``log_prob``, not only draws — flows and FMPE (whose log q is an ODE
solve, exact divergence up to 32 dimensions), not MCMC-based estimators.

>>> levels = hpd_levels(log_q_draws, log_q_truth)          # (num_sims,)   # doctest: +SKIP
>>> HPDCoverage(levels).verdict()                                          # doctest: +SKIP
"""

from dataclasses import dataclass, field

import numpy as np
from scipy import stats

__all__ = ["HPDCoverage", "hpd_levels"]


def hpd_levels(log_q_draws, log_q_truth):
    """α* per simulation: the share of draws with a higher log q than the truth's.

    Args:
        log_q_draws: ``(num_sims, num_draws)`` log q(θ_j | x_i) of q's own draws.
        log_q_truth: ``(num_sims,)`` log q(θ*_i | x_i).

    Returns:
        ``(num_sims,)`` credibility levels in [0, 1].
    """
    log_q_draws = np.asarray(log_q_draws, np.float64)
    log_q_truth = np.asarray(log_q_truth, np.float64)
    return np.mean(log_q_draws > log_q_truth[:, None], axis=1)


@dataclass(frozen=True)
class HPDCoverage:
    """The α* of every simulation and what they say: ``ecp(alphas)``, ``p_value`` (KS against
    the uniform), ``diagnosis(level)`` and ``verdict(level)``."""

    levels: np.ndarray = field(repr=False)

    def ecp(self, alphas=None):
        """``(alphas, expected coverage)``: the share of simulations with α* ≤ α."""
        alphas = np.linspace(0.0, 1.0, 101) if alphas is None else np.asarray(alphas)
        return alphas, np.mean(self.levels[None, :] <= alphas[:, None], axis=1)

    @property
    def p_value(self):
        return float(stats.kstest(self.levels, "uniform").pvalue)

    def diagnosis(self, level=0.05):
        """``"calibrated"``, ``"overconfident"`` or ``"underconfident"`` at ``level``."""
        if self.p_value >= level:
            return "calibrated"
        return "overconfident" if np.mean(self.levels) > 0.5 else "underconfident"

    def verdict(self, level=0.05):
        """One sentence: the diagnosis, the KS p-value and the coverage at 50 % and 90 %."""
        _, (half, ninety) = self.ecp([0.5, 0.9])
        return (
            f"HPD regions ({self.levels.size} simulations): {self.diagnosis(level)} "
            f"(Kolmogorov–Smirnov p = {self.p_value:.3g} at level {level:.3g}); the 50 % and "
            f"90 % regions held the truth {half:.0%} and {ninety:.0%} of the time."
        )
