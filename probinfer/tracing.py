"""Reading a model once: its sites, their transforms, and which sites follow the data axis.

The model is run under NumPyro's effect handlers (``seed``, ``substitute``, ``uncondition``,
``trace``); nothing here is a tracer of our own. :func:`analyse` runs it once with the full data
and once with one data point, and returns a :class:`Structure` — the static facts every
:class:`~probinfer.Target` function needs:

* the continuous latent sites in ``z`` order (with their supports, for ``biject_to``), discrete
  latent, observed, ``factor`` and ``deterministic`` sites;
* the **data plates**: plates whose size is the number of data points ``N`` and follows the data
  arguments (size 1 with one data point). Every observed or ``factor`` site inside a data plate is
  scaled by ``N / B`` on a minibatch of ``B`` points — NumPyro's own subsampling scale, applied to
  the plate's sites as its ``scale`` would be.
* A data argument that reaches an observed or ``factor`` site *outside* every data plate (say an
  observation ``Normal(mu, 1).expand([N]).to_event(1)``) cannot be minibatched without bias, so it
  is refused here with a sentence naming the site.
"""

import inspect
from collections import OrderedDict
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from jax.flatten_util import ravel_pytree
from numpyro import handlers
from numpyro.distributions import ImproperUniform, Unit
from numpyro.distributions.transforms import biject_to

from probinfer.errors import DataError, ModelError

__all__ = ["SiteInfo", "Structure", "analyse", "trace_model", "site_log_prob", "improper_init_fn"]


@dataclass(frozen=True)
class SiteInfo:
    """Static description of one latent site.

    Attributes:
        name: site name.
        shape: constrained value shape (batch + event).
        unconstrained_shape: shape of the site in the unconstrained space.
        support: the distribution's support (a NumPyro constraint).
        discrete: whether the support is discrete.
        improper: whether the prior is ``ImproperUniform`` (cannot be sampled).
    """

    name: str
    shape: tuple
    unconstrained_shape: tuple
    support: object
    discrete: bool
    improper: bool


@dataclass(frozen=True)
class Structure:
    """What one reading of the model tells every Target function (see the module docstring)."""

    latent_sites: OrderedDict
    discrete_sites: tuple
    observed_sites: tuple
    factor_sites: tuple
    deterministic_sites: tuple
    param_values: dict
    observed_shapes: dict
    prior_sites: frozenset
    data_plates: frozenset
    batched_sites: frozenset
    per_datum_latent: object
    unravel: object
    dim: int
    dtype: object


def base_dist(fn):
    while hasattr(fn, "base_dist"):
        fn = fn.base_dist
    return fn


def _is_factor(site):
    return isinstance(site["fn"], Unit) or site["infer"].get("is_auxiliary", False)


def site_log_prob(site):
    """Sum of the site's log probability times its plate scale (as NumPyro's ``log_density``)."""
    value, fn = site["value"], site["fn"]
    if site["intermediates"]:
        log_prob = fn.log_prob(value, site["intermediates"])
    else:
        log_prob = fn.log_prob(value)
    if site["scale"] is not None:
        log_prob = site["scale"] * log_prob
    return jnp.sum(log_prob)


def improper_init_fn(site):
    """Substitute uniform(-2, 2) unconstrained draws for improper latent sites (as NumPyro)."""
    if site["type"] != "sample" or site["is_observed"]:
        return None
    if not isinstance(base_dist(site["fn"]), ImproperUniform):
        return None
    transform = biject_to(site["fn"].support)
    shape = transform.inverse_shape(site["fn"].shape())
    key = site["kwargs"]["rng_key"]
    if key is None:
        key = jax.random.PRNGKey(0)
    return transform(jax.random.uniform(key, shape, minval=-2.0, maxval=2.0))


