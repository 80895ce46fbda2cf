"""What ``init="pathfinder"`` saves in NUTS warm-up (issue 33), on the hard models: the centred
eight schools, the stochastic-volatility model and Neal's 10-D funnel.

For each model, each start rule — ``uniform`` (``pi.mcmc``'s default: every unconstrained
coordinate uniform on (−2, 2)) and ``pathfinder`` — and each ``num_warmup`` on a ladder,
``pi.mcmc`` (NUTS, 4 chains × 1,000 draws) runs over ``--seeds`` seeds. Recorded per run:

* warm-up gradients: the sum over chains of NumPyro's ``num_steps`` (one gradient per leapfrog
  step) over every warm-up transition the runner made. ``pi.mcmc`` keeps no warm-up trace, so this
  script wraps the NUTS program's ``warmup`` piece (``probinfer.kernels.program._nuts_program``,
  patched before anything compiles) with one that runs the same transitions through the
  program's own ``sample`` piece (the same NumPyro ``sample_kernel``; NumPyro adapts while its
  iteration counter is below ``num_warmup``, whichever piece runs it) and reports the summed
  ``num_steps`` through ``jax.debug.callback``. A stuck-chain restart (``restart=True``, the
  default) runs the warm-up again: its steps are added for the chains that took it.
* Pathfinder's own cost (``init="pathfinder"`` only; the same for every rung of a seed):
  ``pathfinder_starts`` (4 paths from uniform starts, L-BFGS ≤ 200 iterations, history 6,
  25 ELBO draws, a pool of 250 draws per path). Gradient evaluations are counted exactly by
  re-running each path unbatched (BlackJAX's ``approximate``, same starts and keys) with the log
  density wrapped in a ``custom_vjp`` whose forward pass counts (the initial gradient, every
  line-search trial, the re-evaluation at each accepted point). Density-only evaluations follow
  from the configuration: BlackJAX evaluates the ELBO at every one of the ``num_steps + 1 = 201``
  slots of the path whether L-BFGS used them or not, so ``4 × (201 × 25 + 250) = 21,100``. The
  total charges each density evaluation as one gradient (an upper bound: a reverse-mode gradient
  costs more than a density); ``pathfinder_grads_only`` leaves them out (a lower bound). (The
  unbatched re-run can take a few iterations more or fewer than the vmapped one; both counts are
  kept. The four vmapped paths also run in lock-step, so the machine does more than this.) The
  starts are computed once per seed with ``pathfinder_starts`` exactly as ``pi.mcmc`` calls it and
  passed as ``init=z``; one ``pi.mcmc(init="pathfinder")`` run per model checks the draws agree.
* accuracy against a reference, on the sampler's coordinates: ``mu, log tau, theta`` (centred
  eight schools; reference: the non-centred model, 4 × 10,000 NUTS draws at target_accept 0.95),
  ``mu, logit((phi+1)/2), log sigma, h_std`` (stochastic volatility; reference: the same model,
  4 × 10,000 draws, 2,000 warm-up, target_accept 0.95), and ``v, log|x_i|`` (funnel; exact:
  v ~ N(0, 3), log|x_i| has mean −(γ + log 2)/2 and sd √(9/4 + π²/8); x_i itself has kurtosis
  3·e⁹ ≈ 24,000, so no 4,000 draws can estimate its sd). ``mean_error``: the largest |mean − reference
  mean| / reference sd over coordinates; ``sd_error``: the largest |sd / reference sd − 1|; also
  the largest rank-normalised split R-hat, the smallest bulk ESS and the divergences.

"Warm-up needed" for a start rule is the smallest rung from which on (that rung and every larger
one) the median over seeds of both errors is within the bar; the gradients needed are the median
warm-up gradients at that rung (plus Pathfinder's). Two bars are reported: ``matched`` — within
``SLACK`` (1.25) × the median errors after the full 1,000-iteration warm-up (the issue's "same
accuracy"; both start rules' top-rung runs pooled, since after a full warm-up they are the same
sampler and one rule's lucky seeds should not set the bar; the slack absorbs the seeds' noise) —
and ``fixed`` — 0.2 sd on means and 20 % on sds. The ratio is uniform's gradients needed /
Pathfinder's (goal: ≥ 2; infinite when only Pathfinder gets there, 0 when only uniform does). A
bootstrap over seeds (the bar re-derived in each resample) gives the ratio's spread and how often
it is ≥ 2: the errors at 1,000 draws are mostly Monte Carlo noise, so this matters.

    python experiments/bench/pathfinder_init.py [--quick] [--seeds 10] [--models funnel,...]
"""

