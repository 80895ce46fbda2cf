"""Every table of the benchmarks page (docs/benchmarks.md) and the README's headline table, rendered
from the results files in ``experiments/bench/results/`` — no number in them is typed by hand.

Each table is a block between ``<!-- table: NAME -->`` and ``<!-- end table: NAME -->``; :data:`TABLES`
maps NAME to its results files, its renderer and the page it lives on. A block is a caption line
(each results file with its date and machine) and the markdown table.

    python experiments/bench/tables.py               # rewrite every block from the results
    python experiments/bench/tables.py scale smc     # only these blocks
    python experiments/bench/tables.py --check       # exit 1 if any block differs from its results

After a benchmark script writes new results, run this and commit both; a test
(tests/test_bench_tables.py) holds every block equal to its renderer's output. Standard library
only, so the test needs neither JAX nor the peers.
"""

import argparse
import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).parent
RESULTS = HERE / "results"
ROOT = HERE.parents[1]
PAGE = "docs/benchmarks.md"
README = "README.md"


# ---------------------------------------------------------------------------------- formatting


def _sig(x, digits=2):
    """``x`` to ``digits`` significant figures, but never rounding away integer digits (1,315)."""
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    whole = math.floor(math.log10(abs(x))) + 1
    return f"{x:,.{max(digits - whole, 0)}f}".replace("-", "−")


def _fixed(x, decimals):
    return f"{x:,.{decimals}f}".replace("-", "−")


def _pct(x):
    """A fraction as a percentage: one decimal under 10 %, none above."""
    return f"{100 * x:.1f}" if 100 * x < 9.95 else f"{100 * x:.0f}"


def _span(values, fmt):
    """``lo–hi`` of ``values`` through ``fmt``, one number when both ends print the same."""
    lo, hi = fmt(min(values)), fmt(max(values))
    return lo if lo == hi else f"{lo}–{hi}"


def _seconds(x):
    return _fixed(x, 1) if x >= 1 else _sig(x)


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _machine(data):
    """The machine a results file names: its ``machine`` (or ``platform``) and its device."""
    meta = data.get("meta", {})
    parts = []
    for key in ("machine", "platform"):
        value = data.get(key) or meta.get(key)
        if value and value != "?":
            parts.append(value)
            break
    for key in ("backend", "device", "devices"):
        if data.get(key):
            parts.append(data[key])
            break
    return ", ".join(parts) or "machine not recorded"


def date(data):
    """The date a results file was written (its ``date``; the scale sweeps also date each row)."""
    return data["date"]


# ------------------------------------------------------------------------------------- renderers

_SCALE_LABELS = {
    "mcmc": "`mcmc` (NUTS)",
    "sgmcmc": "`sgmcmc`",
    "flow_vi": "`flow_vi`",
    "coin_svgd": "`coin_svgd`",
    "smc": "`smc`",
}
_SCALE_TITLES = {
    "item_response": "item response (501 dims, 30,000 answers)",
    "random_effects_logistic": "random effects (507 dims, 20,000 rows)",
}


def _scale_cell(row, nuts_seconds):
    if not row.get("finished"):
        return f"**not finished in {row['limit_s']:.0f} s** ({row['date']})"
    mean, sd = row["worst_mean_error_sd"], row["worst_sd_error"]
    accuracy = f"{mean:.2f} sd / {100 * sd:.0f} %" if mean < 10 else f"**fails**: {mean:,.0f} sd"
    ratio = "" if row["runner"] == "mcmc" else f" ({row['seconds'] / nuts_seconds:.1f}× NUTS)"
    warned = " (warned)" if row.get("health") and row["runner"] != "mcmc" else ""
    return f"{accuracy}{warned}, {row['seconds']:.0f} s{ratio} ({row['date']})"


