"""PFN speed (issue 15's goal), same process, warm timings.

1. **GP**: the shipped ``gp-rbf-1d`` against exact GP inference (Cholesky, jitted and vmapped over
   data sets) — 1,000 data sets, 50 context and 50 test points each; predictions per second and
   the NLL of each.
2. **BNN at matched NLL**: a PFN trained (``--bnn-steps``) on the prior of a Bayesian neural
   network written as a probinfer model (``ModelPrior``: a PFN for a user's own model), against
   NUTS (``probinfer.mcmc_draws``: NumPyro's kernel, 4 chains × (500 + 250), vmapped over the data
   sets) and NumPyro's SVI (``AutoNormal``, Adam 0.01, 2,000 steps, vmapped over the data sets) on
   the same model: NLL of the posterior predictive at the test points and seconds per data set,
   on ``--bnn-datasets`` held-out data sets (30 context and 20 test points each). *Matched* NLL:
   NUTS is also run at smaller budgets (fewer chains, warm-up steps and draws), and the ratio at
   matched NLL uses the cheapest budget whose NLL is not worse than the PFN's by 2 standard errors
   (paired over the data sets) — the least time NUTS needs to be as good as the PFN.

    python experiments/bench/pfn.py [--bnn-steps 8000] [--bnn-datasets 50]

Writes ``experiments/bench/results/pfn.json``.
"""

import argparse
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from jax.scipy.special import logsumexp
from numpyro.infer import SVI, Trace_ELBO
from numpyro.infer.autoguide import AutoNormal

import probinfer as pi
from probinfer._utils import write_json
from probinfer.mcmc import mcmc_draws

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
HIDDEN, NOISE_SD = 16, 0.2
# NUTS budgets (chains, warm-up, kept draws per chain): the reference first, then cheaper ones.
NUTS_BUDGETS = [(4, 500, 250), (2, 200, 100), (1, 100, 100), (1, 50, 50), (1, 25, 25)]


def timed(fn, *args):
    jax.block_until_ready(fn(*args))  # compile
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - start


def gp_part(num_datasets=1000, n=50, m=50):
    pfn = pi.pfn.load("gp-rbf-1d")
    prior = pfn.prior
    x, y = prior.sample(jax.random.PRNGKey(0), num_datasets, n + m)
    xc, yc, xq, yq = x[:, :n], y[:, :n], x[:, n:], y[:, n:]
    logits, pfn_seconds = timed(lambda: pfn.predict(xc, yc, xq).logits)
    pfn_nll = -float(pi.pfn.BarDistribution(pfn.borders, logits).log_prob(yq).mean())

    @jax.jit
    def exact():
        mean, var = jax.vmap(prior.predictive)(xc, yc, xq)
        return -dist.Normal(mean, jnp.sqrt(var)).log_prob(yq).mean()

    exact_nll, exact_seconds = timed(exact)
    return {
        "num_datasets": num_datasets,
        "context": n,
        "test": m,
        "pfn_seconds": pfn_seconds,
        "exact_gp_seconds": exact_seconds,
        "pfn_predictions_per_second": num_datasets * m / pfn_seconds,
        "exact_gp_predictions_per_second": num_datasets * m / exact_seconds,
        "pfn_nll": pfn_nll,
        "exact_gp_nll": float(exact_nll),
    }


def forward(params, x):
    h = jnp.tanh(x @ params["w1"] + params["b1"])
    return h @ params["w2"] + params["b2"]


def bnn(x, y=None):
    """A one-hidden-layer tanh BNN regression; x (n, 1) is an observed site, so a data set's
    inputs can be conditioned on like its outputs."""
    params = {
        "w1": pi.sample("w1", dist.Normal(0, 2.0).expand([1, HIDDEN]).to_event(2)),
        "b1": pi.sample("b1", dist.Normal(0, 2.0).expand([HIDDEN]).to_event(1)),
        "w2": pi.sample("w2", dist.Normal(0, 2.0 / HIDDEN**0.5).expand([HIDDEN]).to_event(1)),
        "b2": pi.sample("b2", dist.Normal(0, 1.0)),
    }
    with pi.plate("data", x.shape[0]):
        x = pi.sample("x", dist.Uniform(0.0, 1.0).expand([1]).to_event(1), obs=x)
        pi.sample("y", dist.Normal(forward(params, x), NOISE_SD), obs=y)


def predictive_nll(draws, xq, yq):
    """−mean over test points of log (1/S) Σ_s N(y | f_s(x), σ)."""
    f = jax.vmap(lambda p: forward(p, xq))(draws)  # (S, m)
    log_p = dist.Normal(f, NOISE_SD).log_prob(yq)
    return -jnp.mean(logsumexp(log_p, 0) - jnp.log(f.shape[0]))