def trace_model(
    model, signature, arguments, key, substitute_fn=None, overrides=None, uncondition=False
):
    """NumPyro trace of ``model`` called with ``arguments`` (updated by ``overrides``)."""
    fn = handlers.seed(model, rng_seed=key)
    if substitute_fn is not None:
        fn = handlers.substitute(fn, substitute_fn=substitute_fn)
    if uncondition:
        fn = handlers.uncondition(fn)
    merged = OrderedDict(arguments)
    if overrides:
        merged.update(overrides)
    bound = inspect.BoundArguments(signature, merged)
    # NumPyro validates concrete parameters on construction; a heavy-tailed prior draw (a Cauchy
    # location at 1e5, say) makes a scale overflow and would raise while tracing. Invalid values
    # show up as non-finite log densities instead, which every runner checks and explains.
    # The block keeps these sites from the handlers of a model this trace runs inside (a Target
    # method called in another model: a learned likelihood maps its θ through the simulator's).
    with numpyro.validation_enabled(False), handlers.block():
        return handlers.trace(fn).get_trace(*bound.args, **bound.kwargs)


def _plate_sizes(trace):
    return {
        frame.name: frame.size
        for site in trace.values()
        if site["type"] == "sample"
        for frame in site["cond_indep_stack"]
    }


def _check_finite_observations(site, model_name):
    """A NaN or ±inf observation makes the log density NaN or −inf everywhere, which a sampler
    would report much later as a non-finite density: name the site and the first bad entries
    now. Entries a ``.mask(...)`` switches off are the user's placeholders and are allowed."""
    value = site["value"]
    if isinstance(value, jax.core.Tracer) or not jnp.issubdtype(
        jnp.result_type(value), jnp.inexact
    ):
        return
    bad = ~np.isfinite(np.asarray(value))
    mask = getattr(site["fn"], "_mask", None)
    if mask is not None and not isinstance(mask, bool | jax.core.Tracer):
        bad &= np.broadcast_to(np.asarray(mask, bool), bad.shape)
    if not bad.any():
        return
    counts = {
        "NaN": int(np.sum(bad & np.isnan(np.asarray(value)))),
        "infinite value": int(np.sum(bad & np.isinf(np.asarray(value)))),
    }
    what = " and ".join(f"{n} {k}{'s' if n > 1 else ''}" for k, n in counts.items() if n)
    where = [tuple(int(i) for i in index) for index in np.argwhere(bad)[:3]]
    at = ", ".join(str(w[0]) if len(w) == 1 else str(w) for w in where)
    raise DataError(
        f"observed site '{site['name']}' of '{model_name}' has {what} (index {at}"
        f"{', …' if bad.sum() > 3 else ''}); drop those entries, or set them to any finite "
        "value and mask them out (dist.Normal(...).mask(keep), keep False there)."
    )


def analyse(model, signature, arguments, data_names, prior_sites, name):
    """Read the model's sites and data plates; raise one sentence for what cannot work."""
    key = jax.random.PRNGKey(0)
    try:
        full = trace_model(model, signature, arguments, key, improper_init_fn)
    except Exception as exc:  # noqa: BLE001 - re-raised with the model named
        raise ModelError(
            f"Tracing model '{name}' with its arguments failed: {exc}. Check that the "
            "arguments passed to compile() are the ones the model expects."
        ) from exc
    latent, kinds = OrderedDict(), {"discrete": (), "observed": (), "factor": (), "det": ()}
    param_values, observed_shapes, unconstrained = {}, {}, OrderedDict()
    for site in full.values():
        kind, site_name = site["type"], site["name"]
        if kind == "param":
            param_values[site_name] = site["value"]
        elif kind == "deterministic":
            kinds["det"] += (site_name,)
        elif kind != "sample":
            continue
        elif site["is_observed"]:
            if _is_factor(site):
                kinds["factor"] += (site_name,)
            else:
                kinds["observed"] += (site_name,)
                observed_shapes[site_name] = tuple(jnp.shape(site["value"]))
                _check_finite_observations(site, name)
        elif site["fn"].support.is_discrete:
            kinds["discrete"] += (site_name,)
        else:
            value = site["value"]
            free = biject_to(site["fn"].support).inv(value)
            unconstrained[site_name] = free
            latent[site_name] = SiteInfo(
                name=site_name,
                shape=tuple(jnp.shape(value)),
                unconstrained_shape=tuple(jnp.shape(free)),
                support=site["fn"].support,
                discrete=False,
                improper=isinstance(base_dist(site["fn"]), ImproperUniform),
            )
    likelihood_sites = kinds["observed"] + kinds["factor"]
    unknown = frozenset(prior_sites) - set(likelihood_sites)
    if unknown:
        raise ModelError(
            f"prior_sites names {sorted(unknown)}, which are not observed or factor sites of "
            f"'{name}' (those are {sorted(likelihood_sites)})."
        )
    flat, unravel = ravel_pytree(dict(unconstrained))
    data_plates, batched, per_datum = _data_axis(
        model, signature, arguments, data_names, name, full, latent, likelihood_sites
    )
    return Structure(
        latent_sites=latent,
        discrete_sites=kinds["discrete"],
        observed_sites=kinds["observed"],
        factor_sites=kinds["factor"],
        deterministic_sites=kinds["det"],
        param_values=param_values,
        observed_shapes=observed_shapes,
        prior_sites=frozenset(prior_sites),
        data_plates=data_plates,
        batched_sites=batched,
        per_datum_latent=per_datum,
        unravel=unravel,
        dim=int(flat.shape[0]),
        dtype=flat.dtype if flat.size else jnp.result_type(float),
    )