import argparse
import platform
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import probinfer as pi
import probinfer.kernels.program as _program_module
from probinfer._utils import as_key, import_arviz, write_json

MODELS = ("eight_schools_centered", "stochastic_volatility", "funnel")
INITS = ("uniform", "pathfinder")
LADDER = (25, 50, 100, 200, 400, 1000)
QUICK_LADDER = (50, 200, 1000)
RUN = {"num_chains": 4, "num_draws": 1000}
REFERENCE = {"num_chains": 4, "num_warmup": 2000, "num_draws": 10000, "target_accept": 0.95}
QUICK_REFERENCE = {"num_chains": 4, "num_warmup": 1000, "num_draws": 2000, "target_accept": 0.95}
FIXED_BAR = {"mean_error": 0.2, "sd_error": 0.2}
SLACK = 1.25
# pathfinder_starts' configuration (probinfer.pathfinder): paths, L-BFGS cap, ELBO draws, pool.
PATHFINDER = {"num_paths": 4, "num_steps": 200, "num_elbo_draws": 25, "history_size": 6}


# -- warm-up gradients: the NUTS program's warm-up piece, counted ----------------------------------

_WARMUP_CALLS = []  # per warm-up call of the current run: summed num_steps per chain


def _record(steps):
    _WARMUP_CALLS.append(np.asarray(steps, np.int64))


def _counting_nuts_program(original):
    def program(target, **kwargs):
        start, warmup, sample, step_size, position = original(target, **kwargs)
        if kwargs["thinning"] != 1:  # sample() keeps every thinning-th row
            raise ValueError("the warm-up counter needs thinning=1")

        def counted_warmup(state, steps, keys, collect, window_end):
            del collect, window_end  # NumPyro's schedule lives in its state, as in warmup()
            state, trace = sample(state, steps, keys)
            jax.debug.callback(_record, jnp.sum(trace[4], axis=0))  # trace[4]: leapfrog steps
            return state

        return start, counted_warmup, sample, step_size, position

    return program


_program_module._nuts_program = _counting_nuts_program(_program_module._nuts_program)


def run_mcmc(target, seed, init, num_warmup, **settings):
    """``pi.mcmc`` with the warm-up gradients counted; returns (posterior, counts, seconds)."""
    _WARMUP_CALLS.clear()
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the health sentences are kept in diagnostics
        post = pi.mcmc(
            target, key=seed, init=init, num_warmup=num_warmup, progress=False, **settings
        )
    jax.effects_barrier()
    seconds = time.perf_counter() - start
    calls = list(_WARMUP_CALLS)
    restarted = np.asarray(post.diagnostics["restarted_chains"], bool)
    first = calls[0] if calls else np.zeros(len(restarted), np.int64)
    again = calls[1] if len(calls) > 1 else np.zeros_like(first)
    counts = {
        "warmup_grads": int(first.sum() + again[restarted].sum()),
        "restart_grads": int(again[restarted].sum()),
        "restarted_chains": int(restarted.sum()),
        "sampling_grads": int(np.sum(post.diagnostics["num_integration_steps"])),
    }
    if num_warmup > 0 and len(calls) != 1 + bool(restarted.any()):
        raise RuntimeError(f"expected one warm-up per phase, counted {len(calls)}")
    return post, counts, seconds


# -- Pathfinder's cost ------------------------------------------------------------------------------


def _counted(log_density, counter):
    """``log_density`` whose gradient evaluations (value and gradient) add one to ``counter``."""

    def bump():
        counter[0] += 1

    @jax.custom_vjp
    def f(z):
        return log_density(z)

    def fwd(z):
        jax.debug.callback(bump)
        return jax.value_and_grad(log_density)(z)

    def bwd(grad, cotangent):
        return (cotangent * grad,)

    f.defvjp(fwd, bwd)
    return f


_PATH_PROGRAMS = {}


