"""Report folders: what a run leaves behind for a person to read.

``write_report(posterior, folder)`` writes ``summary.txt`` and ``summary.csv`` (the summary
table), ``diagnostics.txt``, ``posterior.nc`` (ArviZ InferenceData as netCDF), ``posterior.npz``
(:meth:`Posterior.save`), PNG plots (trace and rank plots for Markov chains, marginals, a pair
plot, the method's own diagnostics; given the ``target``, PSIS-LOO and a posterior predictive plot
for a model that observes data: :mod:`probinfer.report.model_checks`) and two pages tying them together: ``report.html``
(self-contained, images embedded) and ``report.md``. Every file is written atomically, so a run
killed half-way leaves the previous report whole.

>>> paths = write_report(posterior, "out/", title="eight schools (mcmc)")   # doctest: +SKIP
"""

import os

from probinfer._utils import atomic_path
from probinfer.health import check as health_check
from probinfer.report.html import diagnostic_rows, render
from probinfer.report.model_checks import model_checks
from probinfer.report.plots import plot_vars, save_figure, write_plots

__all__ = ["write_report", "save_figure", "plot_vars"]


def _write_text(path, text):
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    return os.fspath(path)


def write_report(
    posterior,
    folder,
    *,
    title="probinfer run",
    header_lines=(),
    calibration=None,
    plots=True,
    max_components=12,
    target=None,
    comparison=None,
):
    """Write the report files for ``posterior`` into ``folder``; returns ``{file name: path}``.

    Args:
        posterior: a :class:`~probinfer.Posterior`.
        folder: output folder (created).
        title: the report's heading and the plots' titles.
        header_lines: lines describing the run (model, method, seed, time), shown first.
        calibration: optional ``Calibration`` (from ``pi.calibrate``): its verdict and figure
            join the report.
        plots: write the PNGs (and embed them in ``report.html``).
        max_components: at most this many scalar components in the plots.
        target: the :class:`~probinfer.Target` the posterior belongs to; when it observes data,
            the report adds PSIS-LOO (in ``diagnostics["loo"]`` too) and a posterior predictive
            plot (``ppc.png``).
        comparison: ArviZ's LOO comparison table of several models (:func:`probinfer.compare`;
            also written to ``compare.csv``), or a sentence saying why there is none.
    """
    import matplotlib

    matplotlib.use("Agg")
    os.makedirs(folder, exist_ok=True)
    join = lambda name: os.path.join(folder, name)  # noqa: E731
    paths = {}
    table = posterior.summary()
    text = table.to_string(float_format=lambda v: f"{v:.3f}")
    paths["summary.txt"] = _write_text(join("summary.txt"), text + "\n")
    with atomic_path(join("summary.csv")) as tmp:
        table.to_csv(tmp)
    paths["summary.csv"] = join("summary.csv")
    checks = model_checks(posterior, target, folder, title, plots)
    rows = diagnostic_rows(posterior)
    warnings = health_check(posterior, table)
    diag_text = "\n".join(f"{n}: {v}" for n, v in rows) + "\n"
    diag_text += "".join(f"warning: {w}\n" for w in warnings)
    paths["diagnostics.txt"] = _write_text(join("diagnostics.txt"), diag_text)
    # Weighted draws are resampled for ArviZ with a fixed key, so a posterior always gives the
    # same report (the report is a view of the posterior, not a new random draw).
    idata = posterior.to_arviz(key=0)
    with atomic_path(join("posterior.nc"), suffix=".nc") as tmp:
        idata.to_netcdf(tmp, engine="h5netcdf")
    paths["posterior.nc"] = join("posterior.nc")
    posterior.save(join("posterior.npz"))
    paths["posterior.npz"] = join("posterior.npz")
    images = write_plots(posterior, idata, folder, title, max_components) if plots else {}
    images.update(checks.images)
    verdict = None
    if calibration is not None:
        saved = calibration.save(folder)
        images["calibration.png"] = saved["figure"]
        paths["calibration.txt"] = saved["verdict"]
        verdict = calibration.verdict()
    paths.update(images)
    compared = ""
    if comparison is not None and not isinstance(comparison, str):
        with atomic_path(join("compare.csv")) as tmp:
            comparison.to_csv(tmp)
        paths["compare.csv"] = join("compare.csv")
        compared = comparison.to_string(float_format=lambda v: f"{v:.2f}")
    elif comparison:
        compared = comparison
    files = sorted({*paths, "report.html", "report.md"})
    page = render(
        title=title,
        header_lines=header_lines,
        table=table,
        diagnostics=rows,
        warnings=warnings,
        images=images,
        calibration=verdict,
        files=files,
        model_checks=checks.text,
        comparison=compared,
    )
    paths["report.html"] = _write_text(join("report.html"), page)
    lines = [f"# {title}", "", *(f"- {line}" for line in header_lines), ""]
    lines += [f"> warning: {w}" for w in warnings]
    lines += ["", "## Posterior summary", "", "```", text, "```", ""]
    if verdict:
        lines += ["## Calibration", "", "```", verdict, "```", ""]
    if checks.text:
        lines += ["## Model checks", "", "```", checks.text, "```", ""]
    if compared:
        lines += ["## Model comparison", "", "```", compared, "```", ""]
    lines += ["## Diagnostics", "", *(f"- {n}: {v}" for n, v in rows), ""]
    lines += [f"![{name}]({name})\n" for name in images]
    lines += [
        "Files: `report.html` (everything on one page), `posterior.nc` (ArviZ "
        "InferenceData, netCDF), `posterior.npz` (`probinfer.Posterior.load`), "
        "`summary.csv`.",
        "",
    ]
    paths["report.md"] = _write_text(join("report.md"), "\n".join(lines))
    return paths