def _data_axis(model, signature, arguments, data_names, name, full, latent, likelihood_sites):
    """``(data plates, sites inside them, a per-datum latent site or None)``."""
    if not data_names:
        return frozenset(), frozenset(), None
    num_data = int(jnp.shape(arguments[data_names[0]])[0])
    if num_data < 2:  # a minibatch is the whole data: nothing is ever rescaled
        return frozenset(), frozenset(likelihood_sites), None
    one = {k: jnp.asarray(arguments[k])[:1] for k in data_names}
    try:
        small = trace_model(
            model, signature, arguments, jax.random.PRNGKey(0), improper_init_fn, overrides=one
        )
    except Exception as exc:  # noqa: BLE001 - re-raised with the remedy
        raise DataError(
            f"Model '{name}' fails when its data arguments {list(data_names)} hold one data "
            f"point ({exc}); minibatching calls it with B of the N points, so take plate sizes "
            "from the data (e.g. pi.plate('data', x.shape[0])), not from constants."
        ) from exc
    full_sizes, small_sizes = _plate_sizes(full), _plate_sizes(small)
    plates = frozenset(
        plate
        for plate, size in full_sizes.items()
        if size == num_data and small_sizes.get(plate) == 1
    )
    batched = set()
    for site_name in likelihood_sites:
        frames = {frame.name for frame in full[site_name]["cond_indep_stack"]}
        if frames & plates:
            batched.add(site_name)
            continue
        whole = site_log_prob(full[site_name])
        part = site_log_prob(small[site_name])
        if np.allclose(np.asarray(whole), np.asarray(part), equal_nan=True):
            continue  # does not depend on the data: counted once in every minibatch
        fixed = [f.name for f in full[site_name]["cond_indep_stack"] if f.size == num_data]
        if fixed:
            raise DataError(
                f"Plate '{fixed[0]}' of '{name}' keeps size {num_data} when the data arguments "
                f"{list(data_names)} hold fewer points, so site '{site_name}' cannot be "
                "minibatched; take plate sizes from the data (e.g. pi.plate('data', "
                "x.shape[0])), not from constants."
            )
        raise DataError(
            f"Site '{site_name}' of '{name}' depends on the data arguments "
            f"{list(data_names)} outside every plate over the data, so a minibatch cannot "
            "be scaled to the whole data set; put it in a plate over the data "
            f"(with pi.plate('data', {num_data}): ...) or leave it out of data=."
        )
    per_datum = next(
        (k for k, info in latent.items() if tuple(jnp.shape(small[k]["value"])) != info.shape),
        None,
    )
    return plates, frozenset(batched), per_datum
