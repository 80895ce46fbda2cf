"""Does the cost of compiling grow with the data? The 10³ → 10⁶-row sweep of issue 36, part 4.

A logistic regression (10 features plus an intercept, N(0, 1) priors) on N simulated rows,
compiled with the rows as minibatchable data. For each N and runner we time the first call
(compilation plus the run) and a second call with another key on the same Target (the run alone,
programs cached), and report compile seconds = first − second. The goal: compile seconds at 10⁶
within 1.5× of those at 10³ (data passed to the compiled programs as arguments,
:meth:`probinfer.Target.jit`, not folded in as constants), and SG-MCMC's loop cost per step
independent of N (a minibatch's cost does not depend on N; measured from the time of 6,000 more
steps), its setup (mode search, Laplace preconditioner, step-size pilot: full-data passes)
reported apart.

Runners, kept short so the sweep fits a laptop: ``sgmcmc`` (2,000 steps, batch 128), ``mcmc``
(NUTS, 1 chain, 100 + 100 transitions: full-data gradients, so its run time grows with N as it
must), ``smc`` (200 particles; full data at every temperature).

    python experiments/bench/scale_data.py [--sizes 1000,100000,1000000] [--runners sgmcmc,mcmc]
"""

import argparse
import platform
import time
from pathlib import Path

import jax
import numpy as np

import probinfer as pi
from probinfer._utils import write_json
from probinfer.models.logistic_regression import logistic_regression

RUNS = {
    "sgmcmc": lambda t, key: pi.sgmcmc(t, key=key, num_steps=2000, batch_size=128, progress=False),
    "mcmc": lambda t, key: pi.mcmc(
        t, key=key, num_chains=1, num_warmup=100, num_draws=100, progress=False
    ),
    "smc": lambda t, key: pi.smc(t, key=key, num_particles=200, progress=False),
}


def data(n, dim=10, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    w = rng.normal(size=dim) / np.sqrt(dim)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-(x @ w)))).astype(np.float32)
    return x, y


def measure(runner, n):
    x, y = data(n)
    target = pi.compile(logistic_regression, x, y=y, data=("x", "y"))
    start = time.perf_counter()
    jax.block_until_ready(RUNS[runner](target, 0).draws)
    first = time.perf_counter() - start
    start = time.perf_counter()
    jax.block_until_ready(RUNS[runner](target, 1).draws)
    second = time.perf_counter() - start
    row = {"first_call_s": first, "run_s": second, "compile_s": max(first - second, 0.0)}
    if runner == "sgmcmc":
        # The loop's own cost: 6,000 more steps (programs for 8,000 steps compiled first), the
        # rest of a run is the setup (mode search, preconditioner, step-size pilot).
        longer = lambda: pi.sgmcmc(  # noqa: E731
            target, key=1, num_steps=8000, batch_size=128, progress=False
        )
        jax.block_until_ready(longer().draws)
        start = time.perf_counter()
        jax.block_until_ready(longer().draws)
        per_step = max(time.perf_counter() - start - second, 0.0) / 6000
        row["loop_ms_per_step"] = 1e3 * per_step
        row["setup_s"] = second - 2000 * per_step
    return row


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,100000,1000000")
    parser.add_argument("--runners", default=",".join(RUNS))
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results = {}
    for runner in args.runners.split(","):
        results[runner] = {}
        for n in sizes:
            row = results[runner][str(n)] = measure(runner, n)
            extra = (
                f", loop {row['loop_ms_per_step']:.3f} ms/step, setup {row['setup_s']:.2f} s"
                if "setup_s" in row
                else ""
            )
            print(
                f"{runner:7s} N={n:>8d}: compile {row['compile_s']:.1f} s, run "
                f"{row['run_s']:.2f} s{extra}",
                flush=True,
            )
        small, large = results[runner][str(sizes[0])], results[runner][str(sizes[-1])]
        results[runner]["compile_ratio"] = large["compile_s"] / max(small["compile_s"], 1e-9)
        print(
            f"{runner}: compile at N={sizes[-1]} / N={sizes[0]} = "
            f"{results[runner]['compile_ratio']:.2f}",
            flush=True,
        )
    out = Path(__file__).parent / "results" / "scale_data.json"
    write_json(
        out,
        {
            "date": time.strftime("%Y-%m-%d"),
            "machine": f"{platform.processor() or platform.machine()}, {jax.devices()[0]}",
            "sizes": sizes,
            "results": results,
        },
    )
    print(f"written {out}")


if __name__ == "__main__":
    main()
