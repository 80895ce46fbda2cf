"""Distribution Transformer vs methods refitted for every prior (issue 16's first goal).

A logistic regression with two weights (intercept, slope) and 20 points; the covariate is an
observed site so the DT sees it. For P random priors (Gaussian mixtures from the DT's meta-prior):
θ* ~ prior, data ~ model(θ*). Every method gives a density q(θ | prior, data); the score is the
posterior log-likelihood of the truth, log q(θ*), averaged over priors (higher is better; the
exact posterior maximises it in expectation). Methods:

* DT — trained once on random priors; all P posteriors in one batched forward pass;
* SMC — our adaptive tempered SMC on each (prior, data), 4,000 particles, with a 4-component
  Gaussian mixture fitted to its draws for the density (the long-run reference);
* NPE — a conditional flow retrained on 10,000 simulations from each prior (defaults);
* flow VI — a neural spline flow fitted to each posterior (5,000 steps).

Run: python experiments/dt/against_smc.py [--priors 200 --refit 10 --steps 10000]
Writes experiments/dt/results/against_smc.json and prints a table.
"""

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

import probinfer as pi
from probinfer.inference.dt import Mixture

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    HERE,
    mixture_prior,
    one,
    per_prior_target,
    problems,
    summarise,
    timed_posterior,
    train_dt,
)

NUM_DATA = 20


def logistic(x, y=None, logits=None, means=None, scale_tril=None):
    """θ = (intercept, slope) ~ a Gaussian mixture prior; x ~ U(−2, 2); y ~ Bernoulli."""
    theta = pi.sample("theta", mixture_prior(logits, means, scale_tril, 2))
    with pi.plate("data", x.shape[0]):
        x = pi.sample("x", dist.Uniform(-2.0, 2.0), obs=x)
        pi.sample("y", dist.Bernoulli(logits=theta[0] + theta[1] * x), obs=y)


EXAMPLE = {"x": jnp.linspace(-2, 2, NUM_DATA), "y": jnp.zeros(NUM_DATA)}


def smc_score(prior, data, theta, seed):
    post = pi.smc(
        per_prior_target(logistic, prior, **data), key=seed, num_particles=4000, progress=False
    )
    draws = post.sample(key=seed + 1, n=4000)["theta"]
    q = Mixture.fit(jnp.asarray(draws), 4, key=jax.random.PRNGKey(seed))
    return float(q.log_prob(jnp.asarray(theta)))


def npe_score(prior, data, theta, seed):
    target = per_prior_target(logistic, prior, **data)
    est = pi.npe(target, key=seed, progress=False)
    return float(est.log_prob({"theta": theta[None]}, data)[0])


def flow_vi_score(prior, data, theta, seed):
    post = pi.flow_vi(per_prior_target(logistic, prior, **data), key=seed, progress=False)
    return float(post.log_prob({"theta": theta[None]})[0])


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--priors", type=int, default=200)
    parser.add_argument("--refit", type=int, default=10, help="priors for NPE and flow VI")
    parser.add_argument("--smc", type=int, default=30, help="priors for SMC")
    parser.add_argument("--steps", type=int, default=10_000)
    args = parser.parse_args(argv)
    dt, train_seconds = train_dt(logistic, EXAMPLE, args.steps, "dt-run")
    priors, theta, data = problems(logistic, EXAMPLE, args.priors, jax.random.PRNGKey(1))
    q, dt_seconds = timed_posterior(dt, priors, data)
    scores = {"dt": np.asarray(q.log_prob(jnp.asarray(theta)))}
    seconds = {"dt": dt_seconds}
    runs = [("smc", smc_score, args.smc), ("npe", npe_score, args.refit),
            ("flow_vi", flow_vi_score, args.refit)]  # fmt: skip
    for name, score, count in runs:
        t = time.perf_counter()
        scores[name] = np.asarray(
            [score(one(priors, i), one(data, i), theta[i], i) for i in range(count)]
        )
        seconds[name] = (time.perf_counter() - t) / count
        print(f"{name}: {count} priors, {seconds[name]:.1f} s each", flush=True)
    result = {"train_seconds": train_seconds, "seconds_per_prior": seconds, "methods": {}}
    for name, values in scores.items():
        n = values.size
        result["methods"][name] = {
            "all": summarise(values),
            # the same priors for every method: differences are paired
            "vs_dt_on_same_priors": summarise(values - scores["dt"][:n]),
        }
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "against_smc.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(f"DT trained in {train_seconds:.0f} s")
    print("method    priors  log q(θ*) mean ± se   minus DT (paired)   s per prior")
    for name, r in result["methods"].items():
        a, d = r["all"], r["vs_dt_on_same_priors"]
        print(f"{name:8s} {a['n']:6d}  {a['mean']:8.3f} ± {a['se']:.3f}   "
              f"{d['mean']:+.3f} ± {d['se']:.3f}    {seconds[name]:.4f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
