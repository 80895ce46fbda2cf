"""``compile``: a model written in the model language becomes a :class:`Target`.

A Target is the one object every inference method consumes. It holds pure JAX functions over an
unconstrained flat vector ``z`` of length ``target.dim``:

* ``log_density(z) = log_prior(z) + log_likelihood(z)``. The prior part contains the prior log
  densities of the latent sites *and* the log-Jacobians of the maps from unconstrained space
  (``numpyro.distributions.transforms.biject_to``); the likelihood part holds the observed sites and
  the user's ``factor`` sites, each multiplied by its plate scale. The sum equals
  ``numpyro.infer.util.log_density`` at the constrained values plus the Jacobian terms, so tempering
  (which needs the split) and minibatching (which scales only the likelihood) are right.
* ``minibatch_log_density(z, batch)``: the prior plus ``N / B`` times the likelihood of a batch of
  ``B`` of the ``N`` data points, where the data are the model arguments named by ``data=``.
* ``constrain``, ``unconstrain``, ``ravel``, ``unravel``, ``init``, ``sample_prior`` and
  ``simulate`` (the prior predictive).

The model is traced with NumPyro's effect handlers (``trace``, ``seed``, ``substitute``,
``uncondition``); no tracer of our own.
"""

import copy
import inspect
import warnings
from collections import OrderedDict
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from numpyro import handlers
from numpyro.distributions import ImproperUniform, Unit
from numpyro.distributions.transforms import biject_to
from numpyro.distributions.util import sum_rightmost

from probinfer._utils import as_key
from probinfer.errors import DataError, DiscreteLatentError, ModelError, NonFiniteError

__all__ = ["compile", "Target", "SiteInfo"]


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


def _base_dist(fn):
    while hasattr(fn, "base_dist"):
        fn = fn.base_dist
    return fn


def _is_factor(site):
    return isinstance(site["fn"], Unit) or site["infer"].get("is_auxiliary", False)


def _site_log_prob(site):
    """Sum of the site's log probability times its plate scale (as NumPyro's ``log_density``)."""
    value, fn = site["value"], site["fn"]
    if site["intermediates"]:
        log_prob = fn.log_prob(value, site["intermediates"])
    else:
        log_prob = fn.log_prob(value)
    if site["scale"] is not None:
        log_prob = site["scale"] * log_prob
    return jnp.sum(log_prob)