def pathfinder_cost(target, name, seed, n):
    """Pathfinder for ``pi.mcmc(key=seed, init="pathfinder")``: the starting points (by
    ``pathfinder_starts``, as ``pi.mcmc`` calls it), its seconds, its k̂ and iterations per path
    (from ``probinfer.pathfinder._fit``, as ``pathfinder_starts`` calls it) and the evaluations
    (an unbatched re-run of each path with gradients counted)."""
    from blackjax.vi.pathfinder import approximate

    from probinfer.pathfinder import _fit, _settings, pathfinder_starts

    key_init = jax.random.split(as_key(seed), 3)[0]  # pi.mcmc's split; init gets the first
    start = time.perf_counter()
    z = pathfinder_starts(target, key_init, n)
    z.block_until_ready()
    seconds = time.perf_counter() - start

    key_start, key_run, _ = jax.random.split(as_key(key_init), 3)  # pathfinder_starts' split
    paths = PATHFINDER["num_paths"]
    settings = _settings(
        paths,
        max(250, n),
        PATHFINDER["num_steps"],
        PATHFINDER["num_elbo_draws"],
        PATHFINDER["history_size"],
    )
    starts = target.starting_points("uniform", paths, key=key_start)
    _, iterations, _, _, _, k_hat = _fit(target, key_run, starts, settings)

    counter = [0]
    if name not in _PATH_PROGRAMS:
        counted = _counted(target.log_density, counter)
        _PATH_PROGRAMS[name] = (
            counter,
            jax.jit(
                lambda k, s: (
                    approximate(
                        k,
                        counted,
                        s,
                        PATHFINDER["num_elbo_draws"],
                        maxiter=PATHFINDER["num_steps"],
                        maxcor=PATHFINDER["history_size"],
                    )[1].path.elbo
                )
            ),
        )
    counter, one_path = _PATH_PROGRAMS[name]
    counter[0] = 0
    unbatched_iterations = []
    for key, path_start in zip(jax.random.split(key_run, paths), starts, strict=True):
        key_path, _ = jax.random.split(key)  # probinfer.pathfinder._paths' split
        elbo = np.asarray(one_path(key_path, path_start))
        unbatched_iterations.append(int(np.isfinite(elbo).sum()))
    jax.effects_barrier()
    grads = int(counter[0])
    slots = PATHFINDER["num_steps"] + 1
    density = paths * (slots * PATHFINDER["num_elbo_draws"] + settings["num_draws"])
    density_used = int(
        np.sum(np.asarray(iterations)) * PATHFINDER["num_elbo_draws"]
        + paths * settings["num_draws"]
    )
    return z, {
        # pathfinder_starts resamples the pool with replacement: chains can share a start.
        "distinct_starts": int(len(np.unique(np.asarray(z), axis=0))),
        "pathfinder_grads_only": grads,
        "pathfinder_density_evals": density,
        "pathfinder_density_evals_on_used_iterations": density_used,
        "pathfinder_grads": grads + density,
        "pathfinder_iterations": [int(i) for i in np.asarray(iterations)],
        "pathfinder_iterations_unbatched": unbatched_iterations,
        "pathfinder_pareto_k": float(k_hat),
        "pathfinder_seconds": seconds,
    }


# -- accuracy ---------------------------------------------------------------------------------------

EULER_GAMMA = 0.5772156649015329


def coordinates(name, draws):
    """``(chains, draws, k)`` test coordinates and their names from constrained draws."""
    d = {k: np.asarray(v, np.float64) for k, v in draws.items()}
    c, n = d["mu" if "mu" in d else "v"].shape[:2]
    if name.startswith("eight_schools"):
        parts = [("mu", d["mu"][..., None]), ("log_tau", np.log(d["tau"])[..., None])]
        parts += [(f"theta[{j}]", d["theta"][..., j : j + 1]) for j in range(d["theta"].shape[-1])]
    elif name == "stochastic_volatility":
        phi = d["phi"]
        parts = [
            ("mu", d["mu"][..., None]),
            ("logit_phi", np.log1p(phi)[..., None] - np.log1p(-phi)[..., None]),
            ("log_sigma", np.log(d["sigma"])[..., None]),
        ]
        parts += [(f"h_std[{j}]", d["h_std"][..., j : j + 1]) for j in range(d["h_std"].shape[-1])]
    elif name == "funnel":
        x = d["x"].reshape(c, n, -1)
        parts = [("v", d["v"][..., None])]
        parts += [(f"log|x[{j}]|", np.log(np.abs(x[..., j : j + 1]))) for j in range(x.shape[-1])]
    else:
        raise KeyError(name)
    return np.concatenate([p for _, p in parts], axis=-1), [label for label, _ in parts]


