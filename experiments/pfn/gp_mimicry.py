"""GP mimicry (the PFN paper's Figure): NLL of a PFN's posterior predictive against the exact GP
posterior predictive, on held-out data sets from the GP prior, as a function of the number of
context points (issue 15's goal: within 0.05 nats per test point up to 50 context points).

Also shown: the prior predictive (no data) and the exact GP discretised onto the PFN's buckets
(the best a bar distribution with these borders can do).

    python experiments/pfn/gp_mimicry.py [--pfn gp-rbf-1d] [--num-datasets 1000]

Writes ``experiments/pfn/results/gp_mimicry.{json,png}``.
"""

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
from jax.scipy.stats import norm

import probinfer as pi
from probinfer._utils import write_json
from probinfer.inference.pfn import BarDistribution

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).parent
CONTEXTS = (0, 1, 2, 5, 10, 20, 30, 40, 50, 60, 80, 99)
NUM_TEST = 20


def discretised(borders, mean, sd):
    """Logits of the exact Gaussian predictive pushed onto the bar borders (the outer buckets
    take the tail masses; their shape is the bar's own)."""
    cdf = norm.cdf((borders[None, :] - mean[:, None]) / sd[:, None])
    mass = jnp.diff(cdf, axis=-1)
    mass = mass.at[:, 0].add(cdf[:, 0]).at[:, -1].add(1.0 - cdf[:, -1])
    return jnp.log(jnp.maximum(mass, 1e-30))


def evaluate(pfn, num_datasets, contexts=CONTEXTS, seed=1000):
    """Rows of NLL per test point (PFN, exact GP, the exact GP on the PFN's bars, the prior
    predictive) and the PFN − exact gap with its standard error, one per context size."""
    prior = pfn.prior
    rows = []
    for n in contexts:
        if n > pfn.seq_len - 1:
            continue
        x, y = prior.sample(jax.random.PRNGKey(seed + n), num_datasets, n + NUM_TEST)
        xc, yc, xq, yq = x[:, :n], y[:, :n], x[:, n:], y[:, n:]
        if n:
            mean, var = jax.vmap(prior.predictive)(xc, yc, xq)
        else:
            mean, var = jnp.zeros(yq.shape), jnp.full(yq.shape, prior.outputscale + prior.noise)
        sd = jnp.sqrt(var)
        exact = -np.asarray(norm.logpdf(yq, mean, sd)).mean(1)
        pfn_nll = -np.asarray(pfn.predict(xc, yc, xq).log_prob(yq)).mean(1)
        bars = BarDistribution(
            pfn.borders, jax.vmap(discretised, (None, 0, 0))(pfn.borders, mean, sd)
        )
        bar_nll = -np.asarray(bars.log_prob(yq)).mean(1)
        prior_nll = -np.asarray(norm.logpdf(yq, 0.0, np.sqrt(prior.outputscale + prior.noise)))
        gap = pfn_nll - exact
        se = lambda a: float(a.std() / np.sqrt(a.size))  # noqa: E731
        rows.append({
            "num_context": n,
            "pfn_nll": float(pfn_nll.mean()),
            "exact_nll": float(exact.mean()),
            "discretised_exact_nll": float(bar_nll.mean()),
            "prior_nll": float(prior_nll.mean()),
            "gap": float(gap.mean()),
            "gap_se": se(gap),
        })  # fmt: skip
        print(f"n={n:3d}  PFN {pfn_nll.mean():.4f}  exact GP {exact.mean():.4f}  "
              f"gap {gap.mean():+.4f} ± {se(gap):.4f}  (bars: {bar_nll.mean() - exact.mean():+.4f})",
              flush=True)  # fmt: skip
    return rows


def write(name, label, pfn, rows, num_datasets, title):
    """``results/<name>.{json,png}``: the rows and the mimicry figure."""
    result = {
        "pfn": label,
        "prior": pfn.prior.config(),
        "num_datasets": num_datasets,
        "num_test_points": NUM_TEST,
        "settings": pfn.settings,
        "rows": rows,
    }
    write_json(HERE / "results" / f"{name}.json", result)
    fig, ax = plt.subplots(figsize=(6, 4))
    ns = [r["num_context"] for r in rows]
    ax.plot(ns, [r["exact_nll"] for r in rows], "k-", label="exact GP")
    ax.plot(ns, [r["pfn_nll"] for r in rows], "o--", label=f"PFN ({label})")
    ax.axhline(rows[0]["prior_nll"], color="grey", ls=":", label="prior predictive")
    ax.set_xlabel("context points")
    ax.set_ylabel("NLL per test point (nats)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(HERE / "results" / f"{name}.png", dpi=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pfn", default="gp-rbf-1d")
    parser.add_argument("--num-datasets", type=int, default=1000)
    args = parser.parse_args()
    pfn = pi.pfn.load(args.pfn)
    rows = evaluate(pfn, args.num_datasets)
    title = f"GP mimicry, {args.num_datasets} held-out data sets"
    write("gp_mimicry", args.pfn, pfn, rows, args.num_datasets, title)


if __name__ == "__main__":
    main()