class Target:
    """A compiled model. Build one with :func:`compile`; see the module docstring for the math.

    Attributes:
        dim: length of the unconstrained vector ``z``.
        latent_sites: ``{name: SiteInfo}`` of the continuous latent sites, in ``z`` order.
        discrete_sites: names of discrete latent sites (gradient methods refuse them).
        observed_sites: names of observed sites (the likelihood), ``factor`` sites excluded.
        factor_sites: names of ``factor`` sites.
        deterministic_sites: names of ``deterministic`` sites.
        data_names: model arguments marked as data (minibatchable).
        num_data: their common leading dimension ``N`` (``None`` without data).
    """

    def __init__(self, model, signature, arguments, data_names, prior_sites, name):
        self.model = model
        self.name = name
        self._signature = signature
        self._arguments = arguments
        self.data_names = tuple(data_names)
        self._prior_sites = frozenset(prior_sites)
        self.num_data = None
        if self.data_names:
            self.num_data = int(jnp.shape(arguments[self.data_names[0]])[0])
        self._build()

    # -- tracing ---------------------------------------------------------------------------------

    def _call_args(self, overrides=None):
        arguments = OrderedDict(self._arguments)
        if overrides:
            arguments.update(overrides)
        bound = inspect.BoundArguments(self._signature, arguments)
        return bound.args, bound.kwargs

    def _trace(self, key, substitute_fn=None, overrides=None, uncondition=False):
        fn = handlers.seed(self.model, rng_seed=key)
        if substitute_fn is not None:
            fn = handlers.substitute(fn, substitute_fn=substitute_fn)
        if uncondition:
            fn = handlers.uncondition(fn)
        args, kwargs = self._call_args(overrides)
        return handlers.trace(fn).get_trace(*args, **kwargs)

    def _build(self):
        try:
            prototype = self._trace(jax.random.PRNGKey(0), substitute_fn=_improper_init_fn)
        except Exception as exc:  # noqa: BLE001 - re-raised with the model named
            raise ModelError(
                f"Tracing model '{self.name}' with its arguments failed: {exc}. Check that the "
                "arguments passed to compile() are the ones the model expects."
            ) from exc
        self.latent_sites = OrderedDict()
        self.discrete_sites = ()
        self.observed_sites = ()
        self.factor_sites = ()
        self.deterministic_sites = ()
        self.param_values = {}
        self._observed_shapes = {}
        unconstrained = OrderedDict()
        for site in prototype.values():
            kind = site["type"]
            if kind == "param":
                self.param_values[site["name"]] = site["value"]
            elif kind == "deterministic":
                self.deterministic_sites += (site["name"],)
            elif kind != "sample":
                continue
            elif site["is_observed"]:
                if _is_factor(site):
                    self.factor_sites += (site["name"],)
                else:
                    self.observed_sites += (site["name"],)
                    self._observed_shapes[site["name"]] = tuple(jnp.shape(site["value"]))
            elif site["fn"].support.is_discrete:
                self.discrete_sites += (site["name"],)
            else:
                name, value = site["name"], site["value"]
                transform = biject_to(site["fn"].support)
                free = transform.inv(value)
                unconstrained[name] = free
                self.latent_sites[name] = SiteInfo(
                    name=name,
                    shape=tuple(jnp.shape(value)),
                    unconstrained_shape=tuple(jnp.shape(free)),
                    support=site["fn"].support,
                    discrete=False,
                    improper=isinstance(_base_dist(site["fn"]), ImproperUniform),
                )
        unknown = self._prior_sites - set(self.observed_sites) - set(self.factor_sites)
        if unknown:
            raise ModelError(
                f"prior_sites names {sorted(unknown)}, which are not observed or factor sites of "
                f"'{self.name}' (those are {sorted(self.observed_sites + self.factor_sites)})."
            )
        flat, self._unravel = ravel_pytree(dict(unconstrained))
        self.dim = int(flat.shape[0])
        self._dtype = flat.dtype if flat.size else jnp.result_type(float)
        self._per_datum_latent = None
        self._batched_sites = self._find_batched_sites(prototype)

    def _find_batched_sites(self, full_trace):
        """Observed/factor sites whose shape follows the data's leading axis get the N/B scale."""
        if not self.data_names or self.num_data < 2:
            return frozenset(self.observed_sites + self.factor_sites)
        small = {k: self._arguments[k][:1] for k in self.data_names}
        small_trace = self._trace(
            jax.random.PRNGKey(0), substitute_fn=_improper_init_fn, overrides=small
        )
        batched = set()
        for name in self.observed_sites + self.factor_sites:
            if jnp.shape(small_trace[name]["fn"].log_prob(small_trace[name]["value"])) != jnp.shape(
                full_trace[name]["fn"].log_prob(full_trace[name]["value"])
            ):
                batched.add(name)
        for name, info in self.latent_sites.items():
            if tuple(jnp.shape(small_trace[name]["value"])) != info.shape:
                self._per_datum_latent = name
        return frozenset(batched)

    # -- the flat space ----------------------------------------------------------------------------

    def _check_continuous(self):
        if self.discrete_sites:
            raise DiscreteLatentError(
                f"Model '{self.name}' has discrete latent site(s) {list(self.discrete_sites)}; "
                "methods over the unconstrained space need continuous latents: marginalise the "
                "discrete site out of the model (sum it with logsumexp inside a factor) or observe it."
            )

    def ravel(self, values):
        """Flatten a dict of *unconstrained* site values into ``z`` of shape ``(dim,)``."""
        flat, _ = ravel_pytree({k: values[k] for k in self.latent_sites})
        return flat

    def unravel(self, z):
        """Split ``z`` of shape ``(dim,)`` into a dict of unconstrained site values."""
        return self._unravel(z)

    def _substitute_fn(self, z):
        free = self._unravel(z)

        def substitute_fn(site):
            if site["type"] == "sample" and not site["is_observed"] and site["name"] in free:
                return biject_to(site["fn"].support)(free[site["name"]])
            return None

        return free, substitute_fn

    def _log_terms(self, z, overrides=None):
        """Return (log prior incl. Jacobians, dict of per-site likelihood terms, trace)."""
        self._check_continuous()
        z = jnp.asarray(z)
        if z.shape != (self.dim,):
            raise DataError(
                f"z has shape {z.shape} but target '{self.name}' expects ({self.dim},); "
                "vmap the function over leading axes."
            )
        free, substitute_fn = self._substitute_fn(z)
        tr = self._trace(jax.random.PRNGKey(0), substitute_fn=substitute_fn, overrides=overrides)
        log_prior = jnp.zeros((), self._dtype)
        likelihood = {}
        for site in tr.values():
            if site["type"] != "sample":
                continue
            name = site["name"]
            if name in self.latent_sites:
                log_prior = log_prior + _site_log_prob(site)
                transform = biject_to(site["fn"].support)
                log_det = transform.log_abs_det_jacobian(free[name], site["value"])
                log_det = sum_rightmost(
                    log_det,
                    jnp.ndim(log_det) - jnp.ndim(site["value"]) + len(site["fn"].event_shape),
                )
                if site["scale"] is not None:
                    log_det = site["scale"] * log_det
                log_prior = log_prior + jnp.sum(log_det)
            elif name in self._prior_sites:
                log_prior = log_prior + _site_log_prob(site)
            elif site["is_observed"]:
                likelihood[name] = _site_log_prob(site)
        return log_prior, likelihood, tr

    def log_prior(self, z):
        """Log prior density of ``z`` (unconstrained), Jacobians included. ``z: (dim,)`` → scalar."""
        return self._log_terms(z)[0]

    def log_likelihood(self, z):
        """Log likelihood: observed and ``factor`` sites, plate-scaled. ``z: (dim,)`` → scalar."""
        return sum(self._log_terms(z)[1].values(), jnp.zeros((), self._dtype))

    def log_density(self, z):
        """Unnormalised log posterior density on the unconstrained space. ``z: (dim,)`` → scalar.

        >>> target = compile(model, y)                      # doctest: +SKIP
        >>> jax.jit(jax.grad(target.log_density))(z)        # doctest: +SKIP
        """
        log_prior, likelihood, _ = self._log_terms(z)
        return log_prior + sum(likelihood.values(), jnp.zeros((), self._dtype))

    def batch(self, indices):
        """The data arguments at ``indices`` (shape ``(B,)``), as a dict ready for minibatching."""
        self._check_data()
        return {k: jnp.asarray(self._arguments[k])[indices] for k in self.data_names}

    @property
    def data(self):
        """The full data arguments as a dict ``{name: array (N, ...)}``."""
        return {k: self._arguments[k] for k in self.data_names}

    def _check_data(self):
        if not self.data_names:
            raise DataError(
                f"Target '{self.name}' has no data arguments marked; compile with "
                "data=('x', 'y') naming the model arguments whose leading axis indexes data points."
            )
        per_datum = self._per_datum_latent
        if per_datum is not None:
            raise ModelError(
                f"Latent site '{per_datum}' has one value per data point, so a minibatch changes "
                "the latent space; minibatching needs global latents only."
            )

    def minibatch_log_density(self, z, batch):
        """Prior plus the likelihood of a minibatch scaled by ``N / B``.

        ``batch`` is a dict ``{data_name: array (B, ...)}`` (e.g. from :meth:`batch`) or a tuple in
        the order of ``data``. Observed sites whose shape follows the data axis are scaled by
        ``N / B``; sites that do not depend on the data axis are counted once. Averaged over a
        partition of the data into equal batches it equals :meth:`log_density`.
        """
        self._check_data()
        if not isinstance(batch, dict):
            batch = dict(zip(self.data_names, batch, strict=True))
        missing = set(self.data_names) - set(batch)
        if missing:
            raise DataError(f"batch lacks data argument(s) {sorted(missing)}.")
        sizes = {k: jnp.shape(v)[0] for k, v in batch.items()}
        if len(set(sizes.values())) != 1:
            raise DataError(f"batch arguments have different leading sizes: {sizes}.")
        batch_size = next(iter(sizes.values()))
        log_prior, likelihood, _ = self._log_terms(z, overrides=batch)
        scale = self.num_data / batch_size
        total = log_prior
        for name, value in likelihood.items():
            total = total + (scale * value if name in self._batched_sites else value)
        return total

    def log_likelihood_per_datum(self, z):
        """Log likelihood of each data point: ``z (dim,) -> (N,)``, summing to :meth:`log_likelihood`.

        Needs data arguments and observed sites that all follow the data axis (a site without a
        data axis cannot be split between data points). Used by data-annealed SMC.
        """
        self._check_data()
        whole = (
            set(self.observed_sites + self.factor_sites) - self._batched_sites - self._prior_sites
        )
        if whole:
            raise ModelError(
                f"site(s) {sorted(whole)} of '{self.name}' have no per-datum axis, so the likelihood "
                "cannot be split by data point; data annealing needs every observed site inside "
                "the data plate."
            )
        data = self.data

        def one(index):
            single = {
                k: jax.lax.dynamic_slice_in_dim(jnp.asarray(v), index, 1) for k, v in data.items()
            }
            likelihood = self._log_terms(z, overrides=single)[1]
            return sum(likelihood.values(), jnp.zeros((), self._dtype))

        return jax.vmap(one)(jnp.arange(self.num_data))

    # -- named values ------------------------------------------------------------------------------

    def constrain(self, z):
        """Named constrained values (latent and ``deterministic`` sites) of ``z``.

        ``z: (..., dim)``; each returned array has shape ``(..., *site_shape)``.
        """
        z = jnp.asarray(z)
        if z.ndim > 1:
            return jax.vmap(self.constrain)(z)
        self._check_continuous()
        _, substitute_fn = self._substitute_fn(z)
        tr = self._trace(jax.random.PRNGKey(0), substitute_fn=substitute_fn)
        names = tuple(self.latent_sites) + self.deterministic_sites
        return {name: tr[name]["value"] for name in names}

    def unconstrain(self, values):
        """``z`` of shape ``(..., dim)`` from a dict of constrained latent values.

        Leading batch axes (beyond each site's shape) are mapped over.
        """
        self._check_continuous()
        first = next(iter(self.latent_sites.values()), None)
        if first is not None and jnp.ndim(values[first.name]) > len(first.shape):
            return jax.vmap(self.unconstrain)({k: values[k] for k in self.latent_sites})
        data = {k: values[k] for k in self.latent_sites}
        tr = handlers.trace(handlers.substitute(handlers.seed(self.model, 0), data=data))
        args, kwargs = self._call_args()
        tr = tr.get_trace(*args, **kwargs)
        free = {k: biject_to(tr[k]["fn"].support).inv(tr[k]["value"]) for k in self.latent_sites}
        return self.ravel(free)

    # -- initial points and the prior ---------------------------------------------------------------

    def _draw_unconstrained(self, key):
        tr = self._trace(key, substitute_fn=_improper_init_fn)
        free = {k: biject_to(tr[k]["fn"].support).inv(tr[k]["value"]) for k in self.latent_sites}
        return self.ravel(free)

    def init_fn(self, key, num_points, max_tries=100):
        """Pure, jittable core of :meth:`init`: returns ``(z (n, dim), ok (n,))``."""
        self._check_continuous()

        def valid(z):
            value, grad = jax.value_and_grad(self.log_density)(z)
            return jnp.isfinite(value) & jnp.all(jnp.isfinite(grad))

        def one(key):
            def cond(state):
                tries, _, _, ok = state
                return (~ok) & (tries < max_tries)

            def body(state):
                tries, key, _, _ = state
                key, sub = jax.random.split(key)
                z = self._draw_unconstrained(sub)
                return tries + 1, key, z, valid(z)

            z0 = jnp.zeros((self.dim,), self._dtype)
            _, _, z, ok = jax.lax.while_loop(cond, body, (0, key, z0, jnp.array(False)))
            return z, ok

        return jax.vmap(one)(jax.random.split(key, num_points))

    def init(self, key, num_points, max_tries=100):
        """``num_points`` starting points ``(num_points, dim)`` with finite density and gradient.

        Each point is a prior draw (uniform on (-2, 2) in unconstrained space for improper sites);
        a draw whose log density or gradient is not finite is redrawn, up to ``max_tries`` times,
        so heavy-tailed priors (Cauchy) cannot break initialisation. Raises
        :class:`~probinfer.errors.NonFiniteError` naming the offending site otherwise.
        """
        if getattr(self, "_init_jit", None) is None:  # compiled once per Target
            self._init_jit = jax.jit(self.init_fn, static_argnums=(1, 2))
        z, ok = self._init_jit(as_key(key), num_points, max_tries)
        ok = np.asarray(ok)
        if not ok.all():
            bad = int(np.argmin(ok))
            raise NonFiniteError(
                f"No finite log density (or gradient) for point {bad} of '{self.name}' after "
                f"{max_tries} prior draws; {self.explain_nonfinite(z[bad])}"
            )
        return z

    def site_log_probs(self, z):
        """Per-site log probability terms at ``z`` (Jacobians under ``_<site>_log_det``)."""
        free, substitute_fn = self._substitute_fn(jnp.asarray(z))
        tr = self._trace(jax.random.PRNGKey(0), substitute_fn=substitute_fn)
        terms = {}
        for site in tr.values():
            if site["type"] == "sample":
                terms[site["name"]] = _site_log_prob(site)
                if site["name"] in free:
                    transform = biject_to(site["fn"].support)
                    terms[f"_{site['name']}_log_det"] = jnp.sum(
                        transform.log_abs_det_jacobian(free[site["name"]], site["value"])
                    )
        return terms

    def explain_nonfinite(self, z):
        """One sentence naming the site(s) whose log probability is not finite at ``z``."""
        with warnings.catch_warnings():
            # NumPyro warns about out-of-support values; the sentence below says it better.
            warnings.simplefilter("ignore")
            terms = {k: float(v) for k, v in self.site_log_probs(z).items()}
        bad = {k: v for k, v in terms.items() if not np.isfinite(v)}
        if not bad:
            grad = np.asarray(jax.grad(self.log_density)(jnp.asarray(z)))
            free = self.unravel(jnp.asarray(grad))
            bad_grad = [k for k, v in free.items() if not np.all(np.isfinite(np.asarray(v)))]
            return (
                f"the gradient is not finite in site(s) {bad_grad}; check the model's "
                "parameterisation (e.g. a scale that can reach zero)."
            )
        listed = ", ".join(f"'{k}' (log prob {v})" for k, v in bad.items())
        return (
            f"site(s) {listed} are not finite; check that the data lie in the support of the "
            "observed distributions and that the priors' parameters are valid."
        )

    def sample_prior(self, key, num_samples):
        """``num_samples`` prior draws: ``{site: (num_samples, *shape)}`` for latent and
        deterministic sites (constrained). Observed sites stay at their data."""
        self._check_proper()
        names = tuple(self.latent_sites) + self.discrete_sites + self.deterministic_sites

        def one(key):
            tr = self._trace(key)
            return {name: tr[name]["value"] for name in names}

        return jax.jit(jax.vmap(one))(jax.random.split(as_key(key), num_samples))

    def simulate(self, key, num_samples):
        """Draws from the prior predictive: ``(params, observations)``.

        ``params``: ``{latent or deterministic site: (num_samples, *shape)}``; ``observations``:
        ``{observed site: (num_samples, *shape)}`` simulated from the likelihood given ``params``
        (the model's non-data arguments, such as covariates, stay fixed).
        """
        self._check_proper()
        names = tuple(self.latent_sites) + self.discrete_sites + self.deterministic_sites

        def one(key):
            tr = self._trace(key, uncondition=True)
            params = {name: tr[name]["value"] for name in names}
            observations = {name: tr[name]["value"] for name in self.observed_sites}
            return params, observations

        return jax.jit(jax.vmap(one))(jax.random.split(as_key(key), num_samples))

    def condition(self, observations):
        """The same model with new values for its observed sites (e.g. a simulated data set).

        ``observations``: ``{observed site: array}`` with the sites' shapes (from
        :meth:`simulate`). The latent space is unchanged, so this is cheap and traceable: the
        values may be JAX tracers, which is how the calibration layer vmaps a method over data
        sets. A site named like a ``data`` argument of the same shape replaces that argument (so
        minibatching sees the new data); any other site is conditioned with NumPyro's
        ``condition`` handler.

        >>> params, obs = target.simulate(key, 1)                          # doctest: +SKIP
        >>> posterior = pi.mcmc(target.condition({k: v[0] for k, v in obs.items()}), key=0)  # doctest: +SKIP
        """
        unknown = set(observations) - set(self.observed_sites)
        if unknown:
            raise DataError(
                f"condition() got {sorted(unknown)}, which are not observed sites of "
                f"'{self.name}' (those are {list(self.observed_sites)})."
            )
        arguments, sites = dict(self._arguments), {}
        for name, value in observations.items():
            if jnp.shape(value) != self._observed_shapes[name]:
                raise DataError(
                    f"observed site '{name}' of '{self.name}' has shape "
                    f"{self._observed_shapes[name]}, but condition() got {jnp.shape(value)}."
                )
            if name in self.data_names and jnp.shape(arguments[name]) == jnp.shape(value):
                arguments[name] = value
            else:
                sites[name] = value
        new = copy.copy(self)
        new._arguments = arguments
        if sites:
            new.model = handlers.condition(self.model, data=sites)
        return new

    def _check_proper(self):
        improper = [k for k, v in self.latent_sites.items() if v.improper]
        if improper:
            raise ModelError(
                f"Site(s) {improper} of '{self.name}' have an improper prior (ImproperUniform), "
                "which cannot be sampled; give them a proper prior to simulate from the model."
            )

    def __repr__(self):
        sites = ", ".join(f"{k}{list(v.shape)}" for k, v in self.latent_sites.items())
        return (
            f"Target({self.name}: dim={self.dim}, latent=[{sites}], "
            f"observed={list(self.observed_sites)}, data={list(self.data_names)})"
        )