def reference(name, settings):
    """Reference means and sds of the test coordinates, with how they were obtained."""
    if name == "funnel":
        k = pi.models.get("funnel").compile().dim
        mean = np.array([0.0] + [-(EULER_GAMMA + np.log(2.0)) / 2.0] * (k - 1))
        sd = np.array([3.0] + [np.sqrt(9.0 / 4.0 + np.pi**2 / 8.0)] * (k - 1))
        return mean, sd, {"source": "exact"}
    source = "eight_schools" if name.startswith("eight_schools") else name
    target = pi.models.get(source).compile()
    rest = {k: v for k, v in settings.items() if k != "num_warmup"}
    post, counts, seconds = run_mcmc(target, 12345, None, settings["num_warmup"], **rest)
    x, _ = coordinates(name, post.draws)
    rhat, ess = chain_stats(x)
    info = {
        "source": f"pi.mcmc NUTS on '{source}'",
        **settings,
        "max_r_hat": float(rhat.max()),
        "min_ess_bulk": float(ess.min()),
        "divergences": int(np.sum(post.diagnostics["num_divergent"])),
        "seconds": seconds,
        # Monte Carlo error of the reference in the units of the errors below:
        "max_mean_mcse_in_sd": float(np.max(1.0 / np.sqrt(ess))),
    }
    return x.mean((0, 1)), x.std((0, 1)), info


def chain_stats(x):
    az = import_arviz()
    ds = az.convert_to_dataset({"x": x})
    rhat = np.asarray(az.rhat(ds)["x"].values)
    ess = np.asarray(az.ess(ds)["x"].values)
    return rhat, ess


def accuracy(name, post, ref_mean, ref_sd):
    x, labels = coordinates(name, post.draws)
    mean_err = np.abs(x.mean((0, 1)) - ref_mean) / ref_sd
    sd_err = np.abs(x.std((0, 1)) / ref_sd - 1.0)
    rhat, ess = chain_stats(x)
    return {
        "mean_error": float(mean_err.max()),
        "mean_error_at": labels[int(mean_err.argmax())],
        "sd_error": float(sd_err.max()),
        "sd_error_at": labels[int(sd_err.argmax())],
        "max_r_hat": float(np.nanmax(rhat)),
        "min_ess_bulk": float(np.nanmin(ess)),
        "divergences": int(np.sum(post.diagnostics["num_divergent"])),
    }


# -- the ladder -------------------------------------------------------------------------------------


def ladder(name, ladder_values, seeds, ref_settings):
    example = pi.models.get(name)
    target = example.compile()
    ref_mean, ref_sd, ref_info = reference(name, ref_settings)
    print(f"{name}: reference {ref_info}", flush=True)
    rows, pathfinder_rows, identical = [], {}, None
    for seed in seeds:
        z, cost = pathfinder_cost(target, name, seed, RUN["num_chains"])
        pathfinder_rows[seed] = cost
        print(f"{name} seed {seed}: pathfinder {cost}", flush=True)
        for num_warmup in ladder_values:
            for init in INITS:
                # The Pathfinder starts pi.mcmc(init="pathfinder") would draw (the same key and
                # call), computed once per seed instead of once per rung; checked below.
                post, counts, seconds = run_mcmc(
                    target, seed, z if init == "pathfinder" else None, num_warmup, **RUN
                )
                row = {
                    "model": name,
                    "init": init,
                    "num_warmup": num_warmup,
                    "seed": seed,
                    **counts,
                    "pathfinder_grads": cost["pathfinder_grads"] if init == "pathfinder" else 0,
                    "pathfinder_grads_only": (
                        cost["pathfinder_grads_only"] if init == "pathfinder" else 0
                    ),
                    **accuracy(name, post, ref_mean, ref_sd),
                    "seconds": seconds,
                    "warnings": [w.split(":")[0] for w in post.diagnostics["warnings"]],
                }
                rows.append(row)
                if init == "pathfinder" and identical is None:
                    # pi.mcmc(init="pathfinder") itself, once: the same draws?
                    direct, _, _ = run_mcmc(target, seed, "pathfinder", num_warmup, **RUN)
                    identical = all(
                        np.array_equal(np.asarray(direct.draws[k]), np.asarray(post.draws[k]))
                        for k in target.latent_sites
                    )
                    print(f"{name}: init='pathfinder' draws identical: {identical}", flush=True)
                print(
                    f"{name:24s} {init:10s} w={num_warmup:5d} s={seed} "
                    f"warm-up grads {row['warmup_grads']:8d} (+PF {row['pathfinder_grads']:6d})  "
                    f"mean err {row['mean_error']:.3f} ({row['mean_error_at']})  "
                    f"sd err {row['sd_error']:.3f} ({row['sd_error_at']})  "
                    f"R-hat {row['max_r_hat']:.3f}  div {row['divergences']}  "
                    f"restarted {row['restarted_chains']}  {seconds:.1f}s",
                    flush=True,
                )
    return {
        "dim": target.dim,
        "reference": {**ref_info, "mean": ref_mean.tolist(), "sd": ref_sd.tolist()},
        "pathfinder": {str(s): c for s, c in pathfinder_rows.items()},
        "init_pathfinder_identical_to_precomputed_starts": identical,
        "runs": rows,
    }


