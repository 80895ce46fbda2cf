"""The coin-sampling paper's figures, remade with probinfer (Sharrock & Nemeth 2023, §5).

1. ``ksd_vs_learning_rate.png``: KSD of 100 particles after 1,000 iterations against SVGD's
   learning rate (Adam), with Coin SVGD — which has none — as a horizontal line, on the banana,
   the two-mode mixture, Rezende's ring U₁ and the breast-cancer logistic regression (31 dims);
   mean over ``--seeds`` seeds, bars ± 1 se.
2. ``toy_targets.png``: 2-D targets (mixture, banana, donut = Rezende U₁, funnel, squiggle =
   Rezende U₂), density contours with the particles of Coin SVGD and of SVGD at its best rate of
   the sweep on that target.
3. ``logistic_regression.png``: Bayesian logistic regression on breast cancer, 80 / 20 split:
   test accuracy and test log-likelihood (of the particle predictive) against SVGD's learning
   rate, Coin SVGD as a line.

Writes the PNGs to ``experiments/coin/figures/`` and the numbers to
``experiments/coin/results/figures.json``.

    python experiments/coin/figures.py [--seeds 3]
"""

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import probinfer as pi  # noqa: E402
from probinfer._utils import write_json  # noqa: E402
from probinfer.diagnostics import ksd, median_lengthscale  # noqa: E402
from probinfer.models import energies, get, logistic_regression  # noqa: E402

LEARNING_RATES = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
HERE = Path(__file__).parent


def toy_targets():
    return {
        "mixture": get("gaussian_mixture").compile(),
        "banana": get("banana").compile(),
        "donut (U1)": pi.compile(energies.energy_model(energies.u1)),
        "funnel": pi.compile(energies.funnel, dim=2),
        "squiggle (U2)": pi.compile(energies.energy_model(energies.u2)),
    }


def particles(target, post):
    """The unconstrained particles (N, dim) of a one-chain particle Posterior."""
    draws = {k: jnp.asarray(v[0]) for k, v in post.draws.items()}
    return np.asarray(jax.vmap(target.unconstrain)(draws))


def particle_ksd(target, x):
    x = jnp.asarray(x)
    scores = jax.vmap(jax.grad(target.log_density))(x)
    return float(ksd(x, scores, lengthscale=median_lengthscale(x)))


def sweep(target, seeds):
    """KSD per seed for Coin SVGD and SVGD at each learning rate, and the particles of seed 0."""
    out, kept = {}, {}
    for label, runner, extra in [("coin_svgd", pi.coin_svgd, {})] + [
        (lr, pi.svgd, {"learning_rate": lr}) for lr in LEARNING_RATES
    ]:
        values = []
        for seed in range(seeds):
            post = runner(target, key=seed, progress=False, **extra)
            x = particles(target, post)
            values.append(particle_ksd(target, x))
            if seed == 0:
                kept[label] = x
        out[label] = values
    return out, kept


def breast_cancer_split(seed=0):
    x, y = logistic_regression.load_breast_cancer()
    order = np.random.default_rng(seed).permutation(len(y))
    cut = int(0.8 * len(y))
    return (x[order[:cut]], y[order[:cut]]), (x[order[cut:]], y[order[cut:]])


def predictive(post, x, y):
    """Test accuracy and mean log-likelihood of the particle predictive p(y | x) = mean_i σ(·)."""
    w, b = post.draws["w"][0], post.draws["b"][0]
    p = jax.nn.sigmoid(x @ w.T + b).mean(1)
    p = np.clip(np.asarray(p, np.float64), 1e-12, 1 - 1e-12)
    accuracy = float(np.mean((p > 0.5) == (y > 0.5)))
    log_lik = float(np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))
    return accuracy, log_lik


def _mean_se(values):
    values = np.asarray(values, float)
    return values.mean(), values.std(ddof=1) / np.sqrt(values.size) if values.size > 1 else 0.0