def bnn_part(num_steps, num_datasets, n=30, m=20):
    prior = pi.pfn.ModelPrior(bnn, inputs=dist.Uniform(0.0, 1.0))
    start = time.perf_counter()
    pfn = pi.pfn.train(
        prior,
        key=0,
        num_steps=num_steps,
        batch_size=64,
        seq_len=60,
        network=pi.pfn.Transformer(num_buckets=500, d_model=128, num_layers=4, num_heads=4),
        checkpoint=ROOT / "experiments" / "pfn" / "checkpoints" / "bnn",
        progress=False,
    )
    train_seconds = time.perf_counter() - start
    x, y = prior.sample(jax.random.PRNGKey(7), num_datasets, n + m)
    xc, yc, xq, yq = x[:, :n], y[:, :n], x[:, n:], y[:, n:]
    logits, pfn_seconds = timed(lambda: pfn.predict(xc, yc, xq).logits)
    pfn_nll = float(-pi.pfn.BarDistribution(pfn.borders, logits).log_prob(yq).mean())
    target = pi.compile(bnn, x=np.zeros((n, 1), np.float32), y=np.zeros(n, np.float32))
    keys = jax.random.split(jax.random.PRNGKey(8), num_datasets)

    pfn_each = -pi.pfn.BarDistribution(pfn.borders, logits).log_prob(yq).mean(-1)  # (datasets,)

    def nuts_at(num_chains, num_warmup, num_draws):
        @jax.jit
        def nuts(keys):
            def one(key, xc, yc, xq, yq):
                draws = mcmc_draws(
                    target.condition({"x": xc, "y": yc}),
                    key,
                    num_chains * num_draws,
                    num_chains=num_chains,
                    num_warmup=num_warmup,
                )
                return predictive_nll(draws, xq, yq)

            return jax.vmap(one)(keys, xc, yc, xq, yq)

        return timed(nuts, keys)

    # The reference budget first, then smaller ones: where does NUTS stop beating the PFN?
    budgets = []
    for chains, warmup, draws in NUTS_BUDGETS:
        each, seconds = nuts_at(chains, warmup, draws)
        gap = np.asarray(each - pfn_each)  # NUTS − PFN per data set: < 0 where NUTS is better
        budgets.append(
            {
                "chains": chains,
                "warmup": warmup,
                "draws_per_chain": draws,
                "nll": float(jnp.mean(each)),
                "nll_minus_pfn": float(gap.mean()),
                "nll_minus_pfn_se": float(gap.std(ddof=1) / np.sqrt(gap.size)),
                "seconds_per_dataset": seconds / num_datasets,
            }
        )
        print("nuts budget", budgets[-1], flush=True)
    nuts_nll, nuts_seconds = budgets[0]["nll"], budgets[0]["seconds_per_dataset"] * num_datasets
    # Matched: the cheapest budget whose NLL is not worse than the PFN's by 2 standard errors
    # (as good as the PFN, within the paired noise) — the least NUTS needs to be that good.
    matched = min(
        (b for b in budgets if b["nll_minus_pfn"] < 2 * b["nll_minus_pfn_se"]),
        key=lambda b: b["seconds_per_dataset"],
        default=None,
    )

    @jax.jit
    def svi(keys):
        def one(key, xc, yc, xq, yq):
            guide = AutoNormal(bnn)
            engine = SVI(bnn, guide, optax.adam(0.01), Trace_ELBO())
            state = engine.init(key, xc, yc)
            state, _ = jax.lax.scan(lambda s, _: engine.update(s, xc, yc), state, None, 2000)
            params = engine.get_params(state)
            draws = guide.sample_posterior(jax.random.fold_in(key, 1), params, sample_shape=(1000,))
            return predictive_nll(draws, xq, yq)

        return jax.vmap(one)(keys, xc, yc, xq, yq)

    svi_nll, svi_seconds = timed(svi, keys)
    per = lambda s: s / num_datasets  # noqa: E731
    return {
        "num_datasets": num_datasets,
        "context": n,
        "test": m,
        "pfn_train_steps": num_steps,
        "pfn_train_seconds": train_seconds,
        "pfn_nll": pfn_nll,
        "nuts_nll": nuts_nll,
        "nuts_budgets": budgets,
        "nuts_matched": matched,
        "nuts_matched_over_pfn": None
        if matched is None
        else matched["seconds_per_dataset"] * num_datasets / pfn_seconds,
        "svi_nll": float(jnp.mean(svi_nll)),
        "pfn_seconds_per_dataset": per(pfn_seconds),
        "nuts_seconds_per_dataset": per(nuts_seconds),
        "pfn_nll_se": float(pfn_each.std(ddof=1) / np.sqrt(num_datasets)),
        "svi_seconds_per_dataset": per(svi_seconds),
        "nuts_over_pfn": nuts_seconds / pfn_seconds,
        "svi_over_pfn": svi_seconds / pfn_seconds,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bnn-steps", type=int, default=8000)
    parser.add_argument("--bnn-datasets", type=int, default=50)
    parser.add_argument("--parts", default="gp,bnn")
    args = parser.parse_args()
    numpyro.enable_validation(False)
    results = {
        "date": time.strftime("%Y-%m-%d"),
        "device": str(jax.devices()[0]),
        "machine": platform.processor() or "?",
    }
    if "gp" in args.parts:
        results["gp"] = gp_part()
        print("gp", results["gp"], flush=True)
    if "bnn" in args.parts:
        results["bnn"] = bnn_part(args.bnn_steps, args.bnn_datasets)
        print("bnn", results["bnn"], flush=True)
    write_json(HERE / "results" / "pfn.json", results)


if __name__ == "__main__":
    main()
