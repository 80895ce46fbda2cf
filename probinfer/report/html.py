"""``report.html``: one self-contained page (images embedded as data URIs, no scripts, no
external files) showing a run's header, warnings, summary table, diagnostics, calibration verdict
and plots.
"""

import base64
import html
import os

import numpy as np

__all__ = ["diagnostic_rows", "render"]

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 72rem; padding: 0 1.5rem; color: #1d2430; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { font-size: 1.2rem; margin-top: 2rem;
     border-bottom: 1px solid #d8dde6; padding-bottom: .3rem; }
.meta { color: #4a5568; margin: 0 0 1rem 0; padding: 0; list-style: none; }
.meta li { margin: .1rem 0; }
.warn { background: #fff4e5; border-left: 4px solid #dd6b20; padding: .6rem 1rem; margin: .4rem 0; }
.ok { background: #eefaf0; border-left: 4px solid #2f855a; padding: .6rem 1rem; margin: .4rem 0; }
table { border-collapse: collapse; font-size: .88rem; font-variant-numeric: tabular-nums; }
th, td { padding: .25rem .7rem; border-bottom: 1px solid #e2e8f0; text-align: right; }
th:first-child, td:first-child { text-align: left; font-family: ui-monospace, monospace; }
thead th { background: #f4f6fa; }
tr.bad td { background: #fff4e5; }
figure { margin: 1rem 0 2rem 0; }
figure img { max-width: min(100%, 60rem); border: 1px solid #e2e8f0; }
figcaption { color: #4a5568; font-size: .9rem; }
pre { background: #f4f6fa; padding: .8rem; overflow-x: auto; font-size: .85rem; }
"""

_CAPTIONS = {
    "trace.png": "Trace plots: each chain's draws (right) and the marginal density per chain "
    "(left). Chains should overlap and look like stationary noise.",
    "rank.png": "Rank plots: histograms of each chain's ranks among all draws; flat when the "
    "chains sample the same distribution.",
    "posterior.png": "Marginal posteriors with 90 % highest-density intervals.",
    "pair.png": "Pairs of components (draws as points); look for correlations, funnels and "
    "multiple modes.",
    "method.png": "The method's own diagnostics.",
    "ppc.png": "Posterior predictive check: the observed data (black) against data sets "
    "replicated at posterior draws (blue) and their mean (orange); systematic differences show "
    "what the model does not capture.",
    "calibration.png": "Calibration: TARP expected coverage and SBC rank histograms on data "
    "simulated from the model.",
}


_LOO_CAPTION = (
    "PSIS-LOO (ArviZ): elpd_loo estimates the log predictive density of each data point when it "
    "is left out, summed; compare models by it (pi.compare), within a few of its standard errors "
    "they are indistinguishable. Pareto k̂ above ArviZ's threshold (0.7, lower for few draws) marks "
    "points whose estimate is unreliable."
)


_COMPARE_CAPTION = (
    "The job's models fitted to the same data, best first (ArviZ's compare): elpd_loo and its "
    "se, elpd_diff from the best and the se of that difference (dse), and stacking weights. A "
    "difference within about 2 dse does not separate the models. Each other model's own report "
    "is in compare/<name>/."
)


def _format(value):
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_format(v)}" for k, v in value.items()) or "—"
    value = np.asarray(value)
    if value.dtype.kind in "US":
        return str(value)
    if value.ndim == 0:
        v = value.item()
        return f"{v:.4g}" if isinstance(v, float) else str(v)
    if value.size == 0:
        return "—"
    flat = value.ravel().astype(float) if value.dtype.kind in "fiub" else value.ravel()
    if value.ndim == 1 and value.size <= 6:
        return ", ".join(_format(v) for v in flat)
    if value.dtype.kind not in "fiub":
        return f"{value.size} values"
    return (
        f"{value.size} values, shape {value.shape}: mean {np.nanmean(flat):.4g}, "
        f"min {np.nanmin(flat):.4g}, max {np.nanmax(flat):.4g}"
    )


def diagnostic_rows(posterior):
    """``[(name, text)]`` for every diagnostic of ``posterior`` (arrays summarised)."""
    rows = []
    if posterior.log_evidence is not None:
        se = posterior.diagnostics.get("log_evidence_se")
        error = "" if se is None else f" ± {se:.4f} (standard error)"
        rows.append(("log evidence", f"{posterior.log_evidence:.4f}{error}"))
    if posterior.log_weights is not None:
        from probinfer.diagnostics import kish_ess

        rows.append(("Kish ESS of the weights", f"{float(kish_ess(posterior.log_weights)):.1f}"))
    for name, value in posterior.diagnostics.items():
        if name == "warnings":  # shown as warnings, above the table
            continue
        if np.ndim(value) == 2 and np.shape(value)[:2] == (
            posterior.num_chains,
            posterior.num_draws,
        ):
            if np.asarray(value).dtype == bool:
                rows.append((name, f"{int(np.sum(value))} of {np.size(value)} draws"))
                continue
        rows.append((name, _format(value)))
    return rows


def _image(path):
    with open(path, "rb") as fh:
        data = base64.b64encode(fh.read()).decode("ascii")
    return f'<img alt="{html.escape(os.path.basename(path))}" src="data:image/png;base64,{data}">'


def _cell(column, value):
    if not np.isfinite(value):
        return "—"
    if column.startswith("ess"):
        return f"{value:.0f}"
    if column == "r_hat":
        return f"{value:.3f}"
    return f"{value:.3g}" if value != 0 and not 1e-3 <= abs(value) < 1e4 else f"{value:.3f}"


def _table(table):
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in ["", *table.columns])
    body = []
    for label, row in table.iterrows():
        bad = row.get("r_hat", 1.0) > 1.01
        cells = "".join(f"<td>{_cell(c, float(v))}</td>" for c, v in row.items())
        body.append(
            f"<tr{' class=bad' if bad else ''}><td>{html.escape(str(label))}</td>{cells}</tr>"
        )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def render(
    *,
    title,
    header_lines,
    table,
    diagnostics,
    warnings,
    images,
    calibration=None,
    files=(),
    model_checks="",
    comparison="",
):
    """The HTML page as a string. ``images``: ``{name: path}`` of PNGs to embed."""
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        '<ul class="meta">' + "".join(f"<li>{esc(line)}</li>" for line in header_lines) + "</ul>",
    ]
    if warnings:
        parts += [f'<div class="warn">⚠ {esc(w)}</div>' for w in warnings]
    else:
        parts.append('<div class="ok">No warnings from the diagnostics below.</div>')
    parts += ["<h2>Posterior summary</h2>", _table(table)]
    if calibration is not None:
        # sentences, not a table: wrapped, so the evidence is readable without scrolling
        parts += [
            "<h2>Calibration</h2>",
            f'<pre style="white-space: pre-wrap">{esc(calibration)}</pre>',
        ]
    if model_checks:
        parts += [
            "<h2>Model checks: leave-one-out cross-validation</h2>",
            f"<p>{esc(_LOO_CAPTION)}</p>",
            f"<pre>{esc(model_checks)}</pre>",
        ]
    if comparison:
        parts += [
            "<h2>Model comparison (PSIS-LOO)</h2>",
            f"<p>{esc(_COMPARE_CAPTION)}</p>",
            f"<pre>{esc(comparison)}</pre>",
        ]
    parts += ["<h2>Diagnostics</h2>", "<table><tbody>"]
    parts += [f"<tr><td>{esc(n)}</td><td>{esc(v)}</td></tr>" for n, v in diagnostics]
    parts += ["</tbody></table>", "<h2>Plots</h2>"]
    for name, path in images.items():
        caption = _CAPTIONS.get(name, name)
        parts.append(f"<figure>{_image(path)}<figcaption>{esc(caption)}</figcaption></figure>")
    if files:
        listed = ", ".join(f"<code>{esc(f)}</code>" for f in files)
        parts.append(f"<h2>Files</h2><p>In this folder: {listed}.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)
