"""Where MCMC chains start, measured: prior draws against uniform(−2, 2) on the unconstrained
space (Stan's and NumPyro's default), over many seeds of `pi.mcmc` with its defaults on the zoo's
heavy-tailed and funnel models and on a heavy-tailed volatility model the tests never see.

A run *fails* when its largest R-hat exceeds 1.01 or a chain's step size after warm-up is under a
hundredth of the median chain's (a chain that adapted to nothing). Both arms run with the
restart of collapsed chains switched off (``restart=False``) unless ``--restart`` is given, so the
columns measure the starting points alone.

    python experiments/mcmc/starts.py --seeds 10 --inits prior,uniform
    python experiments/mcmc/starts.py --seeds 10 --restart --target-accept 0.8,0.9,0.95

Results accumulate in results/starts.json, one entry per model / start / target_accept.
"""

import argparse
import itertools
import json
import os
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

import probinfer as pi
from probinfer import dist


def student_t_volatility(returns):
    """Stochastic volatility with Student-t returns and heavy-tailed priors (not in the zoo)."""
    mu = pi.sample("mu", dist.Cauchy(0.0, 10.0))
    phi = pi.sample("phi", dist.Uniform(-1.0, 1.0))
    sigma = pi.sample("sigma", dist.HalfCauchy(2.0))
    nu = pi.sample("nu", dist.Gamma(2.0, 0.1))
    h_std = pi.sample("h_std", dist.Normal(0.0, 1.0).expand([returns.shape[0]]).to_event(1))
    first = mu + sigma * h_std[0] / jnp.sqrt(1.0 - phi**2)

    def advance(previous, noise):
        current = mu + phi * (previous - mu) + sigma * noise
        return current, current

    _, rest = jax.lax.scan(advance, first, h_std[1:])
    h = jnp.concatenate([first[None], rest])
    pi.sample("returns", dist.StudentT(nu, 0.0, jnp.exp(h / 2)).to_event(1), obs=returns)


def student_t_returns(num_steps=150, seed=3):
    rng = np.random.default_rng(seed)
    h = np.empty(num_steps)
    h[0] = -1.0
    for t in range(1, num_steps):
        h[t] = -1.0 + 0.9 * (h[t - 1] + 1.0) + 0.3 * rng.normal()
    return (np.exp(h / 2) * rng.standard_t(5.0, num_steps)).astype("float32")


def targets():
    yield "eight_schools", pi.models.get("eight_schools").compile()
    yield "logistic_regression", pi.models.get("logistic_regression").compile()
    yield "stochastic_volatility", pi.models.get("stochastic_volatility").compile()
    yield "eight_schools_centered", pi.models.get("eight_schools_centered").compile()
    yield "funnel", pi.models.get("funnel").compile()
    yield "student_t_volatility", pi.compile(student_t_volatility, student_t_returns())


def one_run(target, seed, init, restart, target_accept):
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = pi.mcmc(
            target,
            key=seed,
            init=init,
            progress=False,
            restart=restart,
            target_accept=target_accept,
        )
        table = post.summary()
    step = np.asarray(post.diagnostics["step_size"])
    gradients = int(np.sum(post.diagnostics["num_integration_steps"]))
    return {
        "seed": seed,
        "max_r_hat": float(np.nanmax(table["r_hat"])),
        "min_ess_bulk": float(np.nanmin(table["ess_bulk"])),
        "step_ratio": float(step.min() / np.median(step)),
        "divergent": int(np.sum(post.diagnostics["num_divergent"])),
        "restarted": int(np.sum(post.diagnostics.get("restarted_chains", 0))),
        "warnings": len(post.diagnostics.get("warnings", [])),
        "gradients": gradients,
        "min_ess_per_1000_gradients": 1000 * float(np.nanmin(table["ess_bulk"])) / gradients,
        "seconds": time.perf_counter() - start,
    }


def failed(run):
    return run["max_r_hat"] > 1.01 or run["step_ratio"] < 0.01


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--inits", default="prior,uniform")
    parser.add_argument("--models", default="")
    parser.add_argument("--restart", action="store_true")
    parser.add_argument("--target-accept", default="0.8")
    parser.add_argument(
        "--out", default=os.path.join(os.path.dirname(__file__), "results", "starts.json")
    )
    args = parser.parse_args()
    chosen = set(filter(None, args.models.split(",")))
    results = json.load(open(args.out)) if os.path.exists(args.out) else {}
    for name, target in targets():
        if chosen and name not in chosen:
            continue
        for init, accept in itertools.product(
            args.inits.split(","), map(float, args.target_accept.split(","))
        ):
            label = f"{name}/{init}/target_accept={accept}" + ("/restart" if args.restart else "")
            runs = [one_run(target, seed, init, args.restart, accept) for seed in range(args.seeds)]
            results[label] = {
                "failures": sum(map(failed, runs)),
                "warned": sum(r["warnings"] > 0 for r in runs),
                "seeds": args.seeds,
                "median_divergent": float(np.median([r["divergent"] for r in runs])),
                "median_ess_per_1000_gradients": float(
                    np.median([r["min_ess_per_1000_gradients"] for r in runs])
                ),
                "runs": runs,
            }
            print(
                label,
                "failures",
                results[label]["failures"],
                "of",
                args.seeds,
                "median divergent",
                results[label]["median_divergent"],
                "seconds",
                round(sum(r["seconds"] for r in runs)),
                flush=True,
            )
            with open(args.out + ".tmp", "w") as fh:
                json.dump(results, fh, indent=1)
            os.replace(args.out + ".tmp", args.out)


if __name__ == "__main__":
    main()
