"""Where one round of NPE fails: SLCP (four narrow modes in the box [−3, 3]⁵) — TSNPE's rounds
against one-round NPE at the same simulation budget, C2ST against reference posteriors.

For each observation (simulated from prior draws, seeds 0–4; ``probinfer.models.sbi``) both
methods spend ``--num-simulations`` (TSNPE: ``--rounds`` equal rounds focused on that
observation; NPE: one round, amortized) and their 5,000 draws are compared by C2ST with 5,000
reference draws of our adaptive tempered SMC (8,192 particles; the likelihood is known in closed
form). NPE is trained once and reused for every observation; TSNPE trains once per observation
— that is the price of focusing.

    python experiments/amortized/tsnpe_slcp.py [--observations 3] [--num-simulations 10000]

Writes ``experiments/amortized/results/tsnpe_slcp.json``.
"""

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import probinfer as pi
from probinfer.diagnostics import c2st
from probinfer.models import sbi

HERE = Path(__file__).parent
NUM_DRAWS = 5000


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--observations", type=int, default=3)
    parser.add_argument("--num-simulations", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    target = pi.compile(sbi.slcp, x=jnp.zeros((4, 2)))
    start = time.perf_counter()
    npe = pi.npe(target, key=0, num_simulations=args.num_simulations, progress=False)
    npe_seconds = time.perf_counter() - start
    rows = []
    for seed in range(args.observations):
        example = sbi.slcp_example(seed)
        x = {"x": example.kwargs["x"]}
        reference = pi.smc(example.compile(), key=seed, num_particles=8192, progress=False)
        ref = np.asarray(reference.sample(key=seed + 1, n=NUM_DRAWS)["theta"])
        start = time.perf_counter()
        ts = pi.tsnpe(target, x, key=seed, num_rounds=args.rounds,
                      num_simulations=args.num_simulations, progress=False)  # fmt: skip
        ts_seconds = time.perf_counter() - start
        row = {
            "seed": seed,
            "npe_c2st": c2st(
                ref, np.asarray(npe.sample(seed + 100, x, NUM_DRAWS)["theta"]), key=seed
            ),  # fmt: skip
            "tsnpe_c2st": c2st(
                ref, np.asarray(ts.sample(seed + 100, x, NUM_DRAWS)["theta"]), key=seed
            ),  # fmt: skip
            "tsnpe_seconds": ts_seconds,
            "tsnpe_acceptance": ts.diagnostics["acceptance"],
        }
        rows.append(row)
        print(f"slcp observation {seed}: C2ST NPE {row['npe_c2st']:.3f}, TSNPE "
              f"{row['tsnpe_c2st']:.3f} ({ts_seconds:.0f} s; acceptance "
              f"{[round(a, 4) for a in row['tsnpe_acceptance']]})", flush=True)  # fmt: skip
    result = {
        "num_simulations": args.num_simulations,
        "rounds": args.rounds,
        "npe_seconds": npe_seconds,
        "npe_c2st_mean": float(np.mean([r["npe_c2st"] for r in rows])),
        "tsnpe_c2st_mean": float(np.mean([r["tsnpe_c2st"] for r in rows])),
        "tsnpe_seconds_mean": float(np.mean([r["tsnpe_seconds"] for r in rows])),
        "observations": rows,
        "device": str(jax.devices()[0]),
    }
    out = HERE / "results" / "tsnpe_slcp.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "observations"}, indent=2))


if __name__ == "__main__":
    main()
