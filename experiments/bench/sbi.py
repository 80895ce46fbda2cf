"""Amortized SBI against the ``sbi`` package (PyTorch): NPE, FMPE, NLE and NRE on the SBI
benchmark's Gaussian linear, two moons and SLCP tasks (``probinfer.models.sbi``), same
simulations, same observations, same reference draws, one process, ONE CPU core.

For each method, simulation budget and task, both libraries train with their defaults on the same
simulations — ours drawn by ``pi.npe``/``nle``/``nre`` (key 0) from the model's prior predictive,
the very draws handed to ``sbi`` as torch tensors, with the model's prior as a torch distribution.
Methods: ours ``pi.npe`` (flow "auto": nsf on the MLP embedding, or sbi's MAF on x, by
validation loss), ``pi.npe(flow="flow_matching")`` (FMPE), ``pi.nle`` (flow "auto") and ``pi.nre`` (NRE-C; posteriors by their default sampler, NUTS,
``.posterior(x, key=)``); sbi's ``NPE`` (NPE-C, maf), ``FMPE``, ``NLE`` (NLE-A, maf) and
``NRE_C`` (posteriors by its default MCMC, vectorised slice sampling with 20 chains).

Per cell (task, budget, method, library): training seconds (wall clock; ours is ``pi.npe``'s
wall clock minus the seconds of the same simulation call timed alone, compilation included —
every cell starts cold), sampling seconds and C2ST (``probinfer.diagnostics.c2st``, as
``experiments/amortized/sbi_tasks.py``) of ``--draws`` posterior draws per observation (seeds
0…, ``*_example(seed)``) against as many reference draws: exact for Gaussian linear, our adaptive
tempered SMC (8,192 particles) for two moons and SLCP, cached in ``results/sbi_references.npz``.
``comparisons`` holds ours/sbi training-time ratios and C2ST differences (ours − sbi).

Run pinned to one core (XLA, torch and BLAS are held to one thread below):

    pip install -e '.[test,sbi-bench]'
    taskset -c 1 python experiments/bench/sbi.py [--budgets 1000,10000] [--observations 5]
        [--methods npe,fmpe,nre,nle] [--tasks gaussian_linear,two_moons,slcp] [--mcmc-draws 5000]

Writes ``experiments/bench/results/sbi.json`` after every cell (``--resume`` skips the cells
already there).
"""

import os
import sys

# This file is named sbi.py: drop its folder from the path so `import sbi` finds the package.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(__file__)]
os.environ["XLA_FLAGS"] = (
    "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1 "
    + os.environ.get("XLA_FLAGS", "")
)
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import warnings  # noqa: E402
from importlib.metadata import version  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import probinfer as pi  # noqa: E402
from probinfer._utils import write_json  # noqa: E402
from probinfer.diagnostics import c2st  # noqa: E402
from probinfer.inference.amortized.npe import _program as npe_program  # noqa: E402
from probinfer.inference.amortized.npe import simulate_training_set  # noqa: E402
from probinfer.inference.amortized.nre import _program as nre_program  # noqa: E402
from probinfer.models import sbi as tasks  # noqa: E402
from probinfer.nn.layout import ObservationLayout  # noqa: E402

torch.set_num_threads(1)
torch.set_num_interop_threads(1)

HERE = Path(__file__).parent
OUT = HERE / "results" / "sbi.json"
REFERENCES = HERE / "results" / "sbi_references.npz"
TASKS = {  # model, x shape, example
    "gaussian_linear": (tasks.gaussian_linear, (10,), tasks.gaussian_linear_example),
    "two_moons": (tasks.two_moons, (2,), tasks.two_moons_example),
    "slcp": (tasks.slcp, (4, 2), tasks.slcp_example),
}
PRIORS = {  # the models' priors: N(0, 0.1 I₁₀), U(−1, 1)², U(−3, 3)⁵
    "gaussian_linear": ("normal", 0.0, float(np.sqrt(0.1)), 10),
    "two_moons": ("uniform", -1.0, 1.0, 2),
    "slcp": ("uniform", -3.0, 3.0, 5),
}
METHODS = ("npe", "fmpe", "nre", "nle")
MCMC_METHODS = ("nle", "nre")
NUM_DRAWS = 5000


