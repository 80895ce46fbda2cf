"""BNN classification on scikit-learn's digits: MAP vs SGLD, cSGHMC, Structured SGMCMC and
Entropy-MCMC, and the mixing of Structured SGMCMC against SGLD at our scale.

Network: the zoo's ``digits_bnn`` (tanh MLP 64 → 50 → 10, N(0, 1) priors, 3,760 weights), trained
on 1,347 images, tested on 450. Every method uses the runner's defaults for what is not named
here (mode search, step size from the curvature at the mode, 10 % burn-in), minibatches of 128,
4 chains of ``--steps`` steps, thinning 10:

* MAP: the runner's mode search alone (Adam on minibatches, then full-batch L-BFGS);
* SGLD default: the runner with no kernel and no step (SGLD, Fisher-preconditioned here, step
  chosen by the KSD pilot, :mod:`probinfer.inference.sgmcmc.pilot`);
* SGLD curvature step: the same kernel at the step the default used before the pilot
  (0.1 / λ_max of the preconditioned Hessian at the mode — the pilot's smallest candidate);
* SGLD: no preconditioner, step from the pilot;
* cSGHMC: SGHMC with 4 cosine cycles, draws from the sampling half of each cycle;
* S-SGLD: Structured SGLD, one group per layer (kernel and bias: 2 groups, 2 gradients a step), and
  S-SGLD dropout (p = 0.5, 2 copies: 2 gradients a step);
* Entropy-MCMC (η = 10⁻³, about the smallest posterior variance at the mode; cyclical),
  predicting with θ and θ_a together.

Reported on the test split: accuracy, NLL of the ensemble predictive, expected calibration error
(15 bins), wall time; and for mixing, the effective sample size (ArviZ, over the 4 chains) of the
per-draw mean test log-likelihood, per second of wall time. Writes
``experiments/sgmcmc/results/digits.json``.

    python experiments/sgmcmc/digits.py [--steps 20000] [--seeds 3]
"""

import argparse
import time
from pathlib import Path

import arviz as az
import jax
import numpy as np

import probinfer as pi
from probinfer._utils import write_json
from probinfer.inference.sgmcmc import entropy, find_mode, schedules, sgld, structured

METHODS = {
    "SGLD default": dict(),
    "SGLD curvature step": None,  # the default before the pilot: same kernel, ε = 0.1 / λ_max
    "SGLD": dict(kernel="sgld"),
    "cSGHMC": dict(kernel="sghmc", schedule=schedules.cyclical(num_cycles=4)),
    "S-SGLD (layers)": dict(kernel=structured(groups="layer")),
    "S-SGLD dropout": dict(kernel=structured(groups="layer", dropout=0.5, num_copies=2)),
    "Entropy-MCMC": dict(kernel=entropy(coupling=1e-3), schedule=schedules.cyclical(num_cycles=4)),
}


def mixing(target, post, test):
    """ESS of the mean test log-likelihood of each draw (a scalar summary of the predictive)."""
    pred = pi.predict(target, post, test)
    per_draw = pred.draw_log_likelihood.reshape(post.num_chains, post.num_draws)
    return float(az.ess(per_draw))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "digits.json"
    )
    args = parser.parse_args()
    example = pi.models.get("digits_bnn")
    target, test = example.compile(), example.exact["test"]
    rows = {}
    for seed in range(args.seeds):
        start = time.perf_counter()
        mode = find_mode(target, jax.random.PRNGKey(seed), batch_size=128)
        seconds = time.perf_counter() - start
        point = pi.Posterior(
            {k: np.asarray(v)[None, None] for k, v in target.constrain(mode).items()},
            method="map",
        )
        pred = pi.predict(target, point, test)
        rows.setdefault("MAP", []).append(
            {"accuracy": pred.accuracy, "nll": pred.nll, "ece": pred.ece, "seconds": seconds}
        )
        for name, kwargs in METHODS.items():
            if kwargs is None:
                base = rows["SGLD default"][-1]["pilot"]["step_size"][0]
                kwargs = dict(kernel=sgld(preconditioner="auto"), step_size=base)
            start = time.perf_counter()
            post = pi.sgmcmc(
                target, key=seed, batch_size=128, num_steps=args.steps, progress=False, **kwargs
            )
            seconds = time.perf_counter() - start
            pred = pi.predict(target, post, test, anchors=name == "Entropy-MCMC")
            ess = mixing(target, post, test)
            rows.setdefault(name, []).append(
                {
                    "accuracy": pred.accuracy,
                    "nll": pred.nll,
                    "ece": pred.ece,
                    "seconds": seconds,
                    "ess": ess,
                    "ess_per_s": ess / seconds,
                    "step_size": float(post.diagnostics["step_size"][0]),
                    "draws": post.num_chains * post.num_draws,
                }
            )
            if "step_size_pilot" in post.diagnostics:
                rows[name][-1]["pilot"] = post.diagnostics["step_size_pilot"]
            print(seed, name, rows[name][-1], flush=True)
    summary = {
        name: {
            key: [float(np.mean([r[key] for r in runs])), float(np.std([r[key] for r in runs]))]
            for key in runs[0]
            if key != "pilot"
        }
        for name, runs in rows.items()
    }
    results = {
        "steps": args.steps,
        "seeds": args.seeds,
        "device": jax.devices()[0].device_kind,
        "runs": rows,
        "summary (mean, sd over seeds)": summary,
    }
    write_json(args.out, results)  # before printing: a closed pipe must not lose the results
    print(f"{'method':18s} {'accuracy':>14s} {'NLL':>14s} {'ECE':>14s} {'ESS/s':>12s} {'s':>6s}")
    for name, s in summary.items():
        ess = f"{s['ess_per_s'][0]:6.2f} ± {s['ess_per_s'][1]:4.2f}" if "ess_per_s" in s else ""
        print(
            f"{name:18s} {s['accuracy'][0]:.4f} ± {s['accuracy'][1]:.4f} "
            f"{s['nll'][0]:.4f} ± {s['nll'][1]:.4f} {s['ece'][0]:.4f} ± {s['ece'][1]:.4f} "
            f"{ess:>12s} {s['seconds'][0]:6.1f}"
        )


if __name__ == "__main__":
    main()
