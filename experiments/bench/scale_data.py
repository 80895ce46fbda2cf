"""Does the cost of compiling grow with the data? The 10³ → 10⁶-row sweep of issue 36, part 4.

A logistic regression (10 features plus an intercept, N(0, 1) priors) on N simulated rows,
compiled with the rows as minibatchable data. For each N and runner we time one call and the
part of it JAX spent tracing, lowering and compiling (its compile-duration events: a difference
of two calls' times is lost in the run-to-run spread of SMC's run time at 10⁶ rows). The goal:
compile seconds at 10⁶ within 1.5× of those at 10³ (data passed to the compiled programs as arguments,
:meth:`probinfer.Target.jit`, not folded in as constants), and SG-MCMC's loop cost per step
independent of N (a minibatch's cost does not depend on N; measured from the time of 40,000
more steps), its setup (mode search, Laplace preconditioner, step-size pilot: full-data passes)
reported apart.

Runners, kept short so the sweep fits a laptop: ``sgmcmc`` (2,000 steps, batch 128), ``mcmc``
(NUTS, 1 chain, 100 + 100 transitions: full-data gradients, so its run time grows with N as it
must), ``mcmc_blocked`` (the same on ``target.block_data(10_000)``: the gradient holds one block's
intermediates), ``smc`` (200 particles, its default reference: the prior below 10,000 rows, a
fitted Gaussian from there; full data at every temperature). Each (runner, N) runs in its own
process, so ``peak_rss_mb`` (the process's peak resident memory: the data, the compiled
programs and XLA's buffers) is that cell's alone.

    python experiments/bench/scale_data.py [--sizes 1000,100000,1000000]
        [--runners sgmcmc,mcmc,mcmc_blocked,smc]
    python experiments/bench/scale_data.py --readme   # rewrite docs/benchmarks.md's table

A partial rerun (``--runners smc``) replaces those runners' rows and keeps the others (each
runner's rows carry their date). The benchmarks page's table (docs/benchmarks.md) is
``tables.py``'s ``scale_data`` of ``results/scale_data.json`` (a test holds them equal).
"""

import argparse
import json
import multiprocessing as mp
import platform
import resource
import time
from pathlib import Path

import jax
import numpy as np

import probinfer as pi
from probinfer._utils import write_json
from probinfer.models.logistic_regression import logistic_regression

BLOCK = 10_000


def _nuts(t, key):
    return pi.mcmc(t, key=key, num_chains=1, num_warmup=100, num_draws=100, progress=False)


RUNS = {
    "sgmcmc": lambda t, key: pi.sgmcmc(t, key=key, num_steps=2000, batch_size=128, progress=False),
    "mcmc": _nuts,
    "mcmc_blocked": lambda t, key: _nuts(t.block_data(min(BLOCK, t.num_data)), key),
    "smc": lambda t, key: pi.smc(t, key=key, num_particles=200, progress=False),
}


def data(n, dim=10, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    w = rng.normal(size=dim) / np.sqrt(dim)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-(x @ w)))).astype(np.float32)
    return x, y


_COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)
_compile_seconds = [0.0]


def _count_compiles(event, seconds, **_):
    if event in _COMPILE_EVENTS:
        _compile_seconds[0] += seconds


def measure(runner, n):
    """One call of ``runner`` on N = ``n`` rows: its seconds, of which JAX spent ``compile_s``
    tracing, lowering and compiling (JAX's own compile-duration events, summed), the rest
    ``run_s``."""
    jax.monitoring.register_event_duration_secs_listener(_count_compiles)
    x, y = data(n)
    target = pi.compile(logistic_regression, x, y=y, data=("x", "y"))
    before = _compile_seconds[0]
    start = time.perf_counter()
    post = RUNS[runner](target, 0)
    jax.block_until_ready(post.draws)
    first = time.perf_counter() - start
    compiled = _compile_seconds[0] - before
    row = {"first_call_s": first, "compile_s": compiled, "run_s": first - compiled}
    if runner == "smc":
        row["reference"] = post.settings["reference"]
        row["num_temperatures"] = int(len(post.diagnostics["temperatures"]) - 1)
    if runner == "sgmcmc":
        # The loop's own cost: the fastest of three 2,000-step and of three 42,000-step calls
        # (programs compiled), 40,000 steps apart — the fastest of three, because the setup
        # (mode search, preconditioner, step-size pilot: full-data passes) varies by more than
        # a few thousand steps cost at 10⁶ rows.
        def fastest(num_steps):
            def once():
                start = time.perf_counter()
                post = pi.sgmcmc(target, key=1, num_steps=num_steps, batch_size=128, progress=False)
                jax.block_until_ready(post.draws)
                return time.perf_counter() - start

            once()
            return min(once() for _ in range(3))

        short, long = fastest(2000), fastest(42_000)
        per_step = max(long - short, 0.0) / 40_000
        row["loop_ms_per_step"] = 1e3 * per_step
        row["setup_s"] = short - 2000 * per_step
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return row


def _child(runner, n, queue):
    queue.put(json.dumps(measure(runner, n)))


def measure_apart(runner, n):
    """:func:`measure` in a fresh process (its own peak memory and program caches)."""
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(runner, n, queue))
    process.start()
    row = json.loads(queue.get())
    process.join()
    return row


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,100000,1000000")
    parser.add_argument("--runners", default=",".join(RUNS))
    parser.add_argument(
        "--readme",
        action="store_true",
        help="only rewrite docs/benchmarks.md's table (tables.py scale_data)",
    )
    args = parser.parse_args()
    if args.readme:
        from tables import update  # experiments/bench/tables.py, beside this script

        update(["scale_data"])
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    out = Path(__file__).parent / "results" / "scale_data.json"
    previous = json.loads(out.read_text()) if out.exists() else {}
    results = previous.get("results", {}) if previous.get("sizes") == sizes else {}
    for runner in args.runners.split(","):
        results[runner] = {"date": time.strftime("%Y-%m-%d")}
        for n in sizes:
            row = results[runner][str(n)] = measure_apart(runner, n)
            extra = (
                f", loop {row['loop_ms_per_step']:.3f} ms/step, setup {row['setup_s']:.2f} s"
                if "setup_s" in row
                else ""
            )
            print(
                f"{runner:12s} N={n:>8d}: compile {row['compile_s']:.1f} s, run "
                f"{row['run_s']:.2f} s, peak {row['peak_rss_mb']:.0f} MB{extra}",
                flush=True,
            )
        small, large = results[runner][str(sizes[0])], results[runner][str(sizes[-1])]
        results[runner]["compile_ratio"] = large["compile_s"] / max(small["compile_s"], 1e-9)
        print(
            f"{runner}: compile at N={sizes[-1]} / N={sizes[0]} = "
            f"{results[runner]['compile_ratio']:.2f}",
            flush=True,
        )
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
