"""Flow VI against SMC on two real posteriors (issue 13's figure): the centred eight schools (a
funnel) and the breast-cancer logistic regression. ``pi.flow_vi`` with its defaults and
``pi.smc`` with its defaults (4,096 particles); marginal histograms of a few coordinates
overlaid, and the worst mean / sd discrepancy between the two in SMC's sd.

Writes ``experiments/flows/figures/posteriors.png`` and ``experiments/flows/results/posteriors.json``.

    python experiments/flows/posteriors.py
"""

import warnings
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import probinfer as pi  # noqa: E402
from probinfer._utils import write_json  # noqa: E402

HERE = Path(__file__).parent
SHOWN = {
    "eight_schools_centered": [("mu", None), ("tau", None), ("theta", 0), ("theta", 2)],
    "logistic_regression": [("b", None), ("w", 0), ("w", 7), ("w", 20)],
}


def _column(post, site, index):
    x = np.asarray(post.draws[site][0])
    return x if index is None else x[:, index]


def _weights(post):
    if post.log_weights is None:
        return None
    return np.exp(post.log_weights[0] - post.log_weights[0].max())


def main():
    fig, axes = plt.subplots(2, 4, figsize=(14, 6))
    results = {}
    for row, (name, shown) in enumerate(SHOWN.items()):
        target = pi.models.get(name).compile()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            flow = pi.flow_vi(target, key=0, num_draws=4096, progress=False)
            smc = pi.smc(target, key=0, num_particles=4096, progress=False)
        worst_mean = worst_sd = 0.0
        w = _weights(smc)
        for site in target.latent_sites:
            a = np.asarray(flow.draws[site][0]).reshape(4096, -1)
            b = np.asarray(smc.draws[site][0]).reshape(4096, -1)
            weights = np.ones(len(b)) if w is None else w
            weights = weights / weights.sum()
            mean_b = weights @ b
            sd_b = np.sqrt(weights @ (b - mean_b) ** 2)
            worst_mean = max(worst_mean, float(np.max(np.abs(a.mean(0) - mean_b) / sd_b)))
            worst_sd = max(worst_sd, float(np.max(np.abs(a.std(0) / sd_b - 1))))
        results[name] = {
            "worst_mean_difference_in_smc_sd": worst_mean,
            "worst_sd_relative_difference": worst_sd,
            "pareto_k": flow.diagnostics["pareto_k"],
            "smc_log_evidence": smc.log_evidence,
        }
        print(name, results[name], flush=True)
        for ax, (site, index) in zip(axes[row], shown, strict=True):
            a, b = _column(flow, site, index), _column(smc, site, index)
            bins = np.linspace(*np.percentile(np.concatenate([a, b]), [0.5, 99.5]), 60)
            ax.hist(b, bins=bins, weights=w, density=True, alpha=0.5, label="SMC")
            ax.hist(a, bins=bins, density=True, histtype="step", lw=2, label="flow VI (nsf)")
            label = site if index is None else f"{site}[{index}]"
            ax.set(title=f"{name}: {label}", yticks=[])
        axes[row, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(HERE / "figures" / "posteriors.png", dpi=110)
    write_json(HERE / "results" / "posteriors.json", results)


if __name__ == "__main__":
    main()