def scale(results):
    """``scale.py``: per runner and model the worst errors against long NUTS, seconds and the ratio
    to NUTS's seconds in the same results, each cell dated."""
    rows = {(r["model"], r["runner"]): r for r in results["rows"]}
    models = [m for m in _SCALE_TITLES if any(key[0] == m for key in rows)]
    body = []
    for runner, label in _SCALE_LABELS.items():
        cells = []
        for model in models:
            row = rows.get((model, runner))
            nuts = rows.get((model, "mcmc"), {}).get("seconds", float("nan"))
            cells.append("—" if row is None else _scale_cell(row, nuts))
        body.append([label, *cells])
    return _table(["runner", *(_SCALE_TITLES[m] for m in models)], body)


_SWEEP_LABELS = {
    "sgmcmc": "`sgmcmc` (2,000 steps)",
    "mcmc": "`mcmc` (NUTS, 200 transitions)",
    "mcmc_blocked": "`mcmc` on `block_data(10_000)`",
    "smc": "`smc` (200 particles)",
}


def scale_data(results):
    """``scale_data.py``: per runner and data size, compile and run seconds and peak memory, with the
    compile ratio and the runner's date."""
    sizes = results["sizes"]
    body = []
    for runner, rows in results["results"].items():
        cells = []
        for n in sizes:
            row = rows[str(n)]
            cell = f"compile {row['compile_s']:.1f} s, run {row['run_s']:.1f} s"
            if "peak_rss_mb" in row:
                cell += f", {row['peak_rss_mb']:,.0f} MB"
            if "loop_ms_per_step" in row:
                cell += f", {row['loop_ms_per_step']:.2f} ms/step"
            if "num_temperatures" in row:
                cell += f", {row['num_temperatures']} temperatures ({row['reference']})"
            cells.append(cell)
        ratio = f"{rows['compile_ratio']:.2f} ({rows.get('date', results['date'])})"
        body.append([_SWEEP_LABELS.get(runner, runner), *cells, ratio])
    header = ["runner", *(f"N = {n:,}" for n in sizes), f"compile at {sizes[-1]:,} / {sizes[0]:,}"]
    return _table(header, body)


def conditioned(results):
    """``conditioned.py``: seconds per data set after the first, a freshly compiled Target against
    ``target.condition``."""
    labels = {
        "sgmcmc": "SG-MCMC (2,000 steps)",
        "mcmc": "NUTS (300 + 300)",
        "smc": "SMC (512 particles)",
    }
    body = []
    for runner, r in results["results"].items():
        fresh, shared = r["after_the_first_fresh"], r["after_the_first_condition"]
        body.append(
            [
                labels.get(runner, runner),
                f"{_seconds(fresh)} s",
                f"{_seconds(shared)} s",
                f"{fresh / shared:.0f}×",
                f"{r['max_abs_difference_of_means']:g}",
            ]
        )
    header = [
        "runner",
        "fresh `Target`, s per data set",
        "`target.condition`, s per data set",
        "ratio",
        "largest difference of posterior means",
    ]
    return _table(header, body)


def toolkit(results):
    """``toolkit.py``: the tree before the trainer against today's, each a range over the repeats."""
    labels = {
        "flow_vi_steps_per_s": ("`flow_vi` (NSF, 31-D regression), steps/s", "rate"),
        "flow_vi_fixed_s": ("`flow_vi`, fixed cost per call, s", "s"),
        "npe_train_s": ("`npe` (Gaussian linear, 2,000 simulations), second call, s", "s"),
        "pfn_steps_per_s": ("PFN training, steps/s", "rate"),
        "pfn_fixed_s": ("PFN `train`, fixed cost (compilation), s", "s"),
        "dt_steps_per_s": ("DT training, steps/s", "rate"),
        "dt_fixed_s": ("DT `train`, fixed cost (compilation), s", "s"),
    }
    formats = {"rate": lambda x: _fixed(x, 0), "s": _seconds}
    body = []
    for key, summary in results["summary"].items():
        label, kind = labels.get(key, (key, "s"))
        fmt = formats[kind]
        body.append([label, _span(summary["old"], fmt), _span(summary["new"], fmt)])
    loss = results["npe_final_validation_loss"]
    body.append(
        [
            "`npe` final validation loss, nats",
            _span(loss["old"], lambda x: _fixed(x, 3)),
            _span(loss["new"], lambda x: _fixed(x, 3)),
        ]
    )
    versions = results["versions"]
    header = [
        "measure",
        f"before ({results['old_commit']}, {versions['old']})",
        f"now ({versions['new']})",
    ]
    return _table(header, body)


