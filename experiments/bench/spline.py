"""The rational-quadratic spline and the default spline flows on one CPU core: our spline against
distrax's ``RationalQuadraticSpline`` (same knots), and the loss-and-gradient and sampling steps of
our ``nsf`` and ``nsf_ar`` flows at the sizes our runners use.

Rows (milliseconds per call, the best of ``--repeats`` timings of ``--calls`` calls each, after a
compiling call):

* ``spline/<library>``: y and log|dy/dx| of 256 × 5 points and their gradient with respect to
  the points and the raw parameters (8 bins); ours through the parameters-last call and
  (``probinfer_parameters_first``) as our flow layers call it, parameters first;
* ``<flow>/d<d>/loss`` (mean −log q(x | context) and its gradient, two parameter copies under
  ``vmap`` as ``pi.npe`` trains them; batch 256, context 20) and ``<flow>/d<d>/sample`` (256
  draws and their log densities, one copy).

The file keeps one block of rows per probinfer commit, so two versions of the spline are
compared by running the script at each (``git stash`` or a worktree):

    taskset -c 0 python experiments/bench/spline.py [--calls 200] [--repeats 3]

Writes ``experiments/bench/results/spline.json`` (atomically).
"""

import argparse
import inspect
import json
import os
import platform
import subprocess
import time
from functools import partial
from pathlib import Path

os.environ["XLA_FLAGS"] = (
    "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1 "
    + os.environ.get("XLA_FLAGS", "")
)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from probinfer._utils import write_json  # noqa: E402
from probinfer.nn.flow_layers import rational_quadratic  # noqa: E402
from probinfer.nn.flows import make_flow  # noqa: E402

HERE = Path(__file__).parent
OUT = HERE / "results" / "spline.json"
BINS, BATCH, CONTEXT = 8, 256, 20


def best_ms(fn, args, calls, repeats):
    """The best mean milliseconds per call of ``fn(*args)`` over ``repeats`` runs of ``calls``."""
    jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            out = fn(*args)
        jax.block_until_ready(out)
        best = min(best, (time.perf_counter() - start) / calls * 1e3)
    return best


def spline_rows(calls, repeats):
    import distrax

    x = 2.0 * jax.random.normal(jax.random.PRNGKey(0), (BATCH, 5))
    raw = jax.random.normal(jax.random.PRNGKey(1), (BATCH, 5, 3 * BINS - 1))

    def ours(x, raw):
        y, log_det = rational_quadratic(x, raw, 5.0)
        return jnp.sum(y) + jnp.sum(log_det)

    def ours_first(x, raw_first):  # parameters first, as our flow layers make and call it
        y, log_det = rational_quadratic(x, raw_first, 5.0, axis=0)
        return jnp.sum(y) + jnp.sum(log_det)

    def theirs(x, raw):
        zero = jnp.zeros(raw.shape[:-1] + (1,))
        full = jnp.concatenate([raw[..., : 2 * BINS], zero, raw[..., 2 * BINS :], zero], -1)
        spline = distrax.RationalQuadraticSpline(
            full, -5.0, 5.0, boundary_slopes="identity", min_bin_size=1e-4, min_knot_slope=1e-4
        )
        y, log_det = spline.forward_and_log_det(x)
        return jnp.sum(y) + jnp.sum(log_det)

    rows = {}
    variants = [("probinfer", ours), ("distrax", theirs)]
    if "axis" in inspect.signature(rational_quadratic).parameters:  # this version has it
        variants.insert(1, ("probinfer_parameters_first", ours_first))
    for name, fn in variants:
        step = jax.jit(jax.value_and_grad(fn, argnums=(0, 1)))
        layout = jnp.moveaxis(raw, -1, 0) if fn is ours_first else raw
        rows[f"spline/{name}"] = best_ms(step, (x, layout), calls, repeats)
    return rows


def flow_rows(calls, repeats):
    rows = {}
    for kind, dim in (("nsf", 2), ("nsf", 10), ("nsf", 31), ("nsf_ar", 10)):
        flow = make_flow(kind, dim, context_dim=CONTEXT)
        params = flow.init(jax.random.PRNGKey(0))
        copies = jax.tree.map(lambda a: jnp.stack([a, a]), params)
        x = jax.random.normal(jax.random.PRNGKey(1), (BATCH, dim))
        context = jax.random.normal(jax.random.PRNGKey(2), (BATCH, CONTEXT))
        loss = jax.jit(jax.vmap(jax.value_and_grad(partial(flow.training_loss, key=None, x=x,
                                                           context=context))))  # fmt: skip
        sample = jax.jit(partial(flow.sample_and_log_prob, n=BATCH, context=context))
        rows[f"{kind}/d{dim}/loss"] = best_ms(loss, (copies,), calls, repeats)
        rows[f"{kind}/d{dim}/sample"] = best_ms(
            sample, (params, jax.random.PRNGKey(3)), calls, repeats
        )
    return rows


def commit():
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True, cwd=HERE)  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--", ":/probinfer"],
                               capture_output=True, text=True, cwd=HERE).stdout.strip()  # fmt: skip
        return out.stdout.strip() + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = {**spline_rows(args.calls, args.repeats), **flow_rows(args.calls, args.repeats)}
    for name, ms in rows.items():
        print(f"{name:22s} {ms:8.3f} ms", flush=True)
    results = json.loads(OUT.read_text()) if OUT.exists() else {"runs": {}}
    results["runs"][commit()] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cores": 1,
        "ms": rows,
    }
    write_json(OUT, results)


if __name__ == "__main__":
    main()
