"""Partial BNNs trained by open-horizon SMC vs the same network as a MAP point estimate.

Data: scikit-learn's bundled diabetes regression (442 × 10) and a 1-D synthetic regression in the
spirit of the paper's toy (y = sin(3x) + 0.3 x + heteroscedastic-free noise 0.1, with a gap in the
inputs so that the two methods' uncertainty differs away from the data). Inputs and targets are
standardised on the training split; test NLPD is reported in standardised units (lower is better),
mean ± sd over seeds (each seed: a fresh 80/20 split and fresh initialisation), for each weight
decay of ψ in ``--weight-decays`` (the same for both methods; no tuning on the test split). Writes
``experiments/smc/results/pbnn.json``.

    python experiments/smc/pbnn.py [--seeds 5] [--epochs 300]
"""

import argparse
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import load_diabetes

from probinfer._utils import write_json
from probinfer.inference.smc import map_network, mlp, pbnn_smc


def synthetic(seed, n=300):
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.uniform(-3, -0.5, n // 2), rng.uniform(1.0, 3, n - n // 2)])
    y = np.sin(3 * x) + 0.3 * x + 0.1 * rng.normal(size=n)
    return x[:, None], y


def diabetes(seed):
    data = load_diabetes()
    return data.data, data.target


def split(x, y, seed):
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    cut = int(0.8 * len(y))
    train, test = order[:cut], order[cut:]
    mx, sx = x[train].mean(0), x[train].std(0) + 1e-12
    my, sy = y[train].mean(), y[train].std()
    scale = lambda a, b: (((a - mx) / sx).astype(np.float32), ((b - my) / sy).astype(np.float32))  # noqa: E731
    return scale(x[train], y[train]), scale(x[test], y[test])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--particles", type=int, default=100)
    parser.add_argument("--weight-decays", type=float, nargs="+", default=[0.0, 1.0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "pbnn.json"))
    args = parser.parse_args()
    results = {}
    for weight_decay in args.weight_decays:
        for name, loader in [("diabetes", diabetes), ("synthetic", synthetic)]:
            key = f"{name} (weight decay {weight_decay:g})"
            results[key] = run(name, loader, weight_decay, args)
    results["settings"] = vars(args)
    write_json(args.out, results)


def run(name, loader, weight_decay, args):
    scores = {"pbnn_smc": [], "map": []}
    seconds = {"pbnn_smc": 0.0, "map": 0.0}
    for seed in range(args.seeds):
        (x, y), (x_test, y_test) = split(*loader(seed), seed)
        network = mlp(hidden=(50,))
        start = time.perf_counter()
        smc = pbnn_smc(
            network,
            x,
            y,
            key=seed,
            num_particles=args.particles,
            batch_size=32,
            num_epochs=args.epochs,
            learning_rate=3e-3,
            weight_decay=weight_decay,
        )
        seconds["pbnn_smc"] += time.perf_counter() - start
        start = time.perf_counter()
        point = map_network(
            network,
            x,
            y,
            key=seed,
            batch_size=32,
            num_epochs=args.epochs,
            learning_rate=3e-3,
            weight_decay=weight_decay,
        )
        seconds["map"] += time.perf_counter() - start
        scores["pbnn_smc"].append(smc.nlpd(x_test, y_test[:, None]))
        scores["map"].append(point.nlpd(x_test, y_test[:, None]))
    result = {
        method: {
            "test_nlpd_mean": float(np.mean(v)),
            "test_nlpd_sd": float(np.std(v)),
            "per_seed": [float(s) for s in v],
            "seconds_total": seconds[method],
        }
        for method, v in scores.items()
    }
    line = ", ".join(f"{m}: {np.mean(v):.3f} ± {np.std(v):.3f}" for m, v in scores.items())
    print(f"{name:10s} weight decay {weight_decay:g}: test NLPD ({args.seeds} seeds) — {line}")
    return result


if __name__ == "__main__":
    main()