def tarp(*runs):
    """``tarp.py`` (CPU, then GPU): package time / probinfer time, warm, with and without bootstrap,
    from NumPy input and from arrays already on the device."""
    body = []
    for r in runs:
        where = f"{r['backend'].upper()} ({r['date']})"
        body.append(
            [
                where,
                "NumPy arrays (as the package)",
                f"{_sig(r['speedup_no_bootstrap'])}× ({_sig(r['probinfer_no_bootstrap_s'])} s "
                f"vs {_sig(r['package_no_bootstrap_s'])} s)",
                f"{_sig(r['speedup_bootstrap'])}× ({_sig(r['probinfer_bootstrap_s'])} s "
                f"vs {_sig(r['package_bootstrap_s'])} s)",
            ]
        )
        body.append(
            [
                where,
                "arrays already on the device",
                f"{_sig(r['speedup_device_input_no_bootstrap'])}× "
                f"({_sig(r['probinfer_device_input_no_bootstrap_s'])} s)",
                f"{_sig(r['speedup_device_input_bootstrap'])}× "
                f"({_sig(r['probinfer_device_input_bootstrap_s'])} s)",
            ]
        )
    replicates = runs[0]["size"]["bootstrap"]
    return _table(["machine", "input", "no bootstrap", f"{replicates} bootstrap replicates"], body)


def smc(*runs):
    """``smc.py`` (the CPU run, then the GPU runs): wall time, temperatures and log Z against
    BlackJAX, and the time over the bare-gradient floor."""
    body = []
    for r in runs:
        ours, theirs = r["probinfer"], r["blackjax"]
        cells = [
            f"{_sig(side['seconds'])} s, {side['temperatures']} temperatures "
            f"({_sig(side['seconds_per_temperature'])} s each)"
            for side in (ours, theirs)
        ]
        body.append(
            [
                f"{r['backend'].upper()}, {r['particles']:,} particles ({r['date']})",
                *cells,
                f"{r['ratio_wall_probinfer_over_blackjax']:.2f}",
                f"{r['ratio_per_temperature_probinfer_over_blackjax']:.2f}",
                f"{r['ratio_probinfer_over_floor']:.2f}",
                f"{_fixed(ours['log_z'], 2)} / {_fixed(theirs['log_z'], 2)}",
            ]
        )
    header = [
        "machine",
        "probinfer",
        "BlackJAX",
        "wall time ratio (goal ≤ 0.9)",
        "per temperature ratio",
        "time / gradient floor (goal ≤ 1.3)",
        "log Z, ours / BlackJAX",
    ]
    return _table(header, body)


def smc_equal_accuracy(results):
    """``smc.py``'s ``equal_accuracy``: RMSE of log Z and seconds per run, per particle count."""
    curves = results["equal_accuracy"]["curves"]
    particles = [point["particles"] for point in curves["probinfer"]]
    body = []
    for side, label in (("probinfer", "probinfer"), ("blackjax", "BlackJAX")):
        points = {p["particles"]: p for p in curves[side]}
        cells = [f"{points[n]['rmse']:.3f} / {points[n]['seconds']:.3f}" for n in particles]
        body.append([f"{label}: RMSE of log Z / seconds", *cells])
    return _table(["particles", *(f"{n:,}" for n in particles)], body)


