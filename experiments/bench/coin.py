"""Coin SVGD and SVGD: probinfer vs BlackJAX's ``svgd``, same particles, same kernel, same process.

Time per iteration on two targets (issue 12's sizes): the 2-D banana with 200 particles and a
10-D correlated Gaussian with 300 particles. BlackJAX: ``blackjax.svgd`` with its RBF kernel and
median-heuristic bandwidth update (BlackJAX's own defaults) and ``optax.adam(0.1)``, its steps
in one jitted ``lax.scan``. Ours: ``pi.svgd`` (Adam 0.1, the same RBF kernel with the median
heuristic) and ``pi.coin_svgd``, whole runs through the public runners (their KSD trace every
1 % of the steps and the restart guard included). All times warm (compiled once before timing),
best of ``--repeats``. Ratio = our time per iteration / BlackJAX's (goal ≤ 1.0).

Writes ``experiments/bench/results/coin.json``.

    pip install -e '.[bench]' && python experiments/bench/coin.py [--steps 2000] [--repeats 3]
"""

import argparse
import json
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import probinfer as pi
from probinfer import dist
from probinfer._utils import write_json
from probinfer.models import get


def correlated_gaussian(dim=10, rho=0.9):
    """z ~ N(0, Σ) with Σ_ij = ρ^|i−j| (AR(1) correlation), a proper 10-D target."""
    cov = rho ** np.abs(np.subtract.outer(np.arange(dim), np.arange(dim)))
    pi.sample("z", dist.MultivariateNormal(jnp.zeros(dim), covariance_matrix=jnp.asarray(cov)))


def _time(fn, repeats):
    fn()  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def blackjax_run(target, starts, num_steps, learning_rate):
    import blackjax

    algorithm = blackjax.svgd(jax.grad(target.log_density), optax.adam(learning_rate))

    @jax.jit
    def run(starts):
        state = algorithm.init(starts)

        def step(state, _):
            return algorithm.step(state), None

        state, _ = jax.lax.scan(step, state, None, length=num_steps)
        return state.particles

    return lambda: run(starts).block_until_ready()


def case(name, target, num_particles, num_steps, repeats, learning_rate=0.1):
    starts = target.starting_points(None, num_particles, key=jax.random.PRNGKey(0))

    def ours(runner, **kw):
        return lambda: runner(
            target, key=0, num_particles=num_particles, num_steps=num_steps, progress=False, **kw
        )

    times = {
        "blackjax_svgd": _time(blackjax_run(target, starts, num_steps, learning_rate), repeats),
        "probinfer_svgd": _time(ours(pi.svgd, learning_rate=learning_rate), repeats),
        "probinfer_coin_svgd": _time(ours(pi.coin_svgd), repeats),
    }
    per_step = {k: v / num_steps for k, v in times.items()}
    row = {
        "target": name,
        "dim": int(starts.shape[1]),
        "num_particles": num_particles,
        "num_steps": num_steps,
        "iterations_per_s": {k: 1.0 / v for k, v in per_step.items()},
        "ratio_svgd": per_step["probinfer_svgd"] / per_step["blackjax_svgd"],
        "ratio_coin_svgd": per_step["probinfer_coin_svgd"] / per_step["blackjax_svgd"],
    }
    print(
        f"{name:>22} N={num_particles:4d} d={row['dim']:2d}: BlackJAX "
        f"{row['iterations_per_s']['blackjax_svgd']:8.0f} it/s, ours svgd "
        f"{row['iterations_per_s']['probinfer_svgd']:8.0f} it/s ({row['ratio_svgd']:.2f}×), "
        f"coin_svgd {row['iterations_per_s']['probinfer_coin_svgd']:8.0f} it/s "
        f"({row['ratio_coin_svgd']:.2f}×)",
        flush=True,
    )
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "coin.json"))
    args = parser.parse_args()
    rows = [
        case("banana", get("banana").compile(), 200, args.steps, args.repeats),
        case(
            "correlated_gaussian_10d",
            pi.compile(correlated_gaussian),
            300,
            args.steps,
            args.repeats,
        ),
        case("banana_1000", get("banana").compile(), 1000, args.steps // 4, args.repeats),
    ]
    results = {
        "date": time.strftime("%Y-%m-%d"),
        "backend": jax.default_backend(),
        "device": str(jax.devices()[0]),
        "machine": platform.processor() or platform.machine(),
        "rows": rows,
    }
    write_json(args.out, results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