# -- summary ----------------------------------------------------------------------------------------


MEDIAN_KEYS = (
    "warmup_grads",
    "pathfinder_grads",
    "pathfinder_grads_only",
    "sampling_grads",
    "mean_error",
    "sd_error",
    "max_r_hat",
    "min_ess_bulk",
    "divergences",
    "restarted_chains",
)


def medians(rows, ladder_values, seeds):
    """``{init: [{num_warmup, median of each MEDIAN_KEYS over seeds}]}``; ``seeds`` may repeat
    (a bootstrap resample)."""
    at = {(r["init"], r["num_warmup"], r["seed"]): r for r in rows}
    return {
        init: [
            {
                "num_warmup": w,
                **{k: float(np.median([at[init, w, s][k] for s in seeds])) for k in MEDIAN_KEYS},
            }
            for w in ladder_values
        ]
        for init in INITS
    }


def needed(table, bar, rule="from_on"):
    """Per start rule, the smallest rung from which on both median errors are within ``bar``
    (None if not even the top rung is), with its gradients; and the ratios uniform / pathfinder.
    ``rule="first"``: the first rung within the bar, whatever the larger rungs do (a looser
    reading, reported to show how much the answer hangs on the rule)."""
    out = {}
    for init in INITS:
        ok = [
            r["mean_error"] <= bar["mean_error"] and r["sd_error"] <= bar["sd_error"]
            for r in table[init]
        ]
        if rule == "first":
            first = next((i for i in range(len(ok)) if ok[i]), None)
        else:
            first = next((i for i in range(len(ok)) if all(ok[i:])), None)
        if first is None:
            out[init] = None
            continue
        r = table[init][first]
        out[init] = {
            "num_warmup": r["num_warmup"],
            "warmup_grads": r["warmup_grads"],
            "total_grads": r["warmup_grads"] + r["pathfinder_grads"],
            "total_grads_pathfinder_grads_only": r["warmup_grads"] + r["pathfinder_grads_only"],
        }
    u, p = out["uniform"], out["pathfinder"]
    if u and p:
        out["ratio"] = u["total_grads"] / p["total_grads"]
        out["ratio_pathfinder_grads_only"] = (
            u["total_grads"] / p["total_grads_pathfinder_grads_only"]
        )
        out["ratio_nuts_warmup_only"] = u["warmup_grads"] / p["warmup_grads"]
    else:  # one of them never gets there: Pathfinder infinitely better or worse
        ratio = None if not (u or p) else (np.inf if p else 0.0)
        out["ratio"] = out["ratio_pathfinder_grads_only"] = out["ratio_nuts_warmup_only"] = ratio
    out["goal_met"] = None if out["ratio"] is None else bool(out["ratio"] >= 2.0)
    return out