def sgmcmc(results):
    """``sgmcmc.py``: gradient evaluations per second against BlackJAX and SGMCMCJax, and the time
    over the bare gradient loop (with and without the Langevin noise)."""
    rates, body = results["rates"], []
    for kernel, r in results["ratios"].items():
        cells = [
            f"{rates[f'{lib} {kernel}']['steps_per_s']:,.0f} /s"
            for lib in ("probinfer", "blackjax", "sgmcmcjax")
        ]
        body.append(
            [
                kernel.upper(),
                *cells,
                f"{r['vs_blackjax']:.2f}×",
                f"{r['vs_sgmcmcjax']:.2f}×",
                f"{r['time_over_floor']:.2f}",
                f"{r['time_over_floor_with_noise']:.2f}",
            ]
        )
    header = [
        "kernel",
        "probinfer",
        "BlackJAX",
        "SGMCMCJax",
        "vs BlackJAX (goal ≥ 1)",
        "vs SGMCMCJax",
        "time / floor (goal ≤ 1.2)",
        "time / floor with noise",
    ]
    return _table(header, body)


def coin(results):
    """``coin.py``: iterations per second and our time per iteration over BlackJAX's."""
    names = {"correlated_gaussian_10d": "correlated Gaussian", "banana_1000": "banana"}
    body = []
    for r in results["rows"]:
        rate = r["iterations_per_s"]
        body.append(
            [
                f"{names.get(r['target'], r['target'])} ({r['dim']}-D)",
                f"{r['num_particles']:,}",
                *(
                    f"{rate[k]:,.0f} it/s"
                    for k in ("blackjax_svgd", "probinfer_svgd", "probinfer_coin_svgd")
                ),
                f"{r['ratio_svgd']:.2f} / {r['ratio_coin_svgd']:.2f}",
            ]
        )
    header = [
        "target",
        "particles",
        "BlackJAX",
        "our SVGD",
        "our Coin SVGD",
        "ratio (SVGD / Coin SVGD)",
    ]
    return _table(header, body)


def _best(row, peer, suffix=""):
    """The peer's run at its better learning rate (smaller worst mean error) and that rate."""
    runs = {
        key[len(f"numpyro_{peer}_lr_") :].removesuffix(suffix): run
        for key, run in row.items()
        if key.startswith(f"numpyro_{peer}_lr_") and key.endswith(suffix)
        if suffix or not key.endswith("_equal_time")
    }
    lr = min(runs, key=lambda k: runs[k]["worst_mean_error_in_sd"])
    return lr, runs[lr]


def _errors(run):
    return f"{run['worst_mean_error_in_sd']:.3f} / {_pct(run['worst_sd_relative_error'])} %"


def flows(results):
    """``flows.py``: worst mean and sd errors against long NUTS, ours against NumPyro's IAF and BNAF
    at their better learning rate, at equal steps and at equal time."""
    body = []
    for target, row in results["rows"].items():
        ours = row["probinfer_nsf"]
        cells = [
            f"{_errors(ours)} / {ours['pareto_k']:.2f} / {ours['steps_per_s']:,.0f}",
        ]
        iaf_lr, iaf = _best(row, "iaf")
        cells.append(f"{_errors(iaf)} (lr {iaf_lr}; {iaf['steps_per_s']:,.0f}/s)")
        lr, bnaf = _best(row, "bnaf")
        cells.append(f"{_errors(bnaf)} (lr {lr})")
        for peer in ("iaf", "bnaf"):
            lr, run = _best(row, peer, "_equal_time")
            cells.append(f"{_errors(run)} (lr {lr}, {run['steps'] / 1000:.0f}k steps)")
        cells.append(_sig(ours["steps_per_s"] / iaf["steps_per_s"]))
        body.append([target, *cells])
    steps = f"{results['steps']:,}"
    header = [
        "target",
        "ours (nsf): mean / sd / k̂ / steps/s",
        f"IAF, {steps} steps",
        f"BNAF, {steps} steps",
        "IAF, equal time",
        "BNAF, equal time",
        "steps/s ratio vs IAF",
    ]
    return _table(header, body)


