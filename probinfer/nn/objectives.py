"""Variational objectives for a flow q on a Target's unconstrained space, from the log weights
log w = log p(x) − log q(x) of K draws x = f(z) (to be maximised; the runner minimises −bound).

* ``"elbo"``: mean(log w) — with sticking-the-landing gradients (Roeder et al. 2017: log q is
  evaluated with stopped parameters, which removes the score term whose expectation is zero;
  the gradient's variance vanishes when q = p) for the flows whose inverse is one pass (nsf,
  nsf_ar, realnvp, maf); the plain reparameterised gradient for the others (iaf, planar, radial: their
  inverse is iterative).
* ``"iwae"``: log mean_k w_k (Burda et al. 2016), a tighter bound as K grows.
* ``"miwae"``: the mean of M IWAE bounds of K/M draws each, M = K/4 groups of 4 (Rainforth et
  al. 2018, "Tighter Variational Bounds are Not Necessarily Better"); ``"ciwae"``: β ELBO +
  (1 − β) IWAE, β = 1/2. (PIWAE gives the inference network and a generative model different
  bounds; with no generative model — plain VI — it is the ELBO; amortized inference uses it.)
* ``"annealed"``: the ELBO with the log density tempered by β_t = min(1, 0.01 + t / (T/2))
  (the flows paper's schedule 0.01 + t/10⁴, stretched to reach 1 at half the run T so the
  second half fits the posterior itself).

>>> loss = make_loss("elbo", log_density, flow, num_particles=16, num_steps=5000)  # doctest: +SKIP
>>> value, grads = jax.value_and_grad(loss, has_aux=True)(params, key, t, batch)   # doctest: +SKIP
"""

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from probinfer.devices import constrain_leading
from probinfer.errors import DataError

__all__ = ["OBJECTIVES", "make_loss", "bound"]

OBJECTIVES = ("elbo", "iwae", "miwae", "ciwae", "annealed")
_STL_FLOWS = ("nsf", "nsf_ar", "realnvp", "maf")
_GROUP = 4


def bound(objective, log_w):
    """The objective's value from log weights ``log_w`` (K,)."""
    k = log_w.shape[0]
    if objective in ("elbo", "annealed"):
        return jnp.mean(log_w)
    if objective == "iwae":
        return logsumexp(log_w) - jnp.log(k)
    if objective == "miwae":
        groups = log_w.reshape(-1, _GROUP)
        return jnp.mean(logsumexp(groups, 1) - jnp.log(_GROUP))
    if objective == "ciwae":
        return 0.5 * jnp.mean(log_w) + 0.5 * (logsumexp(log_w) - jnp.log(k))
    raise DataError(f"objective must be one of {OBJECTIVES}, got '{objective}'.")


def make_loss(objective, log_density, flow, *, num_particles, num_steps, sharding=None):
    """``loss(params, key, t, batch) -> (−bound, ELBO estimate)``; ``log_density(x, batch)`` is
    the (minibatch) log density of one point; ``sharding`` splits the K draws over devices."""
    if objective not in OBJECTIVES:
        raise DataError(f"objective must be one of {OBJECTIVES}, got '{objective}'.")
    if objective == "miwae" and num_particles % _GROUP:
        raise DataError(
            f"objective='miwae' averages IWAE bounds over groups of {_GROUP} draws; "
            f"num_particles must be a multiple of {_GROUP}, got {num_particles}."
        )
    stl = objective == "elbo" and flow.kind in _STL_FLOWS
    half = max(1.0, num_steps / 2.0)

    def loss(params, key, t, batch):
        if stl:
            x = flow.sample(params, key, num_particles)
            log_q = flow.log_prob(jax.lax.stop_gradient(params), x)
        else:
            x, log_q = flow.sample_and_log_prob(params, key, num_particles)
        x = constrain_leading(x, sharding)
        log_p = jax.vmap(lambda point: log_density(point, batch))(x)
        log_w = log_p - log_q
        elbo = jnp.mean(log_w)
        if objective == "annealed":
            beta = jnp.minimum(1.0, 0.01 + t / half)
            return -jnp.mean(beta * log_p - log_q), elbo
        return -bound(objective, log_w), elbo

    return loss
