"""Is SLCP calibrated by one of our methods (issue 32's goal)? NLE's learned likelihood with
posteriors by adaptive tempered SMC, at 10⁴ simulations.

SLCP's posterior has four modes (the signs of θ₃ and θ₄). One NPE at 10⁴ simulations is
over-confident (TARP: the truth sits outside its mass; ``ensembles.json``), a deep ensemble is
under-confident; NUTS on a learned likelihood settles in some modes only. Here: ``pi.nle``
(defaults: flow ``"auto"``, key 0) on 10⁴ simulations, then

* C2ST at ``--observations`` observations (seeds 0…): ``--c2st-draws`` draws of
  ``posterior(x, method="smc", num_particles=4096)`` against as many reference draws (our SMC
  with 8,192 particles on the true likelihood, as ``sbi_tasks.py``);
* ``pi.calibrate(target, estimator, method_kwargs={"method": "smc", "num_particles": 1000})`` on
  ``--calibration-sims`` simulated data sets, 500 draws each: TARP (x-dependent and random
  references) and SBC; NLE has no density of θ, so no HPD check.

    python experiments/amortized/nle_slcp.py [--observations 5] [--calibration-sims 200]

Writes ``experiments/amortized/results/nle_slcp.json`` (atomically).
"""

import argparse
import json
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from sbi_tasks import TASKS, reference

import probinfer as pi
from probinfer.diagnostics import c2st

HERE = Path(__file__).parent
OUT = HERE / "results" / "nle_slcp.json"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--observations", type=int, default=5)
    parser.add_argument("--num-simulations", type=int, default=10_000)
    parser.add_argument("--c2st-draws", type=int, default=1_000)
    parser.add_argument("--calibration-sims", type=int, default=200)
    parser.add_argument("--calibration-particles", type=int, default=1_000)
    args = parser.parse_args()
    model, shape, make_example = TASKS["slcp"]
    target = pi.compile(model, x=jnp.zeros(shape))
    start = time.perf_counter()
    estimator = pi.nle(target, key=0, num_simulations=args.num_simulations, progress=False)
    result = {
        "task": "slcp",
        "num_simulations": args.num_simulations,
        "train_seconds": time.perf_counter() - start,
        "validation_by_flow": estimator.diagnostics.get("validation_by_flow"),
        "c2st": [],
    }
    n = args.c2st_draws
    for seed in range(args.observations):
        example = make_example(seed)
        ref = reference("slcp", example, seed)[:n]
        post = estimator.posterior(example.kwargs["x"], key=seed + 100, n=n, method="smc",
                                   num_particles=4096)  # fmt: skip
        draws = np.asarray(post.sample(key=seed + 101, n=n)["theta"])
        result["c2st"].append(float(c2st(ref, draws, key=seed)))
        print(f"observation {seed}: C2ST {result['c2st'][-1]:.3f}", flush=True)
    result["c2st_mean"] = float(np.mean(result["c2st"]))
    settings = {"method": "smc", "num_particles": args.calibration_particles}
    start = time.perf_counter()
    calibration = pi.calibrate(target, estimator, key=7, num_sims=args.calibration_sims,
                               num_draws=500, method_kwargs=settings, progress=False)  # fmt: skip
    result |= {
        "calibration_seconds": time.perf_counter() - start,
        "calibration_settings": settings,
        "calibration_sims": args.calibration_sims,
        "calibrated": bool(calibration.is_calibrated()),
        "verdict": calibration.verdict(),
        "device": str(jax.devices()[0]),
        "date": time.strftime("%Y-%m-%d"),
    }
    print(calibration.verdict(), flush=True)
    calibration.save(HERE / "results" / "slcp_nle")
    tmp = OUT.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, OUT)


if __name__ == "__main__":
    main()