def nuts(results):
    """``nuts.py``: smallest bulk ESS per second, ours against NumPyro's ``MCMC``."""
    labels = {
        "eight_schools": "eight schools (non-centred)",
        "logistic_regression": "breast-cancer logistic regression",
    }
    body = []
    for model, label in labels.items():
        r = results[model]
        cells = [
            f"{r[side]['ess_per_second']:,.0f} ({_sig(r[side]['seconds'])} s)"
            for side in ("probinfer", "numpyro")
        ]
        body.append([label, *cells, f"{r['ratio_ess_per_second']:.1f}×"])
    header = ["model", "probinfer: ESS/s (seconds)", "NumPyro: ESS/s (seconds)", "ratio (goal ≥ 1)"]
    return _table(header, body)


_TASKS = {"gaussian_linear": "Gaussian linear", "two_moons": "two moons"}
_DIMS = {"gaussian_linear": 10, "two_moons": 2}


def amortized(results):
    """``amortized.py``: seconds for every data set, NPE against NUTS and SMC run per data set."""
    body = []
    for task, r in results["tasks"].items():
        body.append(
            [
                f"{_TASKS.get(task, task)} ({_DIMS.get(task, '?')}-D)",
                f"{_sig(r['npe_seconds'])} s (+{_sig(r['npe_train_seconds'])} s)",
                f"{_sig(r['nuts_seconds'])} s ({r['nuts_blocks_timed']} blocks timed)",
                f"{_sig(r['smc_seconds'])} s ({r['smc_blocks_timed']} blocks timed)",
                f"{_sig(r['nuts_over_npe'])}× ({_sig(r['nuts_over_npe_with_training'])}×)",
                f"{_sig(r['smc_over_npe'])}× ({_sig(r['smc_over_npe_with_training'])}×)",
            ]
        )
    header = [
        "task",
        "NPE sampling (+ training)",
        "NUTS",
        "SMC",
        "NUTS / NPE (with training)",
        "SMC / NPE (with training)",
    ]
    return _table(header, body)


_SBI_METHODS = ("npe", "fmpe", "nle", "nre")


def _sbi_cells(results):
    """``(task, budget, method, comparison)`` in the page's order: budget, method, task."""
    cells = [(*key.split("/"), c) for key, c in results["comparisons"].items()]
    tasks = list(dict.fromkeys(task for task, *_ in cells))
    return sorted(
        ((task, int(budget), method, c) for task, budget, method, c in cells),
        key=lambda x: (x[1], _SBI_METHODS.index(x[2]), tasks.index(x[0])),
    )


def sbi(results):
    """``sbi.py``: C2ST and training seconds, ours against sbi's, per task, budget and method."""
    body = [
        [
            task.replace("_", " "),
            f"{budget:,}",
            method.upper(),
            f"{c['c2st_mean_ours']:.3f}",
            f"{c['c2st_mean_sbi']:.3f}",
            f"{c['train_seconds_ours']:.0f}",
            f"{c['train_seconds_sbi']:.0f}",
            f"{c['train_ratio_ours_over_sbi']:.1f}",
        ]
        for task, budget, method, c in _sbi_cells(results)
    ]
    header = [
        "task",
        "simulations",
        "method",
        "C2ST ours",
        "C2ST sbi",
        "training s ours",
        "training s sbi",
        "ratio",
    ]
    return _table(header, body)


_ARCH_VARIANTS = {  # npe_architecture.py's variants, in the table's column order
    "defaults": "defaults",
    "maf": "MAF",
    "no-embedding": "no embedding",
    "maf+no-embedding": "MAF, no embedding",
    "tanh": "tanh",
    "maf+no-embedding+tanh": "MAF, no embedding, tanh",
    "sbi": "sbi 0.27",
}