def summarise(result, ladder_values, seeds, resamples=2000):
    rows = result["runs"]
    table = medians(rows, ladder_values, seeds)
    # The pooled top-rung medians, from the per-seed values of both start rules.
    top = max(ladder_values)
    pooled = {
        k: float(np.median([r[k] for r in rows if r["num_warmup"] == top])) * SLACK
        for k in ("mean_error", "sd_error")
    }
    bars = {"matched": pooled, "fixed": dict(FIXED_BAR)}
    found = {name: needed(table, bar) for name, bar in bars.items()}
    found_first = {name: needed(table, bar, rule="first") for name, bar in bars.items()}
    # Bootstrap over seeds (the bar re-derived in each resample) for the noise in the ratio.
    rng = np.random.default_rng(0)
    boot = {name: [] for name in bars}
    for _ in range(resamples):
        sample = list(rng.choice(seeds, len(seeds)))
        t = medians(rows, ladder_values, sample)
        pooled_b = {
            k: float(
                np.median(
                    [
                        r[k]
                        for s in sample
                        for r in rows
                        if r["num_warmup"] == top and r["seed"] == s
                    ]
                )
            )
            * SLACK
            for k in ("mean_error", "sd_error")
        }
        for name, bar in {"matched": pooled_b, "fixed": dict(FIXED_BAR)}.items():
            boot[name].append(needed(t, bar)["ratio"])
    bootstrap = {}
    for name, ratios in boot.items():
        defined = np.array([r for r in ratios if r is not None], float)
        bootstrap[name] = {
            "resamples": resamples,
            "undefined": int(len(ratios) - len(defined)),
            "p_ratio_at_least_2": float(np.mean(defined >= 2.0)) if len(defined) else None,
            "ratio_quantiles_10_50_90": (
                [float(q) for q in np.quantile(defined, [0.1, 0.5, 0.9], method="inverted_cdf")]
                if len(defined)
                else None
            ),
        }
    return {
        "medians": table,
        "bars": bars,
        "needed": found,
        "bootstrap": bootstrap,
        "needed_first_rung": found_first,
    }


def finite_json(obj):
    """``obj`` with infinite floats written as the strings "inf" / "-inf" (JSON has no inf)."""
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_json(v) for v in obj]
    if isinstance(obj, float) and not np.isfinite(obj):
        return str(obj)
    return obj


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rungs, 2 seeds, short reference")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results" / "pathfinder_init.json")
    )
    args = parser.parse_args()
    ladder_values = QUICK_LADDER if args.quick else LADDER
    seeds = list(range(args.seeds if args.seeds is not None else (2 if args.quick else 10)))
    ref_settings = QUICK_REFERENCE if args.quick else REFERENCE
    started = time.perf_counter()
    results = {}
    for name in args.models.split(","):
        results[name] = ladder(name, ladder_values, seeds, ref_settings)
        results[name]["summary"] = summarise(results[name], ladder_values, seeds)
        print_summary(name, results[name]["summary"])
    write_json(
        args.out,
        finite_json(
            {
                "date": time.strftime("%Y-%m-%d"),
                "machine": f"{platform.processor() or platform.machine()}, {jax.devices()[0]}",
                "quick": bool(args.quick),
                "config": {
                    "run": RUN,
                    "kernel": "nuts (pi.mcmc defaults: target_accept 0.8, diagonal mass, restart=True)",
                    "inits": {
                        "uniform": "pi.mcmc's default (init=None)",
                        "pathfinder": "init='pathfinder'",
                    },
                    "ladder": list(ladder_values),
                    "seeds": seeds,
                    "reference": ref_settings,
                    "pathfinder": PATHFINDER,
                    "bars": {
                        "matched": f"median errors within {SLACK} x the median errors of both "
                        f"start rules' runs at num_warmup={max(ladder_values)}",
                        "fixed": FIXED_BAR,
                    },
                    "needed": "smallest rung from which on (every larger rung too) both median "
                    "errors are within the bar",
                    "pathfinder_grads": "exact gradient evaluations of the 4 L-BFGS paths (counted) "
                    "+ 4 x (201 x 25 ELBO + 250 pool) density evaluations, each charged as a gradient",
                },
                "seconds": time.perf_counter() - started,
                "results": results,
            }
        ),
    )
    print(f"written {args.out} ({time.perf_counter() - started:.0f} s)")


def print_summary(name, summary):
    print(f"\n{name}: medians over seeds")
    for init, rows in summary["medians"].items():
        for r in rows:
            print(
                f"  {init:10s} w={r['num_warmup']:5d} warm-up {r['warmup_grads']:9.0f} "
                f"+PF {r['pathfinder_grads']:6.0f}  mean err {r['mean_error']:.3f}  "
                f"sd err {r['sd_error']:.3f}  R-hat {r['max_r_hat']:.3f}  div {r['divergences']:.0f}"
            )
    for bar_name, found in summary["needed"].items():
        print(f"  {bar_name} bar {summary['bars'][bar_name]}: {found}")
        print(f"    bootstrap over seeds: {summary['bootstrap'][bar_name]}")
        print(f"    first rung within the bar: {summary['needed_first_rung'][bar_name]}")
    print(flush=True)


if __name__ == "__main__":
    main()
