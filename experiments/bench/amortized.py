"""Amortization: time to posteriors for 1,000 new data sets — NPE (trained once) against running
NUTS or SMC on each data set, all in the same process (issue 14's goal).

Tasks: the SBI benchmark's Gaussian linear (10 dims) and two moons (``probinfer.models.sbi``).
Data sets: 1,000 draws of the prior predictive. Per data set, 1,000 posterior draws from

* NPE: one batched ``sample`` call for all data sets (warm: the second call is timed); the
  training time (10,000 simulations, defaults) is reported beside it;
* NUTS: ``probinfer.mcmc_draws`` (NumPyro's NUTS kernel, 4 chains × (500 warm-up + 250)
  draws) vmapped over blocks of 100 data sets — one compiled program, the fastest way to run
  NUTS per data set here (warm; the first block is timed again after compiling);
* SMC: ``smc_draws`` (adaptive tempered SMC, 1,000 particles, defaults) vmapped the same way.

``--max-seconds`` caps each baseline: after that many seconds the remaining blocks are
extrapolated linearly from the timed ones (the JSON says how many blocks ran).

    python experiments/bench/amortized.py [--num-datasets 1000] [--max-seconds 600]

Writes ``experiments/bench/results/amortized.json``.
"""

import argparse
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp

import probinfer as pi
from probinfer import runners
from probinfer._utils import write_json
from probinfer.models import sbi

HERE = Path(__file__).parent
TASKS = {"gaussian_linear": (sbi.gaussian_linear, (10,)), "two_moons": (sbi.two_moons, (2,))}
BLOCK = 100
NUM_DRAWS = 1000


def per_dataset(target, draws_fn, observations, max_seconds):
    """Seconds to run ``draws_fn`` on every data set, vmapped over blocks of BLOCK (warm)."""

    @jax.jit
    def block(keys, xs):
        return jax.vmap(lambda k, x: draws_fn(target.condition({"x": x}), k, NUM_DRAWS)["theta"])(
            keys, xs
        )

    xs = observations.reshape((-1, BLOCK) + observations.shape[1:])
    keys = jax.random.split(jax.random.PRNGKey(1), xs.shape[0] * BLOCK).reshape(
        xs.shape[0], BLOCK, -1
    )
    jax.block_until_ready(block(keys[0], xs[0]))  # compile
    start, done = time.perf_counter(), 0
    for i in range(xs.shape[0]):
        jax.block_until_ready(block(keys[i], xs[i]))
        done += 1
        if time.perf_counter() - start > max_seconds:
            break
    seconds = time.perf_counter() - start
    return seconds * xs.shape[0] / done, done


def run(name, num_datasets, max_seconds):
    model, shape = TASKS[name]
    target = pi.compile(model, x=jnp.zeros(shape))
    _, observations = target.simulate(0, num_datasets)
    xs = observations["x"]
    start = time.perf_counter()
    npe = pi.npe(target, key=0, progress=False)
    train = time.perf_counter() - start
    npe.sample(2, {"x": xs}, NUM_DRAWS)["theta"].block_until_ready()
    start = time.perf_counter()
    npe.sample(3, {"x": xs}, NUM_DRAWS)["theta"].block_until_ready()
    npe_seconds = time.perf_counter() - start
    row = {"npe_seconds": npe_seconds, "npe_train_seconds": train}
    for label, method, settings in (("nuts", "nuts", {}), ("smc", "smc", {})):
        draws_fn = runners.get(method)[1]
        seconds, blocks = per_dataset(
            target, lambda t, k, n, f=draws_fn, s=settings: f(t, k, n, **s), xs, max_seconds
        )
        row[f"{label}_seconds"] = seconds
        row[f"{label}_blocks_timed"] = blocks
        row[f"{label}_over_npe"] = seconds / npe_seconds
        row[f"{label}_over_npe_with_training"] = seconds / (npe_seconds + train)
        print(
            name,
            label,
            f"{seconds:.1f}s ({blocks} blocks timed) vs NPE {npe_seconds:.2f}s "
            f"(+{train:.0f}s training)",
            flush=True,
        )
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-datasets", type=int, default=1000)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--tasks", default=",".join(TASKS))
    args = parser.parse_args()
    results = {
        "date": time.strftime("%Y-%m-%d"),
        "device": str(jax.devices()[0]),
        "machine": platform.processor() or platform.machine(),
        "num_datasets": args.num_datasets,
        "draws_per_dataset": NUM_DRAWS,
        "tasks": {
            name: run(name, args.num_datasets, args.max_seconds) for name in args.tasks.split(",")
        },
    }
    write_json(HERE / "results" / "amortized.json", results)
    print(results)


if __name__ == "__main__":
    main()
