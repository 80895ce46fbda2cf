"""Coin SVGD vs SVGD at every learning rate of a sweep, on real posteriors (issue 12's goal).

Models: logistic regression on breast cancer (31 dims, the zoo's), on wine (class 0 against the
rest, 13 standardised features + intercept: 14 dims) and on digits 3 vs 8 (8 × 8 images reduced
to 20 principal components + intercept: 21 dims), all scikit-learn's bundled data, N(0, 1)
priors; and the centred eight schools (10 dims, a hierarchical funnel). Reference: NumPyro's
NUTS, 4 chains × 5,000 draws after 2,000 warm-up, ``target_accept_prob=0.95`` (eight schools: the
non-centred model, whose ``theta`` is the same quantity). Errors over every latent coordinate
(constrained values): worst |mean − ref| / ref sd and worst |sd / ref sd − 1|.

Runners: ``pi.coin_svgd`` (defaults: 100 particles, 1,000 steps) and ``pi.svgd`` (Adam, the
same particles and steps) at learning rates 0.01 … 3; ``--seeds`` seeds each; means over seeds.
SVGD's best rate is chosen per model and per error, after the fact (the most favourable reading
for SVGD).

Writes ``experiments/coin/results/accuracy.json``; ``--reuse`` keeps the NUTS references.

    python experiments/coin/accuracy.py [--seeds 3] [--reuse]
"""

import argparse
import json
import time
from pathlib import Path

import jax
import numpy as np

import probinfer as pi
from probinfer._utils import write_json
from probinfer.models import eight_schools, logistic_regression

LEARNING_RATES = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)


def _standardise(x):
    return ((x - x.mean(0)) / x.std(0)).astype(np.float32)


def wine():
    from sklearn.datasets import load_wine

    data = load_wine()
    return _standardise(data.data), (data.target == 0).astype(np.float32)


def digits_3_vs_8(components=20):
    from sklearn.datasets import load_digits
    from sklearn.decomposition import PCA

    data = load_digits()
    keep = np.isin(data.target, (3, 8))
    x = PCA(components, random_state=0).fit_transform(data.data[keep])
    return _standardise(x), (data.target[keep] == 8).astype(np.float32)


def problems():
    """name -> (model, args, kwargs, reference model, its args, kwargs)."""
    lr = logistic_regression.logistic_regression
    out = {}
    for name, (x, y) in {
        "breast_cancer_lr": logistic_regression.load_breast_cancer(),
        "wine_lr": wine(),
        "digits_3v8_lr": digits_3_vs_8(),
    }.items():
        out[name] = (lr, (x,), {"y": y}, lr, (x,), {"y": y})
    sigma, y = eight_schools.SIGMA, eight_schools.Y
    out["eight_schools_centered"] = (
        eight_schools.centered,
        (sigma,),
        {"y": y},
        eight_schools.noncentered,
        (sigma,),
        {"y": y},
    )
    return out


def nuts_reference(model, args, kwargs, sites, seed=0):
    from numpyro.infer import MCMC, NUTS

    mcmc = MCMC(
        NUTS(model, target_accept_prob=0.95),
        num_warmup=2000,
        num_samples=5000,
        num_chains=4,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(seed), *args, **kwargs)
    draws = mcmc.get_samples()
    flat = {k: np.asarray(draws[k]).reshape(len(draws[k]), -1) for k in sites}
    return {
        "mean": {k: v.mean(0).tolist() for k, v in flat.items()},
        "sd": {k: v.std(0).tolist() for k, v in flat.items()},
        "divergences": int(np.asarray(mcmc.get_extra_fields()["diverging"]).sum()),
    }


def errors(post, reference):
    worst_mean, worst_sd = 0.0, 0.0
    for site, ref_mean in reference["mean"].items():
        x = np.asarray(post.draws[site][0]).reshape(post.draws[site].shape[1], -1)
        ref_mean, ref_sd = np.asarray(ref_mean), np.asarray(reference["sd"][site])
        worst_mean = max(worst_mean, float(np.max(np.abs(x.mean(0) - ref_mean) / ref_sd)))
        worst_sd = max(worst_sd, float(np.max(np.abs(x.std(0) / ref_sd - 1))))
    return worst_mean, worst_sd


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--reuse", action="store_true", help="NUTS references from --out")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "accuracy.json"))
    args = parser.parse_args()
    previous = json.loads(Path(args.out).read_text()) if args.reuse else {}
    results = {"learning_rates": list(LEARNING_RATES), "seeds": args.seeds, "models": {}}
    for name, (model, a, kw, ref_model, ref_a, ref_kw) in problems().items():
        target = pi.compile(model, *a, **kw)
        sites = list(target.latent_sites)
        if name in previous.get("models", {}):
            reference = previous["models"][name]["reference"]
        else:
            start = time.perf_counter()
            reference = nuts_reference(ref_model, ref_a, ref_kw, sites)
            reference["seconds"] = time.perf_counter() - start
        rows = {}
        for label, runner, extra in [("coin_svgd", pi.coin_svgd, {})] + [
            (f"svgd_lr_{lr}", pi.svgd, {"learning_rate": lr}) for lr in LEARNING_RATES
        ]:
            runs = []
            for seed in range(args.seeds):
                start = time.perf_counter()
                post = runner(target, key=seed, progress=False, **extra)
                runs.append((*errors(post, reference), time.perf_counter() - start))
            runs = np.asarray(runs)
            rows[label] = {
                "worst_mean_error_in_sd": float(runs[:, 0].mean()),
                "worst_mean_error_se": float(runs[:, 0].std(ddof=1) / np.sqrt(len(runs))),
                "worst_sd_relative_error": float(runs[:, 1].mean()),
                "worst_sd_error_se": float(runs[:, 1].std(ddof=1) / np.sqrt(len(runs))),
                "seconds": float(runs[:, 2].mean()),
            }
            print(name, label, rows[label], flush=True)
        svgd = {k: v for k, v in rows.items() if k.startswith("svgd")}
        best_mean = min(svgd, key=lambda k: svgd[k]["worst_mean_error_in_sd"])
        best_sd = min(svgd, key=lambda k: svgd[k]["worst_sd_relative_error"])
        results["models"][name] = {
            "dim": target.dim,
            "reference": reference,
            "runs": rows,
            "svgd_best_mean": best_mean,
            "svgd_best_sd": best_sd,
            "coin_vs_best_mean": rows["coin_svgd"]["worst_mean_error_in_sd"]
            / svgd[best_mean]["worst_mean_error_in_sd"],
            "coin_vs_best_sd": rows["coin_svgd"]["worst_sd_relative_error"]
            / svgd[best_sd]["worst_sd_relative_error"],
        }
        write_json(args.out, results)
    print(
        json.dumps(
            {
                k: {m: v[m] for m in v if m.startswith(("coin_vs", "svgd_best"))}
                for k, v in results["models"].items()
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