def npe_architecture(results):
    """``npe_architecture.py``: NPE variants' held-out −log q(θ | x) (Gaussian linear: the expected
    KL itself) per task and budget; ± one standard error."""
    cells = {k: v for k, v in results.items() if isinstance(v, dict)}
    rows = list(dict.fromkeys((c["task"], c["budget"]) for c in cells.values()))
    used = [v for v in _ARCH_VARIANTS if any(c["variant"] == v for c in cells.values())]

    def cell(task, budget, variant):
        c = cells.get(f"{task}/{budget}/{variant}")
        if c is None:
            return "—"
        value = c["kl"] if "kl" in c else c["nll"]
        return f"{_fixed(value, 2)} ± {_fixed(c['nll_se'], 2)}"

    body = [
        [
            task.replace("_", " ") + (" (KL)" if task == "gaussian_linear" else ""),
            f"{budget:,}",
            *(cell(task, budget, v) for v in used),
        ]
        for task, budget in rows
    ]
    return _table(["task", "simulations", *(_ARCH_VARIANTS[v] for v in used)], body)


def pfn(results):
    """``pfn.py``: the GP PFN against the exact GP, the BNN PFN against NUTS (reference and the
    cheapest budget at matched NLL) and NumPyro's SVI."""
    gp, bnn = results["gp"], results["bnn"]
    exact_over_pfn = gp["exact_gp_predictions_per_second"] / gp["pfn_predictions_per_second"]
    ms = f"{1000 * bnn['pfn_seconds_per_dataset']:.2f} ms"
    pfn_nll = _fixed(bnn["pfn_nll"], 3)

    def nuts(budget, reference=False):
        chains = f"{budget['chains']} chain{'s' if budget['chains'] > 1 else ''}"
        size = f"{chains} × ({budget['warmup']} + {budget['draws_per_chain']})"
        name = f"reference ({size}, vmapped)" if reference else size
        return f"NUTS, {name}: {_sig(budget['seconds_per_dataset'], 3)} s"

    def nll(budget):
        gap = f"gap {-budget['nll_minus_pfn']:.3f} ± {budget['nll_minus_pfn_se']:.3f}"
        return f"{pfn_nll} / {_fixed(budget['nll'], 3)} ({gap})"

    reference, matched = bnn["nuts_budgets"][0], bnn["nuts_matched"]
    bnn_task = (
        f"BNN regression (16 tanh units, our model as `ModelPrior`), {bnn['num_datasets']:,} "
        f"data sets × ({bnn['context']} + {bnn['test']})"
    )
    body = [
        [
            f"GP regression, {gp['num_datasets']:,} data sets × ({gp['context']} context + "
            f"{gp['test']} test), shipped `gp-rbf-1d`",
            f"{gp['pfn_predictions_per_second']:,.0f} predictions/s",
            f"exact GP (Cholesky, vmapped): {gp['exact_gp_predictions_per_second']:,.0f}/s",
            f"{gp['pfn_nll']:.3f} / {gp['exact_gp_nll']:.3f}",
            f"{_sig(1 / exact_over_pfn)}× (exact GP is {exact_over_pfn:.0f}× faster)",
        ],
        [
            bnn_task,
            ms,
            nuts(reference, reference=True),
            nll(reference),
            f"{bnn['nuts_over_pfn']:,.0f}×",
        ],
        [
            "same, **matched NLL**",
            ms,
            nuts(matched),
            nll(matched),
            f"**{bnn['nuts_matched_over_pfn']:.0f}×** (goal: the paper's > 200×)",
        ],
        [
            "same",
            ms,
            "NumPyro SVI (AutoNormal, 2,000 steps, vmapped): "
            f"{1000 * bnn['svi_seconds_per_dataset']:.1f} ms",
            f"{pfn_nll} / {'+' if bnn['svi_nll'] >= 0 else ''}{_fixed(bnn['svi_nll'], 3)}",
            f"{_sig(bnn['svi_over_pfn'], 3)}×",
        ],
    ]
    header = ["task", "PFN", "peer", "NLL PFN / peer", "time per data set, peer / PFN"]
    return _table(header, body)