class NullTracker:
    """sbi's tracker protocol doing nothing (its default writes TensorBoard logs to ./sbi-logs)."""

    log_dir = None

    def log_metric(self, name, value, step=None):
        pass

    def log_metrics(self, metrics, step=None):
        pass

    def log_params(self, params):
        pass

    def add_figure(self, name, figure, step=None):
        pass

    def flush(self):
        pass


# -- simulations, priors, references -------------------------------------------------------------


def simulations(target, budget):
    """The simulations our estimators train on (key 0): ``(theta (n, d), x (n, x_dim), seconds)``,
    θ constrained, x flat — drawn by the function ``pi.npe``/``nle``/``nre`` call, timed cold."""
    key_sim = jax.random.split(jax.random.PRNGKey(0), 4)[0]
    layout = ObservationLayout.from_target(target, "flat")
    start = time.perf_counter()
    z, x, _ = simulate_training_set(target, layout, key_sim, budget, 10_000)
    seconds = time.perf_counter() - start
    theta = np.asarray(jax.vmap(target.constrain)(jnp.asarray(z))["theta"])
    return theta, np.asarray(x).reshape(len(x), -1), seconds


def torch_prior(task):
    """The task model's prior as a torch distribution for sbi."""
    from sbi.utils import BoxUniform

    kind, a, b, dim = PRIORS[task]
    if kind == "uniform":
        return BoxUniform(low=a * torch.ones(dim), high=b * torch.ones(dim))
    return torch.distributions.Independent(
        torch.distributions.Normal(a * torch.ones(dim), b * torch.ones(dim)), 1
    )


def reference(task, seed, cache):
    """NUM_DRAWS reference draws (n, d) for observation ``seed``: exact (Gaussian linear) or our
    SMC with 8,192 particles (as ``experiments/amortized/sbi_tasks.py``), cached on disk."""
    name = f"{task}_{seed}"
    if name not in cache:
        example = TASKS[task][2](seed)
        if task == "gaussian_linear":
            rng = np.random.default_rng(seed)
            mean, sd = example.exact["theta_mean"], example.exact["theta_sd"]
            cache[name] = mean + sd * rng.normal(size=(NUM_DRAWS, mean.shape[0]))
        else:
            post = pi.smc(example.compile(), key=seed, num_particles=8192, progress=False)
            cache[name] = np.asarray(post.sample(key=seed + 1, n=NUM_DRAWS)["theta"])
        save_npz(REFERENCES, cache)
    return cache[name]


def save_npz(path, arrays):
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


# -- training and sampling -----------------------------------------------------------------------


def train_ours(method, target, budget):
    """Our estimator, trained cold (compiled-program caches cleared) with defaults and key 0."""
    npe_program.cache_clear()
    nre_program.cache_clear()
    run = {
        "npe": pi.npe,
        "fmpe": lambda t, **kw: pi.npe(t, flow="flow_matching", **kw),
        "nle": pi.nle,
        "nre": pi.nre,
    }[method]
    start = time.perf_counter()
    estimator = run(target, key=0, num_simulations=budget, progress=False)
    return estimator, time.perf_counter() - start, int(estimator.diagnostics["num_epochs"])


def sample_ours(method, estimator, x, seed, n):
    """``n`` posterior draws of θ for one observation ``x`` (NLE/NRE: their default sampler)."""
    if method in MCMC_METHODS:
        post = estimator.posterior(jnp.asarray(x), key=seed + 100, n=n)
        return np.asarray(post.sample(key=seed + 101, n=n)["theta"])
    return np.asarray(estimator.sample(seed + 100, {"x": jnp.asarray(x)}, n)["theta"])


