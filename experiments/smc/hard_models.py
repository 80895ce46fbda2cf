"""SMC defaults on two hard models, against long references computed here (issue 11 §1–§2).

1. *Stochastic volatility with Cauchy priors* (``probinfer.models.volatility``; 103 latents): about
   18 % of the prior particles have a NaN or −inf likelihood. Reference: NumPyro's NUTS, 4 chains ×
   10,000 draws after 2,000 warm-up, ``target_accept_prob=0.95``. SMC: defaults, 4,096 particles,
   ``--runs`` seeds; for every latent coordinate and every ``h_t``, |mean − ref| / ref sd and
   sd / ref sd − 1.
2. *Breast-cancer logistic regression* (31 dims): log Z. Reference: importance sampling from a
   multivariate t₅ at the Laplace approximation (covariance × 1.1), 2·10⁶ draws, with its
   delta-method standard error. SMC: defaults, 1,000 particles, ``--runs`` seeds; mean ± se.

Writes ``experiments/smc/results/hard_models.json`` (the slow test reads the SV reference).
``--reuse`` takes both references from that file instead of recomputing them (about 10 minutes).

    python experiments/smc/hard_models.py [--runs 5] [--lr-runs 20] [--reuse]
"""

import argparse
import json
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import probinfer as pi
from probinfer._utils import lbfgs_minimise, write_json
from probinfer.models import get, volatility

SITES = ("mu", "phi", "sigma", "h_std", "h")


def _flat(draws):
    """{site: (n, ...)} -> {site: (n, k)}."""
    return {k: np.asarray(draws[k]).reshape(np.shape(draws[k])[0], -1) for k in SITES}


def nuts_reference(returns, seed=0):
    from numpyro.infer import MCMC, NUTS

    mcmc = MCMC(
        NUTS(volatility.stochastic_volatility, target_accept_prob=0.95),
        num_warmup=2000,
        num_samples=10000,
        num_chains=4,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(seed), returns)
    draws = _flat(mcmc.get_samples())
    divergences = int(np.asarray(mcmc.get_extra_fields()["diverging"]).sum())
    return {
        "mean": {k: v.mean(0).tolist() for k, v in draws.items()},
        "sd": {k: v.std(0).tolist() for k, v in draws.items()},
        "divergences": divergences,
    }


def compare(post, reference):
    weights = np.exp(post.log_weights[0])
    worst_mean, worst_sd = 0.0, 0.0
    for site in SITES:
        x = np.asarray(post.draws[site][0]).reshape(weights.size, -1)
        mean = weights @ x
        sd = np.sqrt(weights @ (x - mean) ** 2)
        ref_mean, ref_sd = np.asarray(reference["mean"][site]), np.asarray(reference["sd"][site])
        worst_mean = max(worst_mean, float(np.max(np.abs(mean - ref_mean) / ref_sd)))
        worst_sd = max(worst_sd, float(np.max(np.abs(sd / ref_sd - 1))))
    return worst_mean, worst_sd


def importance_log_evidence(target, num_draws=2_000_000, seed=0):
    from scipy.stats import multivariate_t

    mode = lbfgs_minimise(lambda z: -target.log_density(z), jnp.zeros(target.dim), 200)
    hessian = np.asarray(jax.hessian(target.log_density)(mode), np.float64)
    covariance = np.linalg.inv(-0.5 * (hessian + hessian.T))
    proposal = multivariate_t(np.asarray(mode, np.float64), 1.1 * covariance, df=5.0)
    log_density = jax.jit(jax.vmap(target.log_density))
    rng = np.random.default_rng(seed)
    chunks = []
    for _ in range(num_draws // 50_000):
        x = proposal.rvs(size=50_000, random_state=rng)
        values = np.asarray(log_density(jnp.asarray(x, jnp.float32)), np.float64)
        chunks.append(values - proposal.logpdf(x))
    log_w = np.concatenate(chunks)
    w = np.exp(log_w - log_w.max())
    return float(np.log(w.mean()) + log_w.max()), float(w.std() / np.sqrt(w.size) / w.mean())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--lr-runs", type=int, default=20)
    parser.add_argument("--reuse", action="store_true", help="references from the --out file")
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results" / "hard_models.json")
    )
    args = parser.parse_args()
    results = {}
    previous = json.loads(Path(args.out).read_text()) if args.reuse else None

    example = get("stochastic_volatility")
    target = example.compile()
    if previous:
        reference = previous["stochastic_volatility"]["nuts_reference"]
    else:
        start = time.perf_counter()
        reference = nuts_reference(example.args[0])
        reference["seconds"] = time.perf_counter() - start
    runs = []
    for seed in range(args.runs):
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            post = pi.smc(target, key=seed, num_particles=4096, progress=False)
        worst_mean, worst_sd = compare(post, reference)
        runs.append(
            {
                "seconds": time.perf_counter() - start,
                "worst_mean_error_in_sd": worst_mean,
                "worst_sd_relative_error": worst_sd,
                "nonfinite_prior_draws": post.diagnostics["nonfinite_prior_draws"],
                "warned": any("weight zero" in str(w.message) for w in caught),
                "num_temperatures": post.diagnostics["num_steps"],
                "mean_mcmc_steps": float(np.mean(post.diagnostics["num_mcmc_steps"])),
            }
        )
        print("stochastic_volatility", runs[-1], flush=True)
    results["stochastic_volatility"] = {"nuts_reference": reference, "smc_default": runs}

    target = get("logistic_regression").compile()
    if previous:
        reference = previous["logistic_regression"]["reference_log_evidence"]
        se = previous["logistic_regression"]["reference_se"]
    else:
        reference, se = importance_log_evidence(target)
    log_z, steps = [], []
    for seed in range(args.lr_runs):
        post = pi.smc(target, key=seed, num_particles=1000, progress=False)
        log_z.append(post.log_evidence)
        steps.append(float(np.mean(post.diagnostics["num_mcmc_steps"])))
    log_z = np.array(log_z)
    results["logistic_regression"] = {
        "reference_log_evidence": reference,
        "reference_se": se,
        "smc_default_log_evidence": log_z.tolist(),
        "smc_mean": float(log_z.mean()),
        "smc_se": float(log_z.std(ddof=1) / np.sqrt(log_z.size)),
        "mean_mcmc_steps": float(np.mean(steps)),
    }
    print("logistic_regression", results["logistic_regression"], flush=True)
    write_json(args.out, results)


if __name__ == "__main__":
    main()