def headline(nuts, smc, sgmcmc, coin, tarp, pfn, amortized, sbi):
    """The README's headline ratios: one row per benchmark, with its script and result date."""
    sgld, sghmc = sgmcmc["ratios"]["sgld"], sgmcmc["ratios"]["sghmc"]
    coin_ratios = [r[k] for r in coin["rows"] for k in ("ratio_svgd", "ratio_coin_svgd")]
    tasks = amortized["tasks"]
    at = {b: [c for t, n, m, c in _sbi_cells(sbi) if n == b] for b in (1000, 10000)}

    def sbi_summary(cells):
        # C2ST differences under 0.03 are noise (the page's caption): within that or below counts.
        level = sum(c["c2st_diff_ours_minus_sbi"] < 0.03 for c in cells)
        time = _span([c["train_ratio_ours_over_sbi"] for c in cells], _sig)
        return f"{level} of {len(cells)} cells", f"{time}×"

    rows = [
        (
            "NUTS (same NumPyro kernel) vs NumPyro's `MCMC`, ESS/s",
            f"{nuts['logistic_regression']['ratio_ess_per_second']:.1f}× (logistic regression), "
            f"{nuts['eight_schools']['ratio_ess_per_second']:.1f}× (eight schools: harness "
            "overhead, not a faster NUTS)",
            "nuts.py",
            nuts,
        ),
        (
            "tempered SMC vs BlackJAX, wall time",
            f"{smc['ratio_wall_probinfer_over_blackjax']:.2f}× (goal ≤ 0.9)",
            "smc.py",
            smc,
        ),
        (
            "SGLD / SGHMC vs BlackJAX, gradients/s",
            f"{sgld['vs_blackjax']:.2f}× / {sghmc['vs_blackjax']:.2f}×",
            "sgmcmc.py",
            sgmcmc,
        ),
        ("SGLD vs sgmcmcjax, gradients/s", f"{sgld['vs_sgmcmcjax']:.2f}×", "sgmcmc.py", sgmcmc),
        (
            "SVGD / Coin SVGD vs BlackJAX's `svgd`, time per iteration",
            f"{_span(coin_ratios, lambda x: _fixed(x, 2))}×",
            "coin.py",
            coin,
        ),
        (
            f"TARP vs the `tarp` package, {tarp['size']['bootstrap']} bootstrap replicates",
            f"{_sig(tarp['speedup_bootstrap'])}× faster",
            "tarp.py",
            tarp,
        ),
        (
            "PFN vs NUTS at matched NLL, time per data set",
            f"{pfn['bnn']['nuts_matched_over_pfn']:.0f}× faster",
            "pfn.py",
            pfn,
        ),
        (
            f"NPE vs NUTS per data set, {amortized['num_datasets']:,} data sets",
            ", ".join(f"{_sig(r['nuts_over_npe'])}× ({_TASKS[task]})" for task, r in tasks.items())
            + "; counting NPE's training: "
            + " and ".join(f"{_sig(r['nuts_over_npe_with_training'])}×" for r in tasks.values()),
            "amortized.py",
            amortized,
        ),
        (
            "NPE, FMPE, NLE, NRE vs sbi 0.27 at 10⁴ simulations (one core each), C2ST / "
            "training time",
            "C2ST at or below sbi's (within 0.03) in {} and {} its training time "
            "(at 10³: {}, {})".format(*sbi_summary(at[10000]), *sbi_summary(at[1000])),
            "sbi.py",
            sbi,
        ),
    ]
    body = [[what, ratio, f"`bench/{script}`, {date(data)}"] for what, ratio, script, data in rows]
    return _table(["what", "ratio", "script, result date"], body)


