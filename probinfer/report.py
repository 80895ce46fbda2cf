"""Report folders: what a run leaves behind for a person to read.

``write_report(posterior, folder)`` writes ``summary.txt`` and ``summary.csv`` (the summary
table), ``posterior.nc`` (ArviZ InferenceData as netCDF), ``posterior.npz`` (:meth:`Posterior.save`),
``trace.png`` and ``posterior.png`` (ArviZ trace and posterior plots) and ``report.md`` tying them
together. Every file is written atomically.
"""

import os

import numpy as np

from probinfer._utils import atomic_path

__all__ = ["write_report", "save_figure"]

_MAX_PLOTTED_COMPONENTS = 12


def _plot_vars(posterior):
    chosen, total = [], 0
    for name, values in posterior.draws.items():
        size = int(np.prod(values.shape[2:], dtype=int))
        if total + size > _MAX_PLOTTED_COMPONENTS and chosen:
            break
        chosen.append(name)
        total += size
    return chosen


def save_figure(axes, title, path, dpi=110):
    """Title the figure holding ``axes`` (an Axes or array of them) and save it atomically as PNG."""
    import matplotlib.pyplot as plt

    figure = np.ravel(axes)[0].figure
    figure.suptitle(title, y=1.0)
    figure.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, dpi=dpi, bbox_inches="tight")
    plt.close(figure)


def write_report(posterior, folder, *, title="probinfer run", header_lines=()):
    """Write the report files for ``posterior`` into ``folder``; returns ``{kind: path}``."""
    from probinfer._utils import import_arviz

    az = import_arviz()
    import matplotlib

    matplotlib.use("Agg")

    os.makedirs(folder, exist_ok=True)
    paths = {
        name: os.path.join(folder, name)
        for name in [
            "summary.txt",
            "summary.csv",
            "posterior.nc",
            "posterior.npz",
            "trace.png",
            "posterior.png",
            "report.md",
        ]
    }
    table = posterior.summary()
    text = table.to_string(float_format=lambda v: f"{v:.3f}")
    with atomic_path(paths["summary.txt"]) as tmp, open(tmp, "w") as fh:
        fh.write(text + "\n")
    with atomic_path(paths["summary.csv"]) as tmp:
        table.to_csv(tmp)
    # Weighted draws are resampled for ArviZ with a fixed key, so a posterior always gives the
    # same report (the report is a view of the posterior, not a new random draw).
    idata = posterior.to_arviz(key=0)
    with atomic_path(paths["posterior.nc"], suffix=".nc") as tmp:
        idata.to_netcdf(tmp, engine="h5netcdf")
    posterior.save(paths["posterior.npz"])
    variables = _plot_vars(posterior)
    save_figure(
        az.plot_trace(idata, var_names=variables, compact=True),
        f"{title}: trace",
        paths["trace.png"],
    )
    save_figure(
        az.plot_posterior(idata, var_names=variables, hdi_prob=0.9),
        f"{title}: marginal posteriors (90 % HDI)",
        paths["posterior.png"],
    )
    lines = [
        f"# {title}",
        "",
        *header_lines,
        "",
        "## Posterior summary",
        "",
        "```",
        text,
        "```",
        "",
        "![trace](trace.png)",
        "",
        "![posterior](posterior.png)",
        "",
        "Files: `posterior.nc` (ArviZ InferenceData, netCDF), `posterior.npz` "
        "(`probinfer.Posterior.load`), `summary.csv`.",
        "",
    ]
    with atomic_path(paths["report.md"]) as tmp, open(tmp, "w") as fh:
        fh.write("\n".join(lines))
    return paths
