"""Evidence (log Z) by adaptive tempered SMC on zoo models, against the exact value where one exists.

Each model: R independent runs of standard SMC (HMC moves) and of waste-free SMC; mean ± standard
error of log Z, the exact value for the conjugate models, and wall time per run (warm). Writes
``experiments/smc/results/evidence.json``.

    python experiments/smc/evidence.py [--runs 5] [--particles 1000]
"""

import argparse
import time
from pathlib import Path

import numpy as np

import probinfer as pi
from probinfer._utils import write_json
from probinfer.models import get

MODELS = [
    "normal_normal",
    "beta_binomial",
    "linear_regression",
    "eight_schools",
    "logistic_regression",
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--particles", type=int, default=1000)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "evidence.json"))
    args = parser.parse_args()
    results = {}
    for name in MODELS:
        example = get(name)
        target = example.compile()
        row = {"exact": example.exact.get("log_evidence")}
        for label, kwargs in [("standard", {}), ("waste_free", {"waste_free": 20})]:
            pi.smc(target, key=0, num_particles=args.particles, **kwargs)  # compile
            start = time.perf_counter()
            log_z = np.array(
                [
                    pi.smc(target, key=seed, num_particles=args.particles, **kwargs).log_evidence
                    for seed in range(1, args.runs + 1)
                ]
            )
            row[label] = {
                "mean": float(log_z.mean()),
                "se": float(log_z.std(ddof=1) / np.sqrt(args.runs)),
                "seconds_per_run": (time.perf_counter() - start) / args.runs,
            }
        results[name] = row
        exact = "" if row["exact"] is None else f"exact {row['exact']:.3f}; "
        print(
            f"{name:20s} {exact}standard {row['standard']['mean']:.3f} ± {row['standard']['se']:.3f}"
            f" ({row['standard']['seconds_per_run']:.2f} s); waste-free "
            f"{row['waste_free']['mean']:.3f} ± {row['waste_free']['se']:.3f}"
            f" ({row['waste_free']['seconds_per_run']:.2f} s)"
        )
    results["settings"] = vars(args)
    write_json(args.out, results)


if __name__ == "__main__":
    main()