# ---------------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class Table:
    files: tuple[str, ...]  # in experiments/bench/results/, passed to ``render`` in this order
    render: Callable[..., str]
    page: str = PAGE
    caption: bool = True  # the README's table dates each row instead


TABLES = {
    "scale": Table(("scale.json",), scale),
    "scale_data": Table(("scale_data.json",), scale_data),
    "conditioned": Table(("conditioned.json",), conditioned),
    "toolkit": Table(("toolkit.json",), toolkit),
    "tarp": Table(("tarp.json", "tarp_gpu.json"), tarp),
    "smc": Table(("smc.json", "smc_gpu_1000.json", "smc_gpu_10000.json"), smc),
    "smc_equal_accuracy": Table(("smc.json",), smc_equal_accuracy),
    "sgmcmc": Table(("sgmcmc.json",), sgmcmc),
    "coin": Table(("coin.json",), coin),
    "flows": Table(("flows.json",), flows),
    "nuts": Table(("nuts.json",), nuts),
    "amortized": Table(("amortized.json",), amortized),
    "sbi": Table(("sbi.json",), sbi),
    "npe_architecture": Table(("npe_architecture.json",), npe_architecture),
    "pfn": Table(("pfn.json",), pfn),
    "headline": Table(
        (
            "nuts.json",
            "smc.json",
            "sgmcmc.json",
            "coin.json",
            "tarp.json",
            "pfn.json",
            "amortized.json",
            "sbi.json",
        ),
        headline,
        README,
        caption=False,
    ),
}


def load(name):
    """The results files of table ``name``, parsed, in the registry's order."""
    return [json.loads((RESULTS / file).read_text()) for file in TABLES[name].files]


def block(name):
    """The text between table ``name``'s markers: the caption (each results file's date and
    machine) and the rendered table."""
    table = TABLES[name]
    results = load(name)
    text = table.render(*results)
    if not table.caption:
        return text
    sources = "; ".join(
        f"`results/{file}`, {date(data)}, {_machine(data)}"
        for file, data in zip(table.files, results, strict=True)
    )
    return f"*Generated by `tables.py` from {sources}.*\n\n{text}"


def markers(name):
    return f"<!-- table: {name} -->", f"<!-- end table: {name} -->"


def rewrite(text, name, body=None):
    """``text`` with the block between table ``name``'s markers replaced by ``body`` (default:
    :func:`block`)."""
    start, end = markers(name)
    if text.count(start) != 1 or text.count(end) != 1:
        raise ValueError(f"{TABLES[name].page} needs exactly one {start} … {end}")
    head, rest = text.split(start)
    _, tail = rest.split(end)
    return f"{head}{start}\n{block(name) if body is None else body}\n{end}{tail}"


def update(names=None, check=False):
    """Rewrite the blocks ``names`` (default: all) in their pages; with ``check`` only report which
    differ. Returns the names of the blocks that differed."""
    stale = []
    for name in names or TABLES:
        path = ROOT / TABLES[name].page
        text = path.read_text()
        new = rewrite(text, name)
        if new != text:
            stale.append(name)
            if not check:
                path.write_text(new)
    return stale


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "names", nargs="*", help=f"tables to render (default: all of {list(TABLES)})"
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if a block is out of date")
    args = parser.parse_args()
    unknown = sorted(set(args.names) - set(TABLES))
    if unknown:
        parser.error(f"unknown table(s) {unknown}; known: {list(TABLES)}")
    stale = update(args.names, check=args.check)
    verb = "out of date" if args.check else "rewritten"
    for name in stale:
        print(f"{name}: {verb} ({TABLES[name].page})")
    if args.check and stale:
        sys.exit(1)


if __name__ == "__main__":
    main()