def _sweep_panel(ax, values):
    """SVGD's mean ± se against the learning rate, Coin SVGD's as a line with its band;
    ``values``: {"coin_svgd" or learning rate: per-seed values}."""
    means = [_mean_se(values[lr]) for lr in LEARNING_RATES]
    ax.errorbar(
        LEARNING_RATES,
        [m for m, _ in means],
        [s for _, s in means],
        marker="o",
        label="SVGD (Adam)",
    )
    coin, coin_se = _mean_se(values["coin_svgd"])
    ax.axhline(coin, color="C3", label="Coin SVGD (no learning rate)")
    ax.axhspan(coin - coin_se, coin + coin_se, color="C3", alpha=0.2)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    (HERE / "figures").mkdir(exist_ok=True)
    results = {"learning_rates": list(LEARNING_RATES), "seeds": args.seeds}

    # 1 and 2: the KSD sweep on the toy targets (and the particles for the grid).
    toys = toy_targets()
    sweeps, kept = {}, {}
    for name, target in toys.items():
        sweeps[name], kept[name] = sweep(target, args.seeds)
        print(name, {k: round(float(np.mean(v)), 4) for k, v in sweeps[name].items()}, flush=True)
    train, test = breast_cancer_split()
    blr = pi.compile(logistic_regression.logistic_regression, train[0], y=train[1])
    sweeps["breast cancer LR (31-D)"], _ = sweep(blr, args.seeds)
    results["ksd"] = sweeps

    shown = ["banana", "mixture", "donut (U1)", "breast cancer LR (31-D)"]
    fig, axes = plt.subplots(1, len(shown), figsize=(4 * len(shown), 3.4))
    for ax, name in zip(axes, shown, strict=True):
        _sweep_panel(ax, {k: sweeps[name][k] for k in ("coin_svgd", *LEARNING_RATES)})
        ax.set(xscale="log", yscale="log", xlabel="learning rate", title=name)
    axes[0].set_ylabel("KSD after 1,000 iterations")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(HERE / "figures" / "ksd_vs_learning_rate.png", dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(2, len(toys), figsize=(3.2 * len(toys), 6.4))
    for column, (name, target) in enumerate(toys.items()):
        best = min(LEARNING_RATES, key=lambda lr: np.mean(sweeps[name][lr]))
        both = np.concatenate([kept[name]["coin_svgd"], kept[name][best]])
        low, high = np.percentile(both, 1, 0), np.percentile(both, 99, 0)
        pad = 0.25 * (high - low)
        a = np.linspace(low[0] - pad[0], high[0] + pad[0], 120)
        b = np.linspace(low[1] - pad[1], high[1] + pad[1], 120)
        grid = jnp.asarray(np.stack(np.meshgrid(a, b), -1).reshape(-1, 2), jnp.float32)
        density = np.exp(np.asarray(jax.vmap(target.log_density)(grid)).reshape(120, 120))
        for row, (label, x) in enumerate(
            [("Coin SVGD", kept[name]["coin_svgd"]), (f"SVGD, best rate {best}", kept[name][best])]
        ):
            ax = axes[row, column]
            ax.contourf(a, b, density, levels=12, cmap="Blues")
            ax.scatter(x[:, 0], x[:, 1], s=6, color="C3")
            ax.set(title=f"{name}\n{label}", xticks=[], yticks=[])
    fig.tight_layout()
    fig.savefig(HERE / "figures" / "toy_targets.png", dpi=110)
    plt.close(fig)

    # 3: breast-cancer logistic regression, test metrics against the learning rate.
    metrics = {}
    for label, runner, extra in [("coin_svgd", pi.coin_svgd, {})] + [
        (lr, pi.svgd, {"learning_rate": lr}) for lr in LEARNING_RATES
    ]:
        metrics[label] = [
            predictive(runner(blr, key=seed, progress=False, **extra), *test)
            for seed in range(args.seeds)
        ]
    results["logistic_regression_test"] = metrics
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for index, (ax, what) in enumerate(
        zip(axes, ["test accuracy", "test log-likelihood"], strict=True)
    ):
        _sweep_panel(ax, {k: [m[index] for m in v] for k, v in metrics.items()})
        ax.set(xscale="log", xlabel="learning rate", ylabel=what)
    axes[0].legend(fontsize=8)
    fig.suptitle("Bayesian logistic regression, breast cancer (80/20 split), 100 particles")
    fig.tight_layout()
    fig.savefig(HERE / "figures" / "logistic_regression.png", dpi=120)
    plt.close(fig)
    write_json(HERE / "results" / "figures.json", results)


if __name__ == "__main__":
    main()
