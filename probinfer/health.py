"""Health checks every runner feeds: one sentence per problem a reader must see before trusting
the draws, raised as a :class:`ProbinferWarning` and kept in ``post.diagnostics["warnings"]`` (the
report shows the same sentences).

The rules are Stan's where Stan has one (Vehtari et al. 2021, "Rank-normalization, folding, and
localization: an improved R-hat"; Betancourt 2017, "A Conceptual Introduction to Hamiltonian Monte
Carlo", for E-BFMI), and each method's own otherwise:

- chains (``mcmc``, ``sgmcmc``, ``pmmh``): rank-normalised R-hat above 1.01; bulk or tail ESS below
  100 per chain; a chain whose step size is a hundredth of the median chain's (adapted to nothing);
- NUTS/HMC: divergent transitions (with their fraction and the fix), trees at the maximum depth,
  E-BFMI below 0.3;
- SMC: an ESS collapse (a reweighting left an ESS under max(10, 1 % of the particles); a ladder
  that hits ``max_steps`` before temperature 1 is an error already, not a warning);
- SG-MCMC: a step size pinned at the minibatch-noise bound;
- VI and flows: Pareto k̂ above 0.7 (Vehtari et al. 2024, "Pareto smoothed importance sampling").

>>> post = pi.mcmc(target, key=0)                  # doctest: +SKIP
>>> post.diagnostics["warnings"]                   # [] on a healthy run
"""

import warnings

import numpy as np

from probinfer._utils import user_stacklevel

__all__ = ["ProbinferWarning", "check", "attach", "stuck_chains", "e_bfmi"]

CHAIN_METHODS = ("mcmc", "sgmcmc", "pmmh")
R_HAT_LIMIT = 1.01
ESS_PER_CHAIN = 100
E_BFMI_LIMIT = 0.3
PARETO_K_LIMIT = 0.7
# Particle methods: warn when the Stein estimate of the particles' sd is under 80 % of the
# posterior's (its noise with 100 particles is a few per cent on the median of d coordinates).
SPREAD_SHORTFALL = 0.2
# An amortized estimator's misspecification check (MMD in its embedding space) below this p-value
# means the job's data are unlike the model's simulations.
MISSPECIFICATION_LEVEL = 0.01
# An amortized posterior's local C2ST at the job's data below this p-value: q differs there.
LOCAL_C2ST_LEVEL = 0.05
#: A chain whose adapted step is below this fraction of the median chain's adapted to nothing.
COLLAPSED_STEP = 0.01


class ProbinferWarning(UserWarning):
    """A run finished but its diagnostics say its draws should not be trusted as they are."""


def stuck_chains(step_size, log_density, dim):
    """Chains that adapted to nothing, after warm-up: ``(num_chains,)`` bool.

    A chain is stuck when its step size is below ``COLLAPSED_STEP`` times the median chain's, or
    when its log density lies more than ``max(10, 10 √(dim / 2))`` below the median chain's —
    ten standard deviations of the log density in the typical set of a ``dim``-dimensional
    Gaussian (−½ χ²_dim has sd √(dim / 2)), so no chain in the posterior's bulk is taken for one.
    Needs two chains; a lone chain is never called stuck.
    """
    step_size = np.asarray(step_size, np.float64)
    log_density = np.asarray(log_density, np.float64)
    if step_size.size < 2:
        return np.zeros(step_size.shape, bool)
    collapsed = _collapsed(step_size)
    gap = max(10.0, 10.0 * np.sqrt(dim / 2.0))
    far = ~(log_density >= np.median(log_density) - gap)
    return collapsed | far


def _collapsed(step_size):
    """Chains whose step size is under ``COLLAPSED_STEP`` times the median chain's (NaN too)."""
    return ~(step_size >= COLLAPSED_STEP * np.median(step_size))


