"""``compile``: a model written in the model language becomes a :class:`Target`.

A Target is the one object every inference method consumes. It holds pure JAX functions over an
unconstrained flat vector ``z`` of length ``target.dim``:

* ``log_density(z) = log_prior(z) + log_likelihood(z)``. The prior part contains the prior log
  densities of the latent sites *and* the log-Jacobians of the maps from unconstrained space
  (``numpyro.distributions.transforms.biject_to``); the likelihood part holds the observed sites and
  the user's ``factor`` sites, each multiplied by its plate scale. The sum equals
  ``numpyro.infer.util.log_density`` at the constrained values plus the Jacobian terms, so tempering
  (which needs the split) and minibatching (which scales only the likelihood) are right.
* ``minibatch_log_density(z, batch)``: the prior plus ``N / B`` times the likelihood of the sites
  inside the data plates for a batch of ``B`` of the ``N`` data points (the model arguments named
  by ``data=``; see :mod:`probinfer.tracing` for how data plates are found).
* ``constrain``, ``unconstrain``, ``ravel``, ``unravel``, ``init``, ``sample_prior`` and
  ``simulate`` (the prior predictive).

A Target is immutable: :meth:`Target.condition` returns a new one. The model is read once
(:func:`probinfer.tracing.analyse`) with NumPyro's effect handlers; no tracer of our own.
"""

import inspect
import warnings
from collections import OrderedDict

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from numpyro import handlers
from numpyro.distributions.transforms import biject_to
from numpyro.distributions.util import sum_rightmost

from probinfer._utils import as_key, renamed_keywords
from probinfer.errors import DataError, DiscreteLatentError, ModelError, NonFiniteError
from probinfer.tracing import SiteInfo, analyse, improper_init_fn, site_log_prob, trace_model

__all__ = ["compile", "as_target", "Target", "SiteInfo", "INIT_STRATEGIES", "INIT_RADIUS"]

#: Named starting-point strategies (``init="uniform"`` / ``init="prior"`` on the runners).
INIT_STRATEGIES = ("uniform", "prior")
#: Half-width of ``"uniform"`` starts on the unconstrained space (Stan's ``init_radius``).
INIT_RADIUS = 2.0