def train_sbi(method, task, theta, x):
    """sbi's estimator with its defaults on our simulations; returns its posterior."""
    from sbi.inference import FMPE, NLE, NPE, NRE_C

    cls = {"npe": NPE, "fmpe": FMPE, "nle": NLE, "nre": NRE_C}[method]
    inference = cls(prior=torch_prior(task), show_progress_bars=False, tracker=NullTracker())
    start = time.perf_counter()
    inference.append_simulations(torch.as_tensor(theta), torch.as_tensor(x))
    inference.train()
    seconds = time.perf_counter() - start
    epochs = int(inference._summary["epochs_trained"][-1])
    return inference.build_posterior(), seconds, epochs


def sample_sbi(posterior, x, seed, n):
    torch.manual_seed(seed + 100)
    x = torch.as_tensor(np.asarray(x, np.float32).reshape(1, -1))
    return posterior.sample((n,), x=x, show_progress_bars=False).numpy()


# -- one cell ------------------------------------------------------------------------------------


def run_cell(task, budget, method, library, sims, seeds, num_draws, refs):
    """Train one library's estimator and score its posteriors at every observation."""
    model, shape, make_example = TASKS[task]
    theta, x, sim_seconds = sims
    if library == "probinfer":
        estimator, total, epochs = train_ours(method, pi.compile(model, x=jnp.zeros(shape)), budget)
        train_seconds = total - sim_seconds

        def draw(x_o, seed):
            return sample_ours(method, estimator, x_o, seed, num_draws[0])
    else:
        posterior, train_seconds, epochs = train_sbi(method, task, theta, x)

        def draw(x_o, seed):
            return sample_sbi(posterior, x_o, seed, num_draws[0])

    row = {"task": task, "budget": budget, "method": method, "library": library}
    row |= {"train_seconds": train_seconds, "epochs": epochs, "num_draws": num_draws[0]}
    row["c2st_draws"] = num_draws[1]
    if library == "probinfer":
        row["train_seconds_with_simulation"] = total
    row |= score(task, make_example, draw, seeds, num_draws[1], refs)
    return row


def score(task, make_example, draw, seeds, num_compared, refs):
    """Sampling seconds and C2ST of the first ``num_compared`` draws against as many reference
    draws, per observation and averaged."""
    sample_seconds, scores, dropped = [], [], []
    for seed in seeds:
        x_o = np.asarray(make_example(seed).kwargs["x"])
        start = time.perf_counter()
        draws = np.asarray(draw(x_o, seed), np.float64)
        sample_seconds.append(time.perf_counter() - start)
        finite = np.isfinite(draws).all(1)
        dropped.append(int((~finite).sum()))
        ref = reference(task, seed, refs)[:num_compared]
        scores.append(c2st(ref, draws[finite][:num_compared], key=seed))
    return {
        "sample_seconds": sample_seconds,
        "sample_seconds_mean": float(np.mean(sample_seconds)),
        "c2st": scores,
        "c2st_mean": float(np.mean(scores)),
        "nonfinite_draws_dropped": dropped,
    }


# -- results -------------------------------------------------------------------------------------


def comparisons(cells):
    """ours / sbi training seconds and ours − sbi C2ST for every cell both libraries ran."""
    out = {}
    for name, ours in cells.items():
        peer = cells.get(name.replace("/probinfer", "/sbi"))
        if not name.endswith("/probinfer") or peer is None or "error" in ours or "error" in peer:
            continue
        out[name.removesuffix("/probinfer")] = {
            "train_seconds_ours": ours["train_seconds"],
            "train_seconds_sbi": peer["train_seconds"],
            "train_ratio_ours_over_sbi": ours["train_seconds"] / peer["train_seconds"],
            "c2st_mean_ours": ours["c2st_mean"],
            "c2st_mean_sbi": peer["c2st_mean"],
            "c2st_diff_ours_minus_sbi": ours["c2st_mean"] - peer["c2st_mean"],
        }
    return out


