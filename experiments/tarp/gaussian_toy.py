"""The TARP paper's Gaussian toy (Lemos, Coogan et al. 2023, §4.1), with HPD coverage beside TARP.

θ* has means ~ U(−5, 5) and log σ ~ U(−5, −1) in 10 dimensions; the observation fixes a Gaussian
posterior N(m, σ²) with m ~ N(θ*, σ²). Four estimators draw 1,000 samples for each of the
simulations: *correct* (the posterior itself), *under-confident* (σ × 2), *over-confident*
(σ / 2) and *biased* (mean moved by one σ). For each, TARP's expected coverage (random references,
100 bootstrap replicates) is drawn beside the HPD coverage, which uses the estimator's own density
(known here): the credibility of the smallest region holding θ* is the fraction of samples denser
than θ*. Writes ``experiments/tarp/figures/gaussian_toy.png`` and ``results.json``.

    python experiments/tarp/gaussian_toy.py [--sims 100] [--samples 1000]
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from probinfer._utils import write_json  # noqa: E402
from probinfer.inference.calibration import tarp  # noqa: E402
from probinfer.report import save_figure  # noqa: E402

ESTIMATORS = {
    "correct": (1.0, 0.0),
    "under-confident": (2.0, 0.0),
    "over-confident": (0.5, 0.0),
    "biased": (1.0, 1.0),
}


def hpd_coverage(samples, log_density_samples, log_density_truth, alpha):
    """ECP of highest-density regions: f_i = fraction of samples denser than θ*_i."""
    f = (log_density_samples > log_density_truth[None]).mean(0)
    return np.array([(f < a).mean() for a in alpha])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sims", type=int, default=100)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "figures"))
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    shape = (args.sims, args.dim)
    theta = rng.uniform(-5, 5, shape)
    sigma = np.exp(rng.uniform(-5, -1, shape))
    centre = theta + sigma * rng.normal(size=shape)
    noise = rng.normal(size=(args.samples, *shape))
    fig, axes = plt.subplots(2, len(ESTIMATORS), figsize=(3.3 * len(ESTIMATORS), 6.8))
    results = {}
    for column, (name, (width, shift)) in enumerate(ESTIMATORS.items()):
        mean, sd = centre + shift * sigma, width * sigma
        samples = mean[None] + sd[None] * noise
        coverage = tarp(samples, theta, key=column, bootstrap=100)
        # The estimator's own log density (up to a constant) at its samples and at θ*.
        log_q = -0.5 * (((samples - mean[None]) / sd[None]) ** 2).sum(-1)
        log_q_truth = -0.5 * (((theta - mean) / sd) ** 2).sum(-1)
        hpd = hpd_coverage(samples, log_q, log_q_truth, coverage.alpha)
        label, evidence = coverage.diagnosis()
        results[name] = {
            "verdict": label,
            "atc": coverage.atc,
            "ks_pvalue": coverage.ks_pvalue,
            "max_deviation": coverage.max_deviation,
            "hpd_max_deviation": float(np.abs(hpd - coverage.alpha).max()),
        }
        coverage.plot(axes[0, column], label="TARP")
        axes[0, column].set_title(f"{name}\nTARP verdict: {label}", fontsize=9)
        ax = axes[1, column]
        ax.plot([0, 1], [0, 1], color="0.5", linestyle="--", linewidth=1, label="ideal")
        ax.plot(coverage.alpha, hpd, color="C1", linewidth=2, label="HPD coverage")
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="credibility level α", ylabel="expected coverage")
        ax.set_aspect("equal")
        ax.legend(loc="upper left", fontsize=8)
        print(f"{name:16s} {coverage.verdict()}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_figure(
        axes,
        f"Gaussian toy: {args.sims} simulations × {args.samples} samples, {args.dim} dimensions",
        out / "gaussian_toy.png",
    )
    write_json(out / "results.json", results)
    print(f"figure written to {out / 'gaussian_toy.png'}")


if __name__ == "__main__":
    main()
