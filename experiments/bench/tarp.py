"""TARP: probinfer vs the `tarp` package (0.1.1), same arrays, same process.

1,000 samples × 10,000 simulations × 10 dimensions (the issue's size), normalised, euclidean,
references given as the same array to both (so the ECPs must agree), K = 1,000 α bins (the
package's default N // 10). Timed: one coverage without bootstrap, and with 100 bootstrap
replicates; and, as the floor of the no-bootstrap case, one ``jnp.sum`` over the same samples
on the device. probinfer's times are warm (compiled once before timing; the compile time is reported
beside). Our times are given twice: from the same NumPy arrays as the package (the
host→device copy included) and from arrays already on the device (what a JAX sampler hands over).
Writes ``experiments/bench/results/tarp.json``.

    pip install -e '.[bench]' && python experiments/bench/tarp.py [--sims 10000] [--repeats 7]
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import jax
import numpy as np

from probinfer._utils import write_json
from probinfer.inference.calibration import tarp as pi_tarp


def _time(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--sims", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=10)
    parser.add_argument("--bootstrap", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--package-repeats", type=int, default=1, help="repeats for the slow package bootstrap"
    )
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "tarp.json"))
    args = parser.parse_args()
    # This file is called tarp.py: keep its folder off the path so `import tarp` finds the package.
    here = Path(__file__).parent.resolve()
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    os.environ.setdefault("TQDM_DISABLE", "1")  # the package's bootstrap bar
    import tarp as tarp_package

    rng = np.random.default_rng(0)
    theta = rng.uniform(-5, 5, (args.sims, args.dim)).astype(np.float32)
    sigma = np.exp(rng.uniform(-5, -1, (args.sims, args.dim))).astype(np.float32)
    # The paper's toy, calibrated: the posterior N(m, σ²) with m ~ N(θ*, σ²).
    centre = theta + sigma * rng.normal(size=theta.shape).astype(np.float32)
    samples = (centre + sigma * rng.normal(size=(args.samples, args.sims, args.dim))).astype(
        np.float32
    )
    unit_refs = rng.uniform(size=(args.sims, args.dim)).astype(np.float32)
    low, high = theta.min(0), theta.max(0)
    refs = unit_refs * (high - low + 1e-10) + low  # ours take references in θ's units
    # Simulation 0's samples far away (f = 0), simulation 1's on its reference (f = 1): f spans
    # [0, 1], so the package's range-less histogram uses the same α grid as ours.
    samples[:, 0] = theta[0] + 50.0
    samples[:, 1] = refs[1]

    device_samples = jax.device_put(samples)  # as a JAX method would hand them over

    def ours(bootstrap, on_device=False):
        data = device_samples if on_device else samples
        return pi_tarp(data, theta, key=1, references=refs, bootstrap=bootstrap)

    def package(bootstrap):
        return tarp_package.get_tarp_coverage(
            samples,
            theta,
            references=unit_refs,
            norm=True,
            bootstrap=bootstrap > 0,
            num_bootstrap=max(bootstrap, 1),
            seed=1,
        )

    start = time.perf_counter()
    cov = ours(args.bootstrap)
    first_call = time.perf_counter() - start
    ecp_package, alpha_package = package(0)
    agree = bool(
        np.allclose(cov.alpha, alpha_package, atol=1e-6)
        and np.allclose(cov.ecp, ecp_package, atol=1e-6)
    )
    results = {
        "date": time.strftime("%Y-%m-%d"),
        "size": {
            "samples": args.samples,
            "sims": args.sims,
            "dim": args.dim,
            "bootstrap": args.bootstrap,
        },
        "backend": jax.default_backend(),
        "device": str(jax.devices()[0]),
        "machine": platform.processor() or platform.machine(),
        "ecp_equal_to_package": agree,
        "max_abs_ecp_difference": float(np.max(np.abs(cov.ecp - ecp_package))),
        "probinfer_first_call_s": first_call,
    }
    ours(0, on_device=True)
    results["probinfer_no_bootstrap_s"] = _time(lambda: ours(0), args.repeats)
    results["probinfer_bootstrap_s"] = _time(lambda: ours(args.bootstrap), args.repeats)
    results["probinfer_device_input_no_bootstrap_s"] = _time(lambda: ours(0, True), args.repeats)
    results["probinfer_device_input_bootstrap_s"] = _time(
        lambda: ours(args.bootstrap, True), args.repeats
    )
    # The floor of the no-bootstrap case: one pass over the same samples on the device.
    one_pass = jax.jit(jax.numpy.sum)
    jax.block_until_ready(one_pass(device_samples))
    results["one_pass_s"] = _time(
        lambda: jax.block_until_ready(one_pass(device_samples)), max(args.repeats, 5)
    )
    results["device_input_no_bootstrap_over_one_pass"] = (
        results["probinfer_device_input_no_bootstrap_s"] / results["one_pass_s"]
    )
    results["package_no_bootstrap_s"] = _time(lambda: package(0), args.repeats)
    results["package_bootstrap_s"] = _time(lambda: package(args.bootstrap), args.package_repeats)
    results["speedup_no_bootstrap"] = (
        results["package_no_bootstrap_s"] / results["probinfer_no_bootstrap_s"]
    )
    results["speedup_bootstrap"] = results["package_bootstrap_s"] / results["probinfer_bootstrap_s"]
    for kind in ("no_bootstrap", "bootstrap"):
        results[f"speedup_device_input_{kind}"] = (
            results[f"package_{kind}_s"] / results[f"probinfer_device_input_{kind}_s"]
        )
    write_json(args.out, results)  # before printing: a closed pipe must not lose the results
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
