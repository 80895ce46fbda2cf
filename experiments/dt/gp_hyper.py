"""Distribution Transformer on a GP with hyper-priors, against NUTS (issue 16's second goal).

A GP regression on x ~ U(0, 1) with 20 context points: θ = (θ_ℓ, θ_σ, θ_ε) on the real line,
lengthscale ℓ = exp(θ_ℓ − 1.5), outputscale σ² = exp(θ_σ), noise variance ε = exp(θ_ε − 3), RBF
kernel. For P random priors over θ (Gaussian mixtures from the DT's meta-prior), θ* ~ prior and
a data set (20 context + 10 test points) from the GP. The hyper-parameter posterior given the
context comes from

* the DT (trained once on random priors; one batched forward pass for all P), or
* NUTS under the same prior (4 chains × 500 draws after 500 warm-up, per data set; the
  first 20 priors),

and is scored by the log predictive density of the 10 test points, log mean_s Π_j N(y*_j;
GP posterior predictive | θ_s) over 400 posterior draws θ_s — the paper's predictive task —
and by log q(θ*) (a mixture fitted to the NUTS draws). With the true θ* and with prior draws as
bounds. ``scores`` in the JSON: log predictive densities (dt, nuts, true_theta, prior and the
paired dt_minus_nuts) and log q(θ*) (log_q_true_dt, log_q_true_nuts).

Run: python experiments/dt/gp_hyper.py [--priors 200 --nuts 20 --steps 10000]
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

NUM_CONTEXT, NUM_TEST = 20, 10


def hyper(theta):
    return jnp.exp(theta[..., 0] - 1.5), jnp.exp(theta[..., 1]), jnp.exp(theta[..., 2] - 3.0)


def kernel(theta, a, b):
    lengthscale, outputscale, _ = hyper(theta)
    return outputscale * jnp.exp(-0.5 * (a[:, None] - b[None, :]) ** 2 / lengthscale**2)


def gp(x, y=None, logits=None, means=None, scale_tril=None):
    """θ ~ a Gaussian mixture (the DT replaces it by its random priors); x ~ U(0, 1); y ~ GP."""
    theta = pi.sample("theta", mixture_prior(logits, means, scale_tril, 3))
    with pi.plate("data", x.shape[0]):
        x = pi.sample("x", dist.Uniform(0.0, 1.0), obs=x)
    cov = kernel(theta, x, x) + (hyper(theta)[2] + 1e-5) * jnp.eye(x.shape[0])
    pi.sample("y", dist.MultivariateNormal(jnp.zeros(x.shape[0]), cov), obs=y)


def log_predictive(theta, x, y, x_test, y_test):
    """Σ_j log N(y*_j; GP predictive mean and variance at x*_j | θ, context): (S,) for θ (S, 3)."""

    def one(t):
        noise = hyper(t)[2] + 1e-5
        chol = jnp.linalg.cholesky(kernel(t, x, x) + noise * jnp.eye(x.shape[0]))
        cross = kernel(t, x, x_test)
        alpha = jax.scipy.linalg.cho_solve((chol, True), y)
        mean = cross.T @ alpha
        v = jax.scipy.linalg.solve_triangular(chol, cross, lower=True)
        var = hyper(t)[1] - jnp.sum(v**2, 0) + noise
        return jnp.sum(dist.Normal(mean, jnp.sqrt(var)).log_prob(y_test))

    return jax.vmap(one)(theta)


def score(theta_draws, x, y, x_test, y_test):
    lp = log_predictive(jnp.asarray(theta_draws), x, y, x_test, y_test)
    return float(jax.scipy.special.logsumexp(lp) - jnp.log(lp.shape[0]))


def nuts_draws(prior, x, y, seed):
    target = per_prior_target(gp, prior, x=x, y=y)
    post = pi.mcmc(target, key=seed, num_chains=4, num_draws=500, num_warmup=500, progress=False)
    return post.draws["theta"].reshape(-1, 3), post


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--priors", type=int, default=200)
    parser.add_argument("--nuts", type=int, default=20)
    parser.add_argument("--steps", type=int, default=10_000)
    args = parser.parse_args(argv)
    example = {"x": jnp.linspace(0, 1, NUM_CONTEXT), "y": jnp.zeros(NUM_CONTEXT)}
    dt, train_seconds = train_dt(gp, example, args.steps, "gp-dt-run")
    size = NUM_CONTEXT + NUM_TEST
    whole = {"x": jnp.linspace(0, 1, size), "y": jnp.zeros(size)}
    priors, theta, data = problems(gp, whole, args.priors, jax.random.PRNGKey(1))
    context = {k: v[:, :NUM_CONTEXT] for k, v in data.items()}
    q, dt_seconds = timed_posterior(dt, priors, context)
    key = jax.random.PRNGKey(2)
    dt_draws = np.asarray(q.sample(key, 400))  # (400, P, 3)
    prior_draws = np.asarray(priors.sample(key, 400))
    rows = {"dt": [], "true_theta": [], "prior": [], "nuts": [], "dt_minus_nuts": [],
            "log_q_true_dt": [], "log_q_true_nuts": []}  # fmt: skip
    t = time.perf_counter()
    for i in range(args.priors):
        x, y = data["x"][i], data["y"][i]
        split = (x[:NUM_CONTEXT], y[:NUM_CONTEXT], x[NUM_CONTEXT:], y[NUM_CONTEXT:])
        rows["dt"].append(score(dt_draws[:, i], *split))
        rows["true_theta"].append(score(theta[i][None], *split))
        rows["prior"].append(score(prior_draws[:, i], *split))
        if i < args.nuts:
            draws, _ = nuts_draws(one(priors, i), x[:NUM_CONTEXT], y[:NUM_CONTEXT], i)
            thin = draws[:: max(1, draws.shape[0] // 400)][:400]
            rows["nuts"].append(score(thin, *split))
            rows["dt_minus_nuts"].append(rows["dt"][-1] - rows["nuts"][-1])
            fitted = Mixture.fit(jnp.asarray(draws), 4, key=jax.random.PRNGKey(i))
            rows["log_q_true_nuts"].append(float(fitted.log_prob(jnp.asarray(theta[i]))))
            rows["log_q_true_dt"].append(float(one(q, i).log_prob(jnp.asarray(theta[i]))))
    nuts_seconds = (time.perf_counter() - t) / max(args.nuts, 1)
    result = {
        "train_seconds": train_seconds,
        "seconds_per_prior": {"dt": dt_seconds, "nuts": nuts_seconds},
        "scores": {k: summarise(v) for k, v in rows.items() if v},
    }
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "gp_hyper.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(f"DT trained in {train_seconds:.0f} s; {dt_seconds * 1e3:.3f} ms per prior; "
          f"NUTS {nuts_seconds:.1f} s per data set (incl. the scoring loop)")  # fmt: skip
    for name, r in result["scores"].items():
        print(f"{name:16s} {r['n']:4d}  {r['mean']:8.3f} ± {r['se']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
