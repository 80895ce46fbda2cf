"""MAMS (``pi.mcmc(kernel="mams")``, defaults) vs NumPyro's NUTS on the zoo, same process.

Both run 4 chains × 1,000 warm-up × 2,000 draws from the same start rule (uniform(−2, 2) in the
unconstrained space). NUTS is NumPyro's ``MCMC(NUTS)`` with ``chain_method="vectorized"``, its
gradient count read from ``num_steps`` (one gradient per leapfrog step); MAMS's from its
``num_integration_steps`` (two gradients per McLachlan step). Sampling-phase gradients only.

Reported per model, averaged over ``--seeds``: the worst coordinate's bulk ESS per gradient (the
issue's measure) and the worst coordinate's ESS of the standardised square ``((x − x̄)/s)²`` per
gradient (what the MAMS paper reports, the variances' efficiency), MAMS / NUTS as ratios, and
the largest |mean difference| over coordinates in units of its Monte Carlo standard error (the
two runs as independent estimates: a correct sampler stays within ~4).

    python experiments/bench/mams.py [--seeds 3] [--models logistic_regression,...]
"""

import argparse
import platform
import time
from pathlib import Path

import jax
import numpy as np

import probinfer as pi
from probinfer._utils import import_arviz, write_json

MODELS = (
    "logistic_regression",
    "stochastic_volatility",
    "eight_schools",
    "eight_schools_centered",
    "linear_regression",
    "sbi_gaussian_linear",
    "funnel",
    "banana",
)
RUN = {"num_chains": 4, "num_warmup": 1000, "num_draws": 2000}


def coordinates(draws):
    """``{site: (chains, draws, ...)}`` as one (chains, draws, coordinates) array."""
    parts = [np.asarray(x).reshape(*np.shape(x)[:2], -1) for x in draws.values()]
    return np.concatenate(parts, axis=-1)


def efficiency(x):
    """Per coordinate: bulk ESS of x and of its standardised square."""
    az = import_arviz()
    ess = np.array([float(az.ess(x[..., i])) for i in range(x.shape[-1])])
    z = (x - x.mean((0, 1))) / x.std((0, 1))
    ess2 = np.array([float(az.ess(z[..., i] ** 2)) for i in range(x.shape[-1])])
    return ess, ess2


def run_mams(target, seed):
    start = time.perf_counter()
    post = pi.mcmc(target, key=seed, kernel="mams", progress=False, **RUN)
    seconds = time.perf_counter() - start
    x = {k: post.draws[k] for k in target.latent_sites}
    grads = 2 * float(np.sum(post.diagnostics["num_integration_steps"]))
    return coordinates(x), grads, seconds, float(post.diagnostics["acceptance_rate"].mean())


def run_nuts(example, target, seed):
    from numpyro.infer import MCMC, NUTS

    mcmc = MCMC(
        NUTS(example.model),
        num_warmup=RUN["num_warmup"],
        num_samples=RUN["num_draws"],
        num_chains=RUN["num_chains"],
        chain_method="vectorized",
        progress_bar=False,
    )
    start = time.perf_counter()
    mcmc.run(
        jax.random.PRNGKey(seed),
        *example.args,
        extra_fields=("num_steps",),
        **example.kwargs,
    )
    seconds = time.perf_counter() - start
    samples = mcmc.get_samples(group_by_chain=True)
    x = {k: samples[k] for k in target.latent_sites}
    grads = float(np.sum(mcmc.get_extra_fields()["num_steps"]))
    return coordinates(x), grads, seconds


def compare(name, seeds):
    example = pi.models.get(name)
    target = example.compile()
    rows = []
    for seed in seeds:
        xm, gm, sm, acc = run_mams(target, seed)
        xn, gn, sn = run_nuts(example, target, seed)
        em, em2 = efficiency(xm)
        en, en2 = efficiency(xn)
        se = np.sqrt(xm.var((0, 1)) / em + xn.var((0, 1)) / en)
        rows.append(
            {
                "seed": seed,
                "mams_ess_per_grad": em.min() / gm,
                "nuts_ess_per_grad": en.min() / gn,
                "mams_ess2_per_grad": em2.min() / gm,
                "nuts_ess2_per_grad": en2.min() / gn,
                "mams_grads_per_draw": gm / xm.shape[0] / xm.shape[1],
                "nuts_grads_per_draw": gn / xn.shape[0] / xn.shape[1],
                "mams_seconds": sm,
                "nuts_seconds": sn,
                "mams_acceptance": acc,
                "max_mean_z": float(np.max(np.abs(xm.mean((0, 1)) - xn.mean((0, 1))) / se)),
            }
        )
        print(name, {k: round(v, 4) for k, v in rows[-1].items()}, flush=True)
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "seed"}
    mean["ratio_ess"] = mean["mams_ess_per_grad"] / mean["nuts_ess_per_grad"]
    mean["ratio_ess2"] = mean["mams_ess2_per_grad"] / mean["nuts_ess2_per_grad"]
    mean["dim"] = target.dim
    return {"runs": rows, "mean": mean}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args()
    results = {}
    for name in args.models.split(","):
        results[name] = compare(name, range(args.seeds))
        m = results[name]["mean"]
        print(
            f"{name:24s} d={m['dim']:4d}  ESS/grad ×{m['ratio_ess']:.2f}  "
            f"ESS(x²)/grad ×{m['ratio_ess2']:.2f}  max |Δmean| {m['max_mean_z']:.1f} SE",
            flush=True,
        )
    out = Path(__file__).parent / "results" / "mams.json"
    write_json(
        out,
        {
            "date": time.strftime("%Y-%m-%d"),
            "machine": f"{platform.processor() or platform.machine()}, {jax.devices()[0]}",
            "run": RUN,
            "seeds": args.seeds,
            "results": results,
        },
    )
    print(f"written {out}")


if __name__ == "__main__":
    main()