def _improper_init_fn(site):
    """Substitute uniform(-2, 2) unconstrained draws for improper latent sites (as NumPyro)."""
    if site["type"] != "sample" or site["is_observed"]:
        return None
    if not isinstance(_base_dist(site["fn"]), ImproperUniform):
        return None
    transform = biject_to(site["fn"].support)
    shape = transform.inverse_shape(site["fn"].shape())
    key = site["kwargs"]["rng_key"]
    if key is None:
        key = jax.random.PRNGKey(0)
    return transform(jax.random.uniform(key, shape, minval=-2.0, maxval=2.0))


def compile(model, *args, data=(), prior_sites=(), name=None, **kwargs):  # noqa: A001
    """Compile a model in the model language into a :class:`Target`.

    Args:
        model: a Python function using ``probinfer.sample`` / ``plate`` / ``factor`` / ...
            (any NumPyro model).
        *args, **kwargs: the model's arguments, as you would call it (observations included).
        data: names of the model's parameters whose leading axis indexes data points; they are
            what ``minibatch_log_density`` slices. All must share the leading size ``N``.
        prior_sites: observed or ``factor`` sites to count in the prior instead of the likelihood
            (by default every ``factor`` is part of the likelihood, so tempering reaches it).
        name: label used in messages (defaults to the function's name).

    Returns:
        Target with ``dim``, ``log_density``, ``log_prior``, ``log_likelihood``,
        ``minibatch_log_density``, ``constrain``, ``unconstrain``, ``init``, ``sample_prior``,
        ``simulate``.

    Example:
        >>> import probinfer as pi
        >>> from probinfer import dist
        >>> def model(x, y=None):
        ...     w = pi.sample("w", dist.Normal(0, 1).expand([x.shape[1]]).to_event(1))
        ...     with pi.plate("data", x.shape[0]):
        ...         pi.sample("y", dist.Bernoulli(logits=x @ w), obs=y)
        >>> target = pi.compile(model, x, y=y, data=("x", "y"))     # doctest: +SKIP
    """
    name = name or getattr(model, "__name__", "model")
    signature = inspect.signature(model)
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise ModelError(
            f"compile() got arguments that do not fit {name}{signature}: {exc}."
        ) from exc
    bound.apply_defaults()
    if isinstance(data, str):
        data = (data,)
    unknown = [d for d in data if d not in bound.arguments]
    if unknown:
        raise DataError(
            f"data names {unknown} are not parameters of {name}{signature}; name the model "
            f"arguments that hold data points (one of {list(signature.parameters)})."
        )
    shapes = {}
    for d in data:
        value = bound.arguments[d]
        if value is None or jnp.ndim(value) == 0:
            raise DataError(
                f"data argument '{d}' of {name} is {'None' if value is None else 'a scalar'}; "
                "data arguments must be arrays whose leading axis indexes data points."
            )
        shapes[d] = tuple(jnp.shape(value))
    if len({s[0] for s in shapes.values()}) > 1:
        listed = ", ".join(f"'{k}' {v}" for k, v in shapes.items())
        raise DataError(
            f"data arguments of {name} disagree in their leading (data-point) dimension: {listed}; "
            "every data argument must have one row per data point."
        )
    arguments = OrderedDict(
        (k, jnp.asarray(v) if k in data else v) for k, v in bound.arguments.items()
    )
    return Target(model, signature, arguments, data, prior_sites, name)
