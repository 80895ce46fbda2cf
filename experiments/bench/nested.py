"""Nested sampling against exact evidences, and against SMC's time to the same log-Z error.

On every conjugate model of the zoo (normal mean, beta-binomial, the 3-D correlated regression)
and a 10-D regression (100 points, H ≈ 19 nats), ``--seeds`` runs of each method with its
defaults: ``pi.nested`` (500 live points, hit-and-run slice) and ``pi.smc`` (adaptive tempered,
1,000 particles).

Reported per model: nested sampling's mean standardised error ``z = (log Ẑ − log Z) / se`` (the
goal: within 2 reported standard errors on every model; the mean of ``z`` over seeds, and its
spread, which should be near 1 when the reported errors are right), both methods' root-mean-square
log-Z error over the seeds, their mean wall time per run (compilation excluded: one unmeasured run
first), and the **time to a log-Z error of 0.1**: ``seconds × (RMSE / 0.1)²`` (both estimators'
variance falls as 1 / cost), with the ratio SMC / nested.

    python experiments/bench/nested.py [--seeds 8]
"""

import argparse
import platform
import time
from pathlib import Path

import jax
import numpy as np

import probinfer as pi
from probinfer._utils import write_json
from probinfer.models import conjugate

MODELS = ("normal_normal", "beta_binomial", "linear_regression", "linear_regression_10d")
REFERENCE_ERROR = 0.1


def _example(name):
    if name == "linear_regression_10d":
        return conjugate.linear_regression_example(num_data=100, dim=10)
    return pi.models.get(name)


def _runs(run, seeds):
    run(1000)  # compile
    out = []
    for seed in seeds:
        start = time.perf_counter()
        post = run(seed)
        out.append((post, time.perf_counter() - start))
    return out


def compare(name, seeds):
    example = _example(name)
    target = example.compile()
    exact = float(example.exact["log_evidence"])
    nested = _runs(lambda s: pi.nested(target, key=s, progress=False), seeds)
    smc = _runs(lambda s: pi.smc(target, key=s, progress=False), seeds)
    z = np.array([(p.log_evidence - exact) / p.diagnostics["log_evidence_se"] for p, _ in nested])
    row = {"dim": target.dim, "exact_log_evidence": exact}
    for label, runs in (("nested", nested), ("smc", smc)):
        errors = np.array([p.log_evidence - exact for p, _ in runs])
        seconds = float(np.mean([t for _, t in runs]))
        rmse = float(np.sqrt(np.mean(errors**2)))
        row[label] = {
            "errors": errors.round(4).tolist(),
            "rmse": rmse,
            "seconds": seconds,
            "seconds_to_0.1": seconds * (rmse / REFERENCE_ERROR) ** 2,
        }
    row["nested"]["z"] = z.round(3).tolist()
    row["nested"]["mean_z"] = float(z.mean())
    row["nested"]["sd_z"] = float(z.std(ddof=1))
    row["nested"]["mean_reported_se"] = float(
        np.mean([p.diagnostics["log_evidence_se"] for p, _ in nested])
    )
    row["nested"]["information"] = float(nested[0][0].diagnostics["information"])
    row["ratio_time_to_0.1"] = row["smc"]["seconds_to_0.1"] / row["nested"]["seconds_to_0.1"]
    return row


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args()
    results = {}
    for name in args.models.split(","):
        r = results[name] = compare(name, range(args.seeds))
        n, s = r["nested"], r["smc"]
        print(
            f"{name:22s} d={r['dim']:3d} nested: mean z {n['mean_z']:+.2f} (sd {n['sd_z']:.2f}), "
            f"RMSE {n['rmse']:.3f}, {n['seconds']:.2f} s | smc: RMSE {s['rmse']:.3f}, "
            f"{s['seconds']:.2f} s | time to 0.1: smc/nested ×{r['ratio_time_to_0.1']:.2f}",
            flush=True,
        )
    out = Path(__file__).parent / "results" / "nested.json"
    write_json(
        out,
        {
            "date": time.strftime("%Y-%m-%d"),
            "machine": f"{platform.processor() or platform.machine()}, {jax.devices()[0]}",
            "settings": "defaults: nested num_live=500 (slice); smc num_particles=1000",
            "seeds": args.seeds,
            "results": results,
        },
    )
    print(f"written {out}")


if __name__ == "__main__":
    main()