def _check_strategy(strategy):
    if strategy not in INIT_STRATEGIES:
        raise DataError(
            f"unknown starting-point strategy '{strategy}'; use one of {list(INIT_STRATEGIES)}."
        )


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

    def __init__(self, model, signature, arguments, data_names, structure, name):
        self.model = model
        self.name = name
        self._signature = signature
        self._arguments = OrderedDict(arguments)
        self.data_names = tuple(data_names)
        self._structure = structure
        self.num_data = None
        if self.data_names:
            self.num_data = int(jnp.shape(arguments[self.data_names[0]])[0])
        self._init_jit = jax.jit(self.init_fn, static_argnums=(1, 2, 3))  # compiled once per Target

    # Static facts of the model, read once by probinfer.tracing.analyse.
    latent_sites = property(lambda self: self._structure.latent_sites)
    discrete_sites = property(lambda self: self._structure.discrete_sites)
    observed_sites = property(lambda self: self._structure.observed_sites)
    factor_sites = property(lambda self: self._structure.factor_sites)
    deterministic_sites = property(lambda self: self._structure.deterministic_sites)
    param_values = property(lambda self: self._structure.param_values)
    data_plates = property(lambda self: self._structure.data_plates)
    dim = property(lambda self: self._structure.dim)
    dtype = property(lambda self: self._structure.dtype)
    observed_shapes = property(lambda self: dict(self._structure.observed_shapes))

    def _trace(self, key, substitute_fn=None, overrides=None, uncondition=False):
        return trace_model(
            self.model, self._signature, self._arguments, key, substitute_fn, overrides, uncondition
        )

    # -- the flat space ----------------------------------------------------------------------------

    def check_continuous(self):
        """Raise :class:`DiscreteLatentError` naming the discrete latent sites, if any."""
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
        return self._structure.unravel(z)

    def _substitute_fn(self, z):
        free = self._structure.unravel(z)

        def substitute_fn(site):
            if site["type"] == "sample" and not site["is_observed"] and site["name"] in free:
                return biject_to(site["fn"].support)(free[site["name"]])
            return None

        return free, substitute_fn

    def _log_terms(self, z, overrides=None):
        """Return (log prior incl. Jacobians, dict of per-site likelihood terms, trace)."""
        self.check_continuous()
        z = jnp.asarray(z)
        if z.shape != (self.dim,):
            raise DataError(
                f"z has shape {z.shape} but target '{self.name}' expects (..., {self.dim}): "
                f"one unconstrained vector of length {self.dim} per point."
            )
        free, substitute_fn = self._substitute_fn(z)
        tr = self._trace(jax.random.PRNGKey(0), substitute_fn=substitute_fn, overrides=overrides)
        log_prior = jnp.zeros((), self.dtype)
        likelihood = {}
        for site in tr.values():
            if site["type"] != "sample":
                continue
            name = site["name"]
            if name in self.latent_sites:
                log_prior = log_prior + site_log_prob(site)
                log_det = _site_log_det(site, free[name])
                if site["scale"] is not None:
                    log_det = site["scale"] * log_det
                log_prior = log_prior + jnp.sum(log_det)
            elif name in self._structure.prior_sites:
                log_prior = log_prior + site_log_prob(site)
            elif site["is_observed"]:
                likelihood[name] = site_log_prob(site)
        return log_prior, likelihood, tr

    def log_terms(self, z):
        """``(log prior with Jacobians, log likelihood)`` at ``z``: ``(..., dim)`` → two ``(...)``
        arrays (tempering needs them apart)."""
        if jnp.ndim(z) > 1:
            return jax.vmap(self.log_terms)(z)
        log_prior, likelihood, _ = self._log_terms(z)
        return log_prior, sum(likelihood.values(), jnp.zeros((), self.dtype))

    def log_prior(self, z):
        """Log prior density of ``z`` (unconstrained), Jacobians included: ``(..., dim)`` → ``(...)``."""
        return self.log_terms(z)[0]

    def log_likelihood(self, z):
        """Log likelihood (observed and ``factor`` sites, plate-scaled): ``(..., dim)`` → ``(...)``."""
        return self.log_terms(z)[1]

    def log_density(self, z):
        """Unnormalised log posterior density on the unconstrained space: ``(..., dim)`` → ``(...)``
        (leading axes are mapped over, as in :meth:`constrain`).

        >>> target = compile(model, y)                      # doctest: +SKIP
        >>> jax.jit(jax.grad(target.log_density))(z)        # doctest: +SKIP
        """
        log_prior, log_likelihood = self.log_terms(z)
        return log_prior + log_likelihood

    def log_abs_det_jacobian(self, z):
        """``log|det ∂θ/∂z|`` of the map from ``z`` to the constrained latent values θ (the
        Jacobian terms of :meth:`log_prior`, unscaled): ``(..., dim)`` → ``(...)``. A density
        q(z) on the unconstrained space is the density q(z) − this on the constrained one."""
        z = jnp.asarray(z)
        if z.ndim > 1:
            return jax.vmap(self.log_abs_det_jacobian)(z)
        self.check_continuous()
        free, substitute_fn = self._substitute_fn(z)
        tr = self._trace(jax.random.PRNGKey(0), substitute_fn=substitute_fn)
        return sum(
            (jnp.sum(_site_log_det(tr[name], free[name])) for name in self.latent_sites),
            jnp.zeros((), self.dtype),
        )

    def batch(self, indices):
        """The data arguments at ``indices`` (shape ``(B,)``), as a dict ready for minibatching."""
        self.check_minibatchable()
        return {k: jnp.asarray(self._arguments[k])[indices] for k in self.data_names}

    @property
    def data(self):
        """The full data arguments as a dict ``{name: array (N, ...)}``."""
        return {k: self._arguments[k] for k in self.data_names}

    def check_minibatchable(self):
        """Raise unless data are marked and every latent site is global (minibatches need both)."""
        if not self.data_names:
            raise DataError(
                f"Target '{self.name}' has no data arguments marked; compile with "
                "data=('x', 'y') naming the model arguments whose leading axis indexes data points."
            )
        per_datum = self._structure.per_datum_latent
        if per_datum is not None:
            raise ModelError(
                f"Latent site '{per_datum}' has one value per data point, so a minibatch changes "
                "the latent space; minibatching needs global latents only."
            )

    def check_batch_size(self, batch_size):
        """Raise unless minibatches of ``batch_size`` data points are possible: data marked,
        latents global (:meth:`check_minibatchable`) and 1 ≤ ``batch_size`` ≤ N. Returns the
        batch size as an int."""
        self.check_minibatchable()
        if not 1 <= int(batch_size) <= self.num_data:
            raise DataError(
                f"batch_size must be between 1 and the {self.num_data} data points of "
                f"'{self.name}', got {batch_size}."
            )
        return int(batch_size)

    def minibatch_log_density(self, z, batch):
        """Prior plus the likelihood of a minibatch scaled by ``N / B``.

        ``batch`` is a dict ``{data_name: array (B, ...)}`` (e.g. from :meth:`batch`) or a tuple in
        the order of ``data``. Observed sites whose shape follows the data axis are scaled by
        ``N / B``; sites that do not depend on the data axis are counted once. Averaged over a
        partition of the data into equal batches it equals :meth:`log_density`.
        """
        self.check_minibatchable()
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
            total = total + (scale * value if name in self._structure.batched_sites else value)
        return total

    def log_likelihood_per_datum(self, z):
        """Log likelihood of each data point: ``z (dim,) -> (N,)``, summing to :meth:`log_likelihood`.

        Needs data arguments and observed sites that all follow the data axis (a site without a
        data axis cannot be split between data points). Used by data-annealed SMC.
        """
        self.check_minibatchable()
        whole = (
            set(self.observed_sites + self.factor_sites)
            - self._structure.batched_sites
            - self._structure.prior_sites
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
            return sum(likelihood.values(), jnp.zeros((), self.dtype))

        return jax.vmap(one)(jnp.arange(self.num_data))

    # -- named values ------------------------------------------------------------------------------

    def constrain(self, z):
        """Named constrained values (latent and ``deterministic`` sites) of ``z``.

        ``z: (..., dim)``; each returned array has shape ``(..., *site_shape)``.
        """
        z = jnp.asarray(z)
        if z.ndim > 1:
            return jax.vmap(self.constrain)(z)
        self.check_continuous()
        _, substitute_fn = self._substitute_fn(z)
        tr = self._trace(jax.random.PRNGKey(0), substitute_fn=substitute_fn)
        names = tuple(self.latent_sites) + self.deterministic_sites
        return {name: tr[name]["value"] for name in names}

    def unconstrain(self, values):
        """``z`` of shape ``(..., dim)`` from a dict of constrained latent values.

        Leading batch axes (beyond each site's shape) are mapped over.
        """
        self.check_continuous()
        first = next(iter(self.latent_sites.values()), None)
        if first is not None and jnp.ndim(values[first.name]) > len(first.shape):
            return jax.vmap(self.unconstrain)({k: values[k] for k in self.latent_sites})
        data = {k: values[k] for k in self.latent_sites}
        tr = self._trace(jax.random.PRNGKey(0), substitute_fn=lambda site: data.get(site["name"]))
        free = {k: biject_to(tr[k]["fn"].support).inv(tr[k]["value"]) for k in self.latent_sites}
        return self.ravel(free)

    # -- initial points and the prior ---------------------------------------------------------------

    def draw_z(self, key, strategy="prior"):
        """One unchecked starting point on the unconstrained space, ``(dim,)``; :meth:`init`
        keeps only finite ones.

        ``strategy="prior"``: a prior draw (uniform on (−2, 2) for improper sites);
        ``"uniform"``: every coordinate uniform on (−2, 2) — Stan's and NumPyro's default
        (``init_to_uniform``), which keeps chains out of a heavy-tailed prior's far tails.
        """
        _check_strategy(strategy)
        if strategy == "uniform":
            return jax.random.uniform(key, (self.dim,), self.dtype, -INIT_RADIUS, INIT_RADIUS)
        tr = self._trace(key, substitute_fn=improper_init_fn)
        free = {k: biject_to(tr[k]["fn"].support).inv(tr[k]["value"]) for k in self.latent_sites}
        return self.ravel(free)

    def init_fn(self, key, n, max_tries=100, strategy="prior"):
        """Pure, jittable core of :meth:`init`: returns ``(z (n, dim), ok (n,))``."""
        self.check_continuous()

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
                z = self.draw_z(sub, strategy)
                return tries + 1, key, z, valid(z)

            z0 = jnp.zeros((self.dim,), self.dtype)
            _, _, z, ok = jax.lax.while_loop(cond, body, (0, key, z0, jnp.array(False)))
            return z, ok

        return jax.vmap(one)(jax.random.split(key, n))

    @renamed_keywords("Target.init")
    def init(self, key, n, max_tries=100, strategy="prior"):
        """``n`` starting points ``(n, dim)`` with finite density and gradient.

        Each point is drawn by ``strategy`` (:meth:`draw_z`: ``"prior"`` draws, or ``"uniform"``
        on (−2, 2) in unconstrained space); a point whose log density or gradient is not finite
        is redrawn, up to ``max_tries`` times, so heavy-tailed priors (Cauchy) cannot break
        initialisation. Raises :class:`~probinfer.errors.NonFiniteError` naming the offending
        site otherwise.
        """
        _check_strategy(strategy)  # before compiling
        z, ok = self._init_jit(as_key(key), int(n), int(max_tries), strategy)
        ok = np.asarray(ok)
        if not ok.all():
            bad = int(np.argmin(ok))
            raise NonFiniteError(
                f"No finite log density (or gradient) for point {bad} of '{self.name}' after "
                f"{max_tries} {strategy} draws; {self.explain_nonfinite(z[bad])}"
            )
        return z

    def starting_points(self, init, n, *, key=None, default="prior"):
        """``(n, dim)`` starting points, checked. ``init`` is a strategy name (``"uniform"``,
        ``"prior"``: :meth:`init`), None for the runner's ``default`` strategy, a dict of
        constrained site values (each ``site_shape`` or ``(n, *site_shape)``) or unconstrained
        ``z`` (``(dim,)`` or ``(n, dim)``)."""
        if init is None:
            init = default
        if isinstance(init, str):
            return self.init(key, n, strategy=init)
        if isinstance(init, dict):
            missing = set(self.latent_sites) - set(init)
            if missing:
                raise DataError(f"init lacks latent site(s) {sorted(missing)} of '{self.name}'.")
            z = self.unconstrain({k: jnp.asarray(init[k]) for k in self.latent_sites})
        else:
            z = jnp.asarray(init, self.dtype)
        z = jnp.broadcast_to(z, (n, self.dim)) if z.shape == (self.dim,) else z
        if z.shape != (n, self.dim) or not bool(jnp.all(jnp.isfinite(z))):
            raise DataError(
                f"init gives starting points of shape {z.shape}; need finite ({self.dim},) or "
                f"({n}, {self.dim}) unconstrained values, a dict of constrained site values, or "
                f"a strategy name ({', '.join(map(repr, INIT_STRATEGIES))})."
            )
        return z

    def site_log_probs(self, z):
        """Per-site log probability terms at ``z`` (Jacobians under ``_<site>_log_det``)."""
        free, substitute_fn = self._substitute_fn(jnp.asarray(z))
        tr = self._trace(jax.random.PRNGKey(0), substitute_fn=substitute_fn)
        terms = {}
        for site in tr.values():
            if site["type"] == "sample":
                terms[site["name"]] = site_log_prob(site)
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

    @renamed_keywords("Target.sample_prior")
    def sample_prior(self, key, n):
        """``n`` prior draws: ``{site: (n, *shape)}`` for latent and deterministic sites
        (constrained). Observed sites stay at their data."""
        self.check_proper()
        names = tuple(self.latent_sites) + self.discrete_sites + self.deterministic_sites

        def one(key):
            tr = self._trace(key)
            return {name: tr[name]["value"] for name in names}

        return jax.jit(jax.vmap(one))(jax.random.split(as_key(key), int(n)))

    @renamed_keywords("Target.simulate")
    def simulate(self, key, n):
        """``n`` draws from the prior predictive: ``(params, observations)``.

        ``params``: ``{latent or deterministic site: (n, *shape)}``; ``observations``:
        ``{observed site: (n, *shape)}`` simulated from the likelihood given ``params``
        (the model's non-data arguments, such as covariates, stay fixed).
        """
        self.check_proper()
        names = tuple(self.latent_sites) + self.discrete_sites + self.deterministic_sites

        def one(key):
            tr = self._trace(key, uncondition=True)
            params = {name: tr[name]["value"] for name in names}
            observations = {name: tr[name]["value"] for name in self.observed_sites}
            return params, observations

        return jax.jit(jax.vmap(one))(jax.random.split(as_key(key), int(n)))

    def observations(self):
        """``{observed site: array}``: the data the model was compiled with — the ``x`` an
        amortized estimator (``pi.npe``) is asked about when a job runs it on this target."""
        _, substitute_fn = self._substitute_fn(jnp.zeros(self.dim, self.dtype))
        tr = self._trace(jax.random.PRNGKey(0), substitute_fn=substitute_fn)
        return {name: tr[name]["value"] for name in self.observed_sites}

    def simulate_observations(self, key, z):
        """One data set from the likelihood at the unconstrained point ``z (dim,)``:
        ``{observed site: array}`` (traceable; vmap it over points). This is how a method whose
        parameters come from somewhere other than the model's prior (a Distribution
        Transformer's random priors) simulates data."""
        _, substitute_fn = self._substitute_fn(jnp.asarray(z))
        tr = self._trace(as_key(key), substitute_fn=substitute_fn, uncondition=True)
        return {name: tr[name]["value"] for name in self.observed_sites}

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
            if jnp.shape(value) != self._structure.observed_shapes[name]:
                raise DataError(
                    f"observed site '{name}' of '{self.name}' has shape "
                    f"{self._structure.observed_shapes[name]}, but condition() got {jnp.shape(value)}."
                )
            if name in self.data_names and jnp.shape(arguments[name]) == jnp.shape(value):
                arguments[name] = value
            else:
                sites[name] = value
        model = handlers.condition(self.model, data=sites) if sites else self.model
        # Same sites and data plates (shapes are unchanged): a new Target with its own compiled
        # functions, nothing shared with this one but the static structure.
        return Target(
            model, self._signature, arguments, self.data_names, self._structure, self.name
        )

    def check_proper(self):
        """Raise :class:`ModelError` when a latent site has an improper prior (cannot be sampled)."""
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


def _site_log_det(site, free):
    """log|det| of ``biject_to(support)`` at a latent site, summed over its event dimensions."""
    log_det = biject_to(site["fn"].support).log_abs_det_jacobian(free, site["value"])
    return sum_rightmost(
        log_det, jnp.ndim(log_det) - jnp.ndim(site["value"]) + len(site["fn"].event_shape)
    )


def as_target(model, model_args=(), model_kwargs=None, data=()):
    """A :class:`Target` from what a user may hand a runner that takes a *model*: a model
    function (compiled with ``model_args``, ``model_kwargs`` and ``data``), a Target, a zoo
    :class:`~probinfer.models.Example` or a zoo name."""
    if isinstance(model, Target):
        return model
    if isinstance(model, str):
        from probinfer._utils import zoo

        return zoo().get(model).compile()
    if hasattr(model, "compile") and not callable(model):  # a zoo Example
        return model.compile()
    if callable(model):
        return compile(model, *model_args, data=data, **(model_kwargs or {}))
    raise ModelError(
        f"expected a model function, a compiled Target, a zoo Example or a zoo name; got "
        f"{type(model).__name__}."
    )


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
    structure = analyse(model, signature, arguments, tuple(data), prior_sites, name)
    return Target(model, signature, arguments, data, structure, name)
