"""The report's figures: ArviZ trace, rank, marginal and pair plots, and one figure of the
method's own diagnostics (SMC's temperature ladder, an ELBO trace, a Stein discrepancy trace,
NUTS tree depths). Each function saves one PNG atomically and returns its path, or None when the
figure does not apply to the posterior at hand.
"""

import os

import numpy as np

from probinfer._utils import atomic_path
from probinfer.health import CHAIN_METHODS

__all__ = ["save_figure", "plot_vars", "write_plots", "SEQUENTIAL_METHODS"]

# Methods whose draws form Markov chains (trace and rank plots mean something).
SEQUENTIAL_METHODS = CHAIN_METHODS


def save_figure(axes, title, path, dpi=110):
    """Title the figure holding ``axes`` (an Axes or array of them) and save it atomically as PNG."""
    import matplotlib.pyplot as plt

    figure = np.ravel(axes)[0].figure
    figure.suptitle(title, y=1.0)
    figure.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, dpi=dpi, bbox_inches="tight")
    plt.close(figure)
    return os.fspath(path)


def plot_vars(posterior, max_components=12):
    """The first sites of ``posterior`` holding at most ``max_components`` scalars (at least one
    site)."""
    chosen, total = [], 0
    for name, values in posterior.draws.items():
        size = int(np.prod(values.shape[2:], dtype=int))
        if total + size > max_components and chosen:
            break
        chosen.append(name)
        total += size
    return chosen


def _pair_selection(posterior, idata, limit):
    """``(var_names, coords)`` of the first ``limit`` scalar components (the last site cut to
    its first entries along its first axis); ``([], {})`` when there are fewer than two."""
    names, coords, total = [], {}, 0
    for name, values in posterior.draws.items():
        shape = values.shape[2:]
        size = int(np.prod(shape, dtype=int))
        if total >= limit:
            break
        names.append(name)
        if total + size > limit:
            if len(shape) != 1:  # cut only vectors; a matrix site ends the selection
                names.pop()
                break
            dim = idata.posterior[name].dims[2]
            coords[dim] = list(range(limit - total))
            size = limit - total
        total += size
    return (names, coords) if total >= 2 else ([], {})


def _num_components(posterior, names, coords):
    total = 0
    for name in names:
        size = int(np.prod(posterior.draws[name].shape[2:], dtype=int))
        total += size if not coords or name != names[-1] else len(next(iter(coords.values())))
    return total


def _method_figure(posterior):
    """``(title, [(label, x, y, ylabel)])`` of the method's own traces, or None."""
    d = posterior.diagnostics
    if "temperatures" in d and np.size(d["temperatures"]) > 1:
        steps = np.arange(1, np.size(d["temperatures"]))
        panels = [("temperature", np.arange(np.size(d["temperatures"])), d["temperatures"], "β")]
        for key, label in [
            ("ess", "ESS before resampling"),
            ("acceptance_rate", "acceptance"),
            ("num_mcmc_steps", "MCMC steps"),
        ]:
            if key in d and np.size(d[key]) == steps.size:
                panels.append((label, steps, d[key], label))
        return "temperature ladder", panels
    if "elbo" in d and np.size(d["elbo"]) > 1:
        elbo = np.asarray(d["elbo"], dtype=float)
        return "ELBO per step", [("ELBO", np.arange(elbo.size), elbo, "ELBO")]
    if "ksd" in d and np.size(d["ksd"]) > 1:
        x = np.asarray(d.get("ksd_steps", np.arange(np.size(d["ksd"]))))
        return "kernel Stein discrepancy", [("KSD", x, d["ksd"], "KSD")]
    if "tree_depth" in d and np.ndim(d["tree_depth"]) == 2:
        depth = np.asarray(d["tree_depth"])
        steps = np.arange(depth.shape[1])
        panels = [(f"chain {c}", steps, depth[c], "tree depth") for c in range(depth.shape[0])]
        return "NUTS tree depth per draw", panels[:4]
    return None


def _plot_method(posterior, title, path):
    import matplotlib.pyplot as plt

    found = _method_figure(posterior)
    if found is None:
        return None
    heading, panels = found
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 2.8), squeeze=False)
    for ax, (label, x, y, ylabel) in zip(axes[0], panels, strict=True):
        y = np.asarray(y, dtype=float)
        ax.plot(np.asarray(x)[: y.size], y, marker="." if y.size < 60 else None, lw=1)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        if label == "ELBO" and y.size > 50:  # the first steps dwarf the rest
            ax.set_ylim(np.nanpercentile(y, 5), np.nanmax(y) + 0.05 * np.ptp(y[y.size // 2 :]))
    return save_figure(axes, f"{title}: {heading}", path)


def write_plots(posterior, idata, folder, title, max_components=12):
    """Write the PNGs that apply to ``posterior``; returns ``{name: path}``."""
    from probinfer._utils import import_arviz

    az = import_arviz()
    variables = plot_vars(posterior, max_components)
    paths = {}
    sequential = posterior.method in SEQUENTIAL_METHODS and posterior.log_weights is None
    if sequential:
        paths["trace.png"] = save_figure(
            az.plot_trace(idata, var_names=variables, compact=True),
            f"{title}: trace",
            os.path.join(folder, "trace.png"),
        )
        if posterior.num_chains > 1:
            paths["rank.png"] = save_figure(
                az.plot_rank(idata, var_names=variables),
                f"{title}: rank plots (uniform when the chains agree)",
                os.path.join(folder, "rank.png"),
            )
    paths["posterior.png"] = save_figure(
        az.plot_posterior(idata, var_names=variables, hdi_prob=0.9),
        f"{title}: marginal posteriors (90 % HDI)",
        os.path.join(folder, "posterior.png"),
    )
    pair_vars, coords = _pair_selection(posterior, idata, min(max_components, 6))
    if pair_vars:
        len_pair = _num_components(posterior, pair_vars, coords) - 1
        divergences = sequential and "diverging" in getattr(idata, "sample_stats", {})
        paths["pair.png"] = save_figure(
            az.plot_pair(
                idata,
                var_names=pair_vars,
                coords=coords,
                kind="scatter",
                divergences=divergences,
                figsize=(2.2 * len_pair, 2.2 * len_pair),
                textsize=9,
                scatter_kwargs={"alpha": 0.3, "s": 3},
            ),
            f"{title}: pair plot",
            os.path.join(folder, "pair.png"),
        )
    method = _plot_method(posterior, title, os.path.join(folder, "method.png"))
    if method is not None:
        paths["method.png"] = method
    return paths
