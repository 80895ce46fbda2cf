"""How an SMC run fails, in one sentence each: the prior particles' census at temperature 0 (NaN
or infinite log likelihoods get weight zero, with a warning naming the sites), and the errors a
run can end with (a NaN prior, too few finite particles, data impossible under every particle,
a stalled temperature, too many steps).
"""

import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from probinfer._utils import user_stacklevel
from probinfer.errors import NonFiniteError, ProbinferError

__all__ = ["OK", "Census", "admit", "nonfinite_sites", "warn_zero_weight", "raise_for"]

# Error codes raised after the jitted loop (a while_loop cannot raise).
OK, ALL_IMPOSSIBLE, STALLED, TOO_MANY_STEPS, NAN_AT_START, TOO_FEW_FINITE = range(6)
# A prior draw whose log likelihood is NaN or ±inf is a zero-weight particle; SMC goes on while at
# least this fraction of the prior particles (and at least 2) have a finite one.
MIN_FINITE_FRACTION = 0.01


class Census(NamedTuple):
    """The prior particles' log likelihoods at λ = 0: how many are NaN, +inf and −inf; ``first``:
    the first NaN log prior if any, else the first NaN or +inf log L; ``position``: its z."""

    nan: jax.Array
    positive_inf: jax.Array
    negative_inf: jax.Array
    first: jax.Array
    position: jax.Array = None


def admit(state, num_particles):
    """``(state, census, error)``: a prior particle whose log likelihood is NaN or ±inf gets log L
    = −inf, i.e. weight zero from the first λ > 0 on (a NaN log *prior* is a model bug: error
    ``NAN_AT_START``; fewer than ``MIN_FINITE_FRACTION`` particles without NaN/+inf:
    ``TOO_FEW_FINITE``)."""
    log_likelihood = state.log_likelihood.reshape(num_particles, -1)
    nan = jnp.isnan(log_likelihood).any(-1)
    positive_inf = (log_likelihood == jnp.inf).any(-1) & ~nan
    negative_inf = (log_likelihood == -jnp.inf).any(-1) & ~nan & ~positive_inf
    nan_prior = jnp.isnan(state.log_prior)
    broken = nan | positive_inf
    first = jnp.where(jnp.any(nan_prior), jnp.argmax(nan_prior), jnp.argmax(broken))
    census = Census(nan.sum(), positive_inf.sum(), negative_inf.sum(), first)
    minimum = max(2, int(np.ceil(MIN_FINITE_FRACTION * num_particles)))
    error = jnp.where(num_particles - broken.sum() < minimum, TOO_FEW_FINITE, OK)
    error = jnp.where(jnp.any(nan_prior), NAN_AT_START, error)
    finite = jnp.isfinite(state.log_likelihood)
    state = state._replace(log_likelihood=jnp.where(finite, state.log_likelihood, -jnp.inf))
    return state, census, error


def nonfinite_sites(target, census):
    """Names of the sites whose log probability is not finite at the census's first particle."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        terms = target.site_log_probs(jnp.asarray(census.position))
    return sorted(k for k, v in terms.items() if not np.all(np.isfinite(np.asarray(v))))


def warn_zero_weight(target, census, num_particles, broken_sites):
    sites = ", ".join(f"'{s}'" for s in broken_sites) or "(none found)"
    warnings.warn(
        f"SMC on '{target.name}': {int(census.nan)} of {num_particles} prior particles have a "
        f"NaN log likelihood, {int(census.positive_inf)} +inf and {int(census.negative_inf)} "
        f"−inf (site(s) {sites}); they get weight zero from the first temperature on "
        "(diagnostics['nonfinite_prior_draws']). If the likelihood should be finite there, "
        "make it numerically stable (e.g. compute scales on the log scale).",
        RuntimeWarning,
        stacklevel=user_stacklevel(),
    )


def raise_for(error, target, trace, num_steps, settings, census):
    max_steps = settings["max_steps"]
    temperature = float(trace.temperature[-1]) if num_steps else 0.0
    if error == NAN_AT_START:
        raise NonFiniteError(
            f"SMC on '{target.name}': the log prior is NaN for prior particle "
            f"{int(census.first)} at temperature 0 (a model bug: a prior draw must have a "
            f"finite prior density); {target.explain_nonfinite(census.position)}"
        )
    if error == TOO_FEW_FINITE:
        broken = int(census.nan + census.positive_inf)
        sites = ", ".join(f"'{s}'" for s in nonfinite_sites(target, census))
        raise NonFiniteError(
            f"SMC on '{target.name}': {broken} of {settings['num_particles']} prior "
            f"particles have a NaN or +inf log likelihood (site(s) {sites}), leaving fewer than "
            f"{MIN_FINITE_FRACTION:.0%} to go on; make the likelihood numerically stable or use "
            "a prior that keeps its parameters in a range where it is finite."
        )
    if error == ALL_IMPOSSIBLE:
        # The step that found every particle impossible started from the previous temperature.
        temperature = float(trace.temperature[-2]) if num_steps > 1 else 0.0
        raise NonFiniteError(
            f"SMC on '{target.name}': every particle has zero likelihood (log L = −inf) at "
            f"temperature {temperature:.3g} (step {num_steps}); the data are impossible under "
            "all prior draws — check the data against the likelihood's support, or use a prior "
            "that covers the region the data point to."
        )
    if error == STALLED:
        raise ProbinferError(
            f"SMC on '{target.name}': the temperature stopped rising at {temperature:.3g} "
            f"(step {num_steps}): the particle system is degenerate. Use more particles, more "
            "MCMC steps per temperature (num_mcmc_steps) or a lower target_ess."
        )
    if error == TOO_MANY_STEPS:
        raise ProbinferError(
            f"SMC on '{target.name}': reached temperature {temperature:.3g} after max_steps="
            f"{max_steps} steps; raise max_steps or lower target_ess."
        )
