"""The flows paper's Figure 3, remade (Rezende & Mohamed 2015): the 2-D energies U1–U4 (first
column, exact on a grid) and the densities learned by planar flows of length 2, 8 and 32 and by
probinfer's default spline flow (``pi.flow_vi`` defaults), each fitted for ``--steps`` steps, on
the box [−4, 4]² (U2–U4 are improper in z₁ without it). The
planar flows use the paper's annealed objective; the spline flow its default ELBO. Each panel's
title gives KL(q ‖ p) estimated on the grid.

Writes ``experiments/flows/figures/energies.png`` and ``experiments/flows/results/energies.json``.

    python experiments/flows/figures.py [--steps 5000]
"""

import argparse
import warnings
from pathlib import Path

import jax.numpy as jnp
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import probinfer as pi  # noqa: E402
from probinfer._utils import write_json  # noqa: E402
from probinfer.models import energies  # noqa: E402

HERE = Path(__file__).parent
ENERGIES = {"U1": energies.u1, "U2": energies.u2, "U3": energies.u3, "U4": energies.u4}
COLUMNS = [("planar", 2), ("planar", 8), ("planar", 32), ("nsf", None)]
HALF, SIZE = 4.0, 300


def grid():
    edges = np.linspace(-HALF, HALF, SIZE + 1)
    a = 0.5 * (edges[1:] + edges[:-1])  # cell centres, inside the box
    points = np.stack(np.meshgrid(a, a), -1).reshape(-1, 2).astype(np.float32)
    return a, points, (a[1] - a[0]) ** 2


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5000)
    args = parser.parse_args()
    a, points, cell = grid()
    fig, axes = plt.subplots(4, 1 + len(COLUMNS), figsize=(3 * (1 + len(COLUMNS)), 12))
    results = {}
    for row, (name, energy) in enumerate(ENERGIES.items()):
        log_p = -np.asarray(energy(jnp.asarray(points)), np.float64)
        log_z = np.log(np.sum(np.exp(log_p - log_p.max())) * cell) + log_p.max()
        p = np.exp(log_p - log_z)
        axes[row, 0].imshow(p.reshape(SIZE, SIZE), origin="lower", extent=[-HALF, HALF] * 2)
        axes[row, 0].set_title(f"{name}: exp(−U), exact")
        target = pi.compile(energies.energy_model(energy, bound=HALF))
        for column, (flow, layers) in enumerate(COLUMNS, start=1):
            objective = "annealed" if flow == "planar" else "elbo"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                post = pi.flow_vi(
                    target,
                    key=0,
                    flow=flow,
                    num_layers=layers,
                    num_steps=args.steps,
                    objective=objective,
                    progress=False,
                )
            log_q = np.asarray(post.log_prob({"z": points}), np.float64)  # on the box
            q = np.exp(log_q)
            kl = float(np.sum(q * (log_q - log_p + log_z)) * cell)
            label = f"planar K={layers}" if flow == "planar" else "spline (default)"
            results[f"{name} {label}"] = {"kl": kl, "pareto_k": post.diagnostics["pareto_k"]}
            print(name, label, results[f"{name} {label}"], flush=True)
            ax = axes[row, column]
            ax.imshow(q.reshape(SIZE, SIZE), origin="lower", extent=[-HALF, HALF] * 2)
            ax.set_title(f"{label}\nKL(q‖p) = {kl:.3f}")
    for ax in axes.ravel():
        ax.set(xticks=[], yticks=[])
    fig.tight_layout()
    (HERE / "figures").mkdir(exist_ok=True)
    fig.savefig(HERE / "figures" / "energies.png", dpi=100)
    write_json(HERE / "results" / "energies.json", {"steps": args.steps, "results": results})


if __name__ == "__main__":
    main()