def e_bfmi(energy):
    """Energy Bayesian fraction of missing information per chain (Betancourt 2016):
    ``Σ_t (E_t − E_{t−1})² / Σ_t (E_t − Ē)²`` over a chain's draws; ``energy`` (num_chains,
    num_draws). Below 0.3 the momentum resampling cannot move the chain across the energy levels
    of the posterior (heavy tails, funnels)."""
    energy = np.asarray(energy, np.float64)
    numerator = np.sum(np.diff(energy, axis=1) ** 2, axis=1)
    denominator = np.sum((energy - energy.mean(axis=1, keepdims=True)) ** 2, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return numerator / denominator


def misspecified(p_value, level=MISSPECIFICATION_LEVEL):
    """The sentence for data an amortized estimator's misspecification check rejected."""
    return (
        f"the observed data lie outside what the model simulates (misspecification MMD "
        f"p = {p_value:.3g} < {level:g}): the amortized posterior there is extrapolation — "
        "check the model (priors, noise, units) before trusting it."
    )


def check(posterior, table=None):
    """The sentences for ``posterior`` (a list, empty on a healthy run). ``table`` is its
    :meth:`~probinfer.Posterior.summary` when the caller has it already."""
    d, method, found = posterior.diagnostics, posterior.method, []
    if method in CHAIN_METHODS and posterior.log_weights is None:
        found += _chain_checks(posterior, table)
    found += _hmc_checks(d, posterior.settings)
    found += _smc_checks(d, posterior.settings)
    pilot = d.get("step_size_pilot")
    pinned = isinstance(pilot, dict) and all(s > pilot["max_step"] for s in pilot["step_size"])
    # With control variates the runner lengthens the run to the step (``needed_steps``): the
    # bound is then a cost, not a failure, unless the run could not be made long enough.
    if pinned and pilot.get("needed_steps", np.inf) <= posterior.settings.get("num_steps", 0):
        pinned = False
    if pinned:
        found.append(
            f"the step size ({pilot['max_step']:.3g}) sits at the minibatch-noise bound: the "
            "gradient noise, not the posterior, sets it and the chains mix slowly; raise "
            "batch_size, num_steps or pass control_variates=True."
        )
    p_mis = d.get("misspecification_p")
    if p_mis is not None and float(p_mis) < MISSPECIFICATION_LEVEL:
        found.append(misspecified(float(p_mis)))
    p_local = d.get("local_c2st_p")
    if p_local is not None and float(p_local) < LOCAL_C2ST_LEVEL:
        found.append(
            f"the local C2ST tells the amortized posterior from the true one at this data set "
            f"(L-C2ST p = {float(p_local):.3g} < {LOCAL_C2ST_LEVEL:g}): train with more "
            "simulations or num_estimators=5, or run mcmc or smc on this data set."
        )
    spread = d.get("spread_ratio")
    if spread is not None and np.isfinite(spread) and not 1 - SPREAD_SHORTFALL < spread:
        found.append(
            f"the particles spread about {100 * spread:.0f} % as wide as the posterior (Stein's "
            "identity, median over coordinates): a kernelised particle method collapses when "
            "the dimension is large against num_particles; use more particles, flow_vi or mcmc."
        )
    k = d.get("pareto_k")
    if k is not None and np.ndim(k) == 0 and float(k) > PARETO_K_LIMIT:
        fix = (
            "more num_paths, or MCMC started from its draws: init='pathfinder'"
            if method == "pathfinder"
            else "a richer flow, more num_steps, importance_resample=True to reweight the "
            "draws, or MCMC"
        )
        if float(k) >= 1.0:  # no finite mean of the importance weights (Vehtari et al. 2024)
            found.append(
                f"Pareto k̂ = {float(k):.2f} (1 or more): the approximation failed — the "
                "importance weights π/q have no finite mean, so its draws, means and sds are "
                f"not the posterior's; do not use them ({fix})."
            )
        else:
            found.append(
                f"Pareto k̂ = {float(k):.2f} (above {PARETO_K_LIMIT}): the approximation misses "
                f"the posterior's tails; do not trust its tail probabilities ({fix})."
            )
    found += loo_checks(d.get("loo"))
    bad = d.get("nonfinite_prior_draws", 0)
    bad = int(sum(bad.values()) if isinstance(bad, dict) else np.sum(bad))
    if bad:
        found.append(
            f"{bad} prior particles had a non-finite likelihood and were given weight zero."
        )
    return found


def loo_checks(found):
    """The sentence for PSIS-LOO's ``diagnostics["loo"]`` when points have a high Pareto k̂."""
    if not isinstance(found, dict) or not found.get("num_high_pareto_k"):
        return []
    return [
        f"PSIS-LOO: {found['num_high_pareto_k']} of {found['num_data']} data points have Pareto "
        f"k̂ > {found['good_pareto_k']:.2f} (max {found['max_pareto_k']:.2f}), so elpd_loo is "
        "unreliable; those points are influential (outliers, or a model that misfits them): "
        "check them, use a more robust likelihood, or K-fold cross-validation."
    ]


def attach(posterior, table=None):
    """Put :func:`check`'s sentences in ``posterior.diagnostics["warnings"]`` and raise each as a
    :class:`ProbinferWarning` naming the method; returns ``posterior``."""
    found = check(posterior, table)
    posterior.diagnostics["warnings"] = found
    for sentence in found:
        warnings.warn(
            f"{posterior.method}: {sentence}", ProbinferWarning, stacklevel=user_stacklevel()
        )
    return posterior


def _chain_checks(posterior, table):
    found = []
    num_chains = max(posterior.num_chains, 1)
    if table is None:
        table = posterior.summary()
    if not len(table):
        return found
    if num_chains > 1:
        worst = float(np.nanmax(table["r_hat"]))
        if worst > R_HAT_LIMIT:
            site = table["r_hat"].idxmax()
            found.append(
                f"R-hat up to {worst:.3f} ({site}; above {R_HAT_LIMIT}): the chains disagree; "
                "run longer (num_warmup, num_draws) or reparameterise."
            )
    need = ESS_PER_CHAIN * num_chains
    for column, label in (("ess_bulk", "bulk"), ("ess_tail", "tail")):
        low = float(np.nanmin(table[column]))
        if low < need:
            found.append(
                f"{label} ESS as low as {low:.0f} ({table[column].idxmin()}; under {need}, "
                f"{ESS_PER_CHAIN} per chain): {'means' if label == 'bulk' else 'quantiles'} "
                "are noisy; run longer (num_draws)."
            )
    step = np.ravel(np.asarray(posterior.diagnostics.get("step_size", []), np.float64))
    if step.size > 1:
        collapsed = np.flatnonzero(_collapsed(step))
        if collapsed.size:
            found.append(
                f"chain(s) {collapsed.tolist()} adapted a step size under {COLLAPSED_STEP:g}× the "
                f"median chain's ({step.min():.2g} vs {np.median(step):.2g}) and barely moved; "
                "pass init= closer to the posterior or reparameterise."
            )
    return found


def _hmc_checks(d, settings):
    found = []
    divergent = int(np.sum(d.get("num_divergent", 0)))
    if divergent:
        found.append(_divergence_sentence(divergent, int(np.size(d.get("is_divergent", 0)))))
    depth, max_depth = d.get("tree_depth"), settings.get("max_tree_depth")
    if depth is not None and max_depth is not None:
        saturated = int(np.sum(np.asarray(depth) >= int(max_depth)))
        if saturated:
            found.append(
                f"{saturated} of {np.size(depth)} transitions hit the maximum tree depth "
                f"({max_depth}): the sampler cut trajectories short and explores slowly; "
                "reparameterise, or raise it (kernel=pi.kernels.nuts(max_tree_depth=12))."
            )
    bfmi = d.get("e_bfmi")
    if bfmi is not None:
        low = np.flatnonzero(np.asarray(bfmi) < E_BFMI_LIMIT)
        if low.size:
            found.append(
                f"E-BFMI {np.min(bfmi):.2f} in chain(s) {low.tolist()} (below {E_BFMI_LIMIT}): "
                "the momentum cannot carry the chains across the posterior's energy levels "
                "(heavy tails or a funnel); reparameterise."
            )
    return found


def _divergence_sentence(divergent, num_transitions):
    """A few divergences (under 1 % of the transitions, as NUTS at target_accept 0.8 gives on a
    non-centred eight schools in most seeds) ask for a check with a smaller step; more say the
    sampler misses part of the posterior."""
    if num_transitions > 1 and divergent < 0.01 * num_transitions:
        return (
            f"{divergent} divergent transitions ({divergent / num_transitions:.2%} of them): "
            "rerun with target_accept=0.95 (CLI: --set target_accept=0.95) to check that they "
            "vanish; if they persist, the "
            "sampler misses part of the posterior (reparameterise, e.g. non-centre a "
            "hierarchical scale)."
        )
    share = f" ({divergent / num_transitions:.1%} of them)" if num_transitions > 1 else ""
    return (
        f"{divergent} divergent transitions{share}: the sampler missed part of the "
        "posterior; reparameterise (e.g. non-centred) or raise target_accept (e.g. 0.95)."
    )


def _smc_checks(d, settings):
    found = []
    ess, num_particles = d.get("ess"), settings.get("num_particles")
    if ess is not None and num_particles and np.size(ess):
        low = float(np.min(ess))
        if low < max(10.0, 0.01 * num_particles):
            step = int(np.argmin(ess))
            found.append(
                f"ESS collapsed to {low:.1f} of {num_particles} particles at step {step}: the "
                "weights rest on a handful of particles and the evidence is unreliable; use more "
                "particles or the adaptive ladder (temperatures=None)."
            )
    return found