def header(args):
    return {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.processor() or platform.machine()}, {jax.devices()[0]}",
        "cores": "ONE CPU core for both libraries (taskset -c 1; XLA, torch and BLAS one thread)",
        "affinity": sorted(os.sched_getaffinity(0)),
        "versions": {p: version(p) for p in ("probinfer", "jax", "sbi", "torch", "numpyro")},
        "observations": args.observations,
        "draws": NUM_DRAWS,
        "mcmc_draws": args.mcmc_draws,
        "c2st_draws": args.c2st_draws,
        "notes": (
            "Defaults on both sides. ours: npe nsf, fmpe flow_matching, nle auto (nsf or maf by "
            "held-out loss), nre NRE-C K=10, "
            "NLE/NRE posteriors by the estimators' default (NUTS, 4 chains, 1000 warm-up); "
            "sbi: NPE (NPE-C, maf), FMPE "
            "(mlp), NLE (NLE-A, maf), NRE_C (resnet, K=5), NLE/NRE posteriors by sbi's default "
            "MCMC (slice_np_vectorized, 20 chains, 200 warm-up). Ours' training seconds exclude "
            "the simulation call and include JAX compilation (cold start each cell)."
        ),
    }


def write(args, cells):
    write_json(
        OUT, header(args) | {"cells": cells, "comparisons": comparisons(cells)}
    )  # atomic: a temporary file, then os.replace


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--budgets", default="1000,10000")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--libraries", default="probinfer,sbi")
    parser.add_argument("--observations", type=int, default=5)
    parser.add_argument("--mcmc-draws", type=int, default=NUM_DRAWS, help="NLE/NRE draws")
    parser.add_argument("--c2st-draws", type=int, default=NUM_DRAWS, help="draws per side")
    parser.add_argument("--resume", action="store_true", help="skip cells already written")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    old = json.loads(OUT.read_text()) if OUT.exists() else {}
    cells = old.get("cells", {})
    refs = dict(np.load(REFERENCES)) if REFERENCES.exists() else {}
    sims = {}
    seeds = range(args.observations)
    for budget in map(int, args.budgets.split(",")):
        for method in args.methods.split(","):
            draws = args.mcmc_draws if method in MCMC_METHODS else NUM_DRAWS
            draws = (draws, min(draws, args.c2st_draws))  # drawn, compared by C2ST
            for task in args.tasks.split(","):
                if (task, budget) not in sims:
                    model, shape, _ = TASKS[task]
                    sims[task, budget] = simulations(pi.compile(model, x=jnp.zeros(shape)), budget)
                for library in args.libraries.split(","):
                    name = f"{task}/{budget}/{method}/{library}"
                    if args.resume and finished(cells.get(name, {}), len(seeds)):
                        continue
                    cells[name] = safe_cell(task, budget, method, library, sims, seeds, draws, refs)
                    write(args, cells)


def finished(cell, num_observations):
    return "error" not in cell and len(cell.get("c2st", ())) == num_observations


def safe_cell(task, budget, method, library, sims, seeds, draws, refs):
    """:func:`run_cell`, an exception recorded in the cell instead of ending the run."""
    start = time.perf_counter()
    try:
        row = run_cell(task, budget, method, library, sims[task, budget], seeds, draws, refs)
    except Exception as error:  # a failed cell is a result, not the end of the run
        traceback.print_exc()
        row = {"task": task, "budget": budget, "method": method, "library": library}
        row["error"] = f"{type(error).__name__}: {error}"
    row["cell_seconds"] = time.perf_counter() - start
    row["probinfer_commit"] = _commit()  # cells of several runs share the file
    summary = {k: row.get(k) for k in ("train_seconds", "c2st_mean", "error") if k in row}
    print(f"{task} {budget} {method} {library}: {summary} ({row['cell_seconds']:.0f}s)", flush=True)
    return row


def _commit():
    import subprocess

    try:
        return subprocess.run(
            ["git", "-C", str(Path(__file__).parent), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None


if __name__ == "__main__":
    main()
