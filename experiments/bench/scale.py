"""Every runner's defaults on 500-dimensional sparse-data posteriors (issue 36), against long NUTS.

Models (:mod:`probinfer.models.sparse`): a Rasch item-response model (501 latents, 30,000
answers, 75 per person) and a random-effects logistic regression (507 latents, 500 groups of 40
rows), each compiled with its rows as minibatchable data. The reference is NUTS, 4 chains ×
5,000 draws after 1,000 warm-up (every coordinate's ESS in the thousands). Each runner is then
called with ``key`` and nothing else, in its own process with a wall-clock limit (a run that
does not finish is reported as such, with the limit), and scored by its worst standardised mean
error ``|mean − ref| / ref_sd`` and worst sd error ``|sd / ref_sd − 1|`` over all coordinates.
The issue's bar: 0.3 sd / 35 % for SG-MCMC, 0.25 / 25 % for SMC within 5× NUTS's time.

The 10³ → 10⁶-row data sweep is ``experiments/bench/scale_data.py`` (its own results file).

    python experiments/bench/scale.py [--models item_response,random_effects_logistic]
        [--runners mcmc,sgmcmc,flow_vi,coin_svgd,smc] [--timeout 900]
    python experiments/bench/scale.py --readme    # rewrite the table in docs/benchmarks.md

The benchmarks page's table (docs/benchmarks.md) is ``tables.py``'s ``scale`` of
``results/scale.json`` (``python experiments/bench/tables.py scale``; a test holds them equal).
"""

import argparse
import json
import multiprocessing as mp
import platform
import time
from pathlib import Path

import numpy as np

from probinfer._utils import write_json

RUNNERS = ("mcmc", "sgmcmc", "flow_vi", "coin_svgd", "smc")
MODELS = ("item_response", "random_effects_logistic")


def _moments(post):
    """``{site: (mean, sd)}`` over every draw (weighted when the method weights them)."""
    out = {}
    weights = None if post.log_weights is None else np.exp(np.ravel(post.log_weights))
    for name, value in post.draws.items():
        value = np.asarray(value, np.float64)
        flat = value.reshape(-1, *value.shape[2:]).reshape(value.shape[0] * value.shape[1], -1)
        w = np.full(len(flat), 1 / len(flat)) if weights is None else weights / weights.sum()
        mean = w @ flat
        out[name] = (mean, np.sqrt(w @ (flat - mean) ** 2))
    return out


def _run(model, runner, key, queue):
    import jax

    import probinfer as pi

    target = pi.models.get(model).compile()
    start = time.perf_counter()
    if runner == "reference":
        post = pi.mcmc(target, key=key, num_warmup=1_000, num_draws=5_000, progress=False)
    else:
        post = getattr(pi, runner)(target, key=key, progress=False)
    jax.block_until_ready(jax.tree.leaves(post.draws))
    seconds = time.perf_counter() - start
    moments = {k: (m.tolist(), s.tolist()) for k, (m, s) in _moments(post).items()}
    queue.put({"seconds": seconds, "moments": moments, "health": pi.health.check(post)})


def run(model, runner, key, timeout):
    """One run in a child process: its moments and seconds, or None after ``timeout`` s."""
    queue = mp.get_context("spawn").Queue()
    process = mp.get_context("spawn").Process(target=_run, args=(model, runner, key, queue))
    process.start()
    try:
        result = queue.get(timeout=timeout)
    except Exception:  # queue.Empty: the run did not finish in time
        result = None
    process.terminate()
    process.join()
    return result


def score(result, reference):
    mean_errors, sd_errors = [], []
    for name, (ref_mean, ref_sd) in reference["moments"].items():
        mean, sd = (np.asarray(v) for v in result["moments"][name])
        ref_mean, ref_sd = np.asarray(ref_mean), np.asarray(ref_sd)
        mean_errors.append(np.abs(mean - ref_mean) / ref_sd)
        sd_errors.append(np.abs(sd / ref_sd - 1))
    return float(np.concatenate(mean_errors).max()), float(np.concatenate(sd_errors).max())


def _reference(model):
    """Long NUTS's moments of ``model``, computed once and kept in ``results/`` (a rerun of the
    runners reuses them; delete the file to recompute)."""
    path = Path(__file__).parent / "results" / f"scale_reference_{model}.json"
    if path.exists():
        return json.loads(path.read_text())
    reference = run(model, "reference", 123, 3600)
    print(f"{model}: reference NUTS {reference['seconds']:.0f} s", flush=True)
    write_json(path, reference)
    return reference


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--runners", default=",".join(RUNNERS))
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--key", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "scale.json"))
    parser.add_argument(
        "--readme",
        action="store_true",
        help="only rewrite docs/benchmarks.md's table from results/scale.json (tables.py scale)",
    )
    args = parser.parse_args()
    if args.readme:
        from tables import update  # experiments/bench/tables.py, beside this script

        update(["scale"])
        return
    rows = []
    for model in args.models.split(","):
        reference = _reference(model)
        for runner in args.runners.split(","):
            result = run(model, runner, args.key, args.timeout)
            row = {"model": model, "runner": runner, "key": args.key}
            if result is None:
                row.update(finished=False, limit_s=args.timeout)
                print(f"  {runner:10s} did not finish in {args.timeout:.0f} s", flush=True)
            else:
                mean_error, sd_error = score(result, reference)
                row.update(
                    finished=True,
                    seconds=result["seconds"],
                    worst_mean_error_sd=mean_error,
                    worst_sd_error=sd_error,
                    health=result["health"],
                )
                print(
                    f"  {runner:10s} {mean_error:.2f} sd / {100 * sd_error:.0f} % "
                    f"in {result['seconds']:.0f} s",
                    flush=True,
                )
            rows.append(row)
    # A partial rerun (--runners smc) replaces its own rows and keeps the others, each row dated.
    today = time.strftime("%Y-%m-%d")
    for row in rows:
        row["date"] = today
    fresh = {(row["model"], row["runner"]) for row in rows}
    kept = []
    if Path(args.out).exists():
        old = json.loads(Path(args.out).read_text())
        kept = [
            {"date": old.get("date"), **row}
            for row in old["rows"]
            if (row["model"], row["runner"]) not in fresh
        ]
    write_json(
        args.out,
        {
            "date": today,
            "machine": f"{platform.machine()}, {mp.cpu_count()} cores, CPU",
            "rows": kept + rows,
        },
    )


if __name__ == "__main__":
    main()
