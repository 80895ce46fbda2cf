"""The report's model checks, for a posterior whose Target observes data.

* **PSIS-LOO** (Vehtari, Gelman & Gabry 2017) through :func:`probinfer.comparison.loo`: the
  expected log predictive density of each data point left out, its standard error, the effective
  number of parameters ``p_loo`` and the Pareto k̂ of every point (k̂ above ArviZ's threshold,
  0.7 or less for few draws: that point's term is unreliable, and so is the total).
* **Posterior predictive check** (Gelman, Meng & Stern 1996): the observed data against data sets
  replicated at posterior draws, ``y_rep ~ p(y | θ_s)``, drawn by ArviZ's ``plot_ppc``.

Both are views of the run, not part of it: a check that cannot be made (no observed site, a model
whose observations cannot be simulated) is reported as a sentence, never as a failed report.

>>> checks = model_checks(posterior, target, folder, title)   # doctest: +SKIP
>>> checks.text, checks.images                 # doctest: +SKIP
"""

import os
import warnings
from typing import NamedTuple

import jax
import numpy as np

from probinfer.errors import ProbinferError
from probinfer.health import ProbinferWarning
from probinfer.report.plots import save_figure

__all__ = ["ModelChecks", "model_checks", "LOO_DRAWS", "LOO_ELEMENTS", "PPC_DRAWS"]

#: Draws used for LOO: all of them while draws × N stay under ``LOO_ELEMENTS`` log-likelihood
#: terms, else as many as fit, and never fewer than ``LOO_DRAWS`` (memory ``LOO_DRAWS × N``).
#: Thinning a small model's 4,000 draws to 1,000 lowered ArviZ's k̂ threshold to 0.67 and made
#: k̂ noisier: the demo's eight schools warned at k̂ = 0.68 on 1,000 draws where all 4,000 gave
#: at most 0.70 over seeds 0–9 at its target_accept of 0.95 (0.64 at seed 0).
LOO_DRAWS = 1000
LOO_ELEMENTS = 4_000_000
#: Replicated data sets in the PPC plot.
PPC_DRAWS = 100


class ModelChecks(NamedTuple):
    """What the report shows: ``text`` (LOO table or why not) and ``images`` (``{name: path}``);
    a high Pareto k̂ is among the report's warnings through ``diagnostics["loo"]``."""

    text: str
    images: dict


def _loo(posterior, target):
    from probinfer.comparison import loo

    try:
        with warnings.catch_warnings():  # the report states the high-k̂ sentence once, above
            warnings.simplefilter("ignore", ProbinferWarning)
            result = loo(posterior, target, key=0, num_draws=_loo_draws(target))
    except ProbinferError as error:  # e.g. observed sites of different shapes and no data plate
        return f"PSIS-LOO not computed: {error}"
    except Exception as error:  # noqa: BLE001 — a report after an hour's run must still be written
        return f"PSIS-LOO not computed ({type(error).__name__}: {error}); please report this."
    return str(result).strip()


def _loo_draws(target):
    """How many draws LOO uses (:data:`LOO_ELEMENTS`, :data:`LOO_DRAWS`)."""
    size = sum(int(np.size(v)) for v in target.observations().values())
    return max(LOO_DRAWS, LOO_ELEMENTS // max(size, 1))


def _replicates(posterior, target):
    """``({site: (S, ...)} replicated, {site: array} observed)`` at ``PPC_DRAWS`` draws."""
    from probinfer.comparison import _unweighted

    draws = _unweighted(posterior, 0, PPC_DRAWS)
    flat = {k: np.asarray(v).reshape((-1,) + v.shape[2:]) for k, v in draws.items()}
    latent = {k: flat[k] for k in target.latent_sites}
    z = jax.jit(jax.vmap(target.unconstrain))(latent)
    keys = jax.random.split(jax.random.PRNGKey(0), z.shape[0])
    replicated = jax.jit(jax.vmap(target.simulate_observations))(keys, z)
    return {k: np.asarray(v) for k, v in replicated.items()}, target.observations()


def _plot_ppc(posterior, target, folder, title):
    from probinfer._utils import import_arviz

    az = import_arviz()
    replicated, observed = _replicates(posterior, target)
    sites = [s for s in target.observed_sites if np.size(observed[s]) > 1][:4]
    if not sites:
        return None
    idata = az.from_dict(
        posterior_predictive={
            s: replicated[s].reshape(1, replicated[s].shape[0], -1) for s in sites
        },
        observed_data={s: np.ravel(observed[s]) for s in sites},
    )
    axes = az.plot_ppc(idata, var_names=sites, num_pp_samples=PPC_DRAWS, random_seed=0)
    return save_figure(
        axes,
        f"{title}: observed data against {PPC_DRAWS} replicated data sets",
        os.path.join(folder, "ppc.png"),
    )


def model_checks(posterior, target, folder, title, plots=True):
    """LOO and the posterior predictive plot of ``posterior`` (of ``target``) for the report in
    ``folder``; returns :class:`ModelChecks` (empty when the model observes nothing)."""
    if target is None or not target.observed_sites:
        return ModelChecks("", {})
    text = _loo(posterior, target)
    images = {}
    if plots:
        try:
            path = _plot_ppc(posterior, target, folder, title)
        except (ProbinferError, NotImplementedError) as error:  # e.g. no sampler for a site
            text += f"\nPosterior predictive plot not drawn: {error}"
        except Exception as error:  # noqa: BLE001 — the report is still written, saying why
            text += f"\nPosterior predictive plot not drawn ({type(error).__name__}: {error})."
        else:
            if path is not None:
                images["ppc.png"] = path
    return ModelChecks(text, images)
