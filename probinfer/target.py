"""The :class:`Target`: what :func:`probinfer.compile` makes of a model, and every method consumes.

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
* ``constrain``, ``unconstrain``, ``ravel``, ``unravel``; ``trace`` and ``log_prob_terms`` (the
  model's sites and their unsummed log densities at given latent values and arguments, for
  methods that treat data points apart); ``init`` and ``starting_points``
  (:mod:`probinfer.starts`), ``sample_prior`` and ``simulate`` (:mod:`probinfer.simulation`).
* ``jit(make)``: a compiled program whose data are an argument (a
  :class:`~probinfer.programs.DataProgram`), so a runner compiles once per *model*: the targets
  :meth:`Target.condition` makes (new observations, same shapes) share it.

A Target is immutable: :meth:`Target.condition` returns a new one. The model is read once
(:func:`probinfer.tracing.analyse`) with NumPyro's effect handlers; no tracer of our own.

The module is longer than our ~400-line rule because the Target is one class of the densities
every method consumes; starting points, simulation and compilation live in their own modules.
"""

import hashlib
import warnings
from collections import OrderedDict

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from numpyro import handlers
from numpyro.distributions.transforms import biject_to
from numpyro.distributions.util import sum_rightmost

from probinfer import simulation, starts
from probinfer._utils import as_key, renamed_keywords
from probinfer.errors import DataError, DiscreteLatentError, ModelError
from probinfer.programs import DataProgram
from probinfer.starts import INIT_RADIUS, INIT_STRATEGIES
from probinfer.tracing import SiteInfo, site_log_prob, trace_model

__all__ = ["Target", "SiteInfo", "INIT_STRATEGIES", "INIT_RADIUS"]


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

    def __init__(
        self, model, signature, arguments, data_names, structure, name, conditioned=None, key=None
    ):
        self.model = model
        self.name = name
        self._signature = signature
        self._arguments = OrderedDict(arguments)
        self.data_names = tuple(data_names)
        self._structure = structure
        self._conditioned = dict(conditioned or {})
        self._digest = None
        self.num_data = None
        if self.data_names:
            self.num_data = int(jnp.shape(arguments[self.data_names[0]])[0])
        self.program_key = _ProgramKey() if key is None else key
        self.data_block = None  # rows per block of the full-data likelihood (block_data)

    def jit(self, make, *, static_argnums=(), donate_argnums=()):
        """``jax.jit`` of ``make(target)`` with this target's observed data as an argument of the
        compiled program (a :class:`~probinfer.programs.DataProgram`): ``make`` builds the function
        from the target it is given (never from ``self``), and the one compiled program serves
        every target :meth:`condition` makes (runners cache it with
        ``cached_program(..., share=True)``).

        >>> run = target.jit(lambda t: jax.vmap(t.log_density))   # doctest: +SKIP
        """
        return DataProgram(self, make, static_argnums=static_argnums, donate_argnums=donate_argnums)

    def data_digest(self):
        """SHA-1 of the values the target is compiled with (array arguments and conditioned
        observations): what tells two targets of one model apart in a checkpoint's or a saved
        flow's record. Computed once per target."""
        if self._digest is None:
            digest = hashlib.sha1()
            values = {
                **self._arguments,
                **{f"observed:{k}": v for k, v in self._conditioned.items()},
            }
            for name in sorted(values):
                value = values[name]
                if value is None or isinstance(value, str | bool | int | float):
                    digest.update(f"{name}={value!r};".encode())
                elif hasattr(value, "shape") or isinstance(value, list | tuple):
                    digest.update(_value_bytes(name, value))
            self._digest = digest.hexdigest()
        return self._digest

    def _data_leaves(self):
        return {k: self._arguments[k] for k in self.data_names}, dict(self._conditioned)

    def _with_data(self, leaves):
        """This target with other values (tracers, while a :meth:`jit` program is traced) for
        its data arguments and conditioned sites."""
        arguments = OrderedDict(self._arguments)
        arguments.update(leaves[0])
        target = Target(
            self.model,
            self._signature,
            arguments,
            self.data_names,
            self._structure,
            self.name,
            conditioned=leaves[1],
            key=self.program_key,
        )
        target.data_block = self.data_block
        return target

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
    #: Observed and latent sites whose log probability follows the data axis (minibatch-scaled).
    batched_sites = property(lambda self: frozenset(self._structure.batched_sites))

    def _trace(self, key, substitute_fn=None, overrides=None, uncondition=False):
        model = self.model
        if self._conditioned:
            model = handlers.condition(model, data=self._conditioned)
        return trace_model(
            model, self._signature, self._arguments, key, substitute_fn, overrides, uncondition
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

    def trace(self, free=None, *, data=None, key=None):
        """The model's NumPyro trace, ``{site: NumPyro site dict}`` (``fn``, ``value``, ``scale``,
        ...), with the latent sites at unconstrained values ``free`` (``{site: array}``, any
        subset; the rest are drawn from the prior with ``key``, default ``PRNGKey(0)``) and the
        model arguments in ``data`` (``{name: array}``: a minibatch, test inputs) in place of the
        compiled ones. Traceable.

        >>> tr = target.trace(target.unravel(z), data={"x": x_test})   # doctest: +SKIP
        >>> site = tr["y"]                                              # doctest: +SKIP
        >>> site["fn"].mean                                             # doctest: +SKIP
        """
        free = dict(free or {})

        def substitute_fn(site):
            if site["type"] == "sample" and not site["is_observed"] and site["name"] in free:
                return biject_to(site["fn"].support)(free[site["name"]])
            return None

        key = jax.random.PRNGKey(0) if key is None else as_key(key)
        return self._trace(key, substitute_fn=substitute_fn if free else None, overrides=data)

    def log_prob_terms(self, free, *, data=None):
        """Every sample site's log density *unsummed*, in its batch shape — what a method that
        treats data points apart needs (amortized VI's per-row terms). At the unconstrained
        latent values ``free`` and arguments ``data`` (as :meth:`trace`): NumPyro's
        ``log_prob`` of the site's value, plus, for a site in ``free``, log|det ∂θ/∂z| of its
        map (event dimensions summed), both times the plate's ``scale``. Returns
        ``({site: array}, trace)``; with every latent in ``free`` and no ``data``, the terms sum
        to :meth:`log_density`.

        >>> terms, _ = target.log_prob_terms(target.unravel(z))   # doctest: +SKIP
        """
        tr = self.trace(free, data=data)
        terms = {}
        for name, site in tr.items():
            if site["type"] != "sample":
                continue
            log_prob = site["fn"].log_prob(site["value"])
            if name in free:
                log_det = biject_to(site["fn"].support).log_abs_det_jacobian(
                    free[name], site["value"]
                )
                log_det = jnp.reshape(log_det, jnp.shape(log_det)[: jnp.ndim(log_prob)] + (-1,))
                log_prob = log_prob + jnp.sum(log_det, -1)
            if site["scale"] is not None:
                log_prob = site["scale"] * log_prob
            terms[name] = log_prob
        return terms, tr

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
        if self.data_block is not None:
            return self._blocked_terms(z)
        log_prior, likelihood, _ = self._log_terms(z)
        return log_prior, sum(likelihood.values(), jnp.zeros((), self.dtype))

    def _blocked_terms(self, z):
        """:meth:`log_terms` with the likelihood summed over blocks of ``data_block`` rows
        (``lax.map`` of a rematerialised block, then the remainder rows): the gradient's memory
        holds one block's intermediates, not N rows'. Sites that do not follow the data axis
        are counted once."""
        size, n = self.data_block, self.num_data
        data = {k: jnp.asarray(self._arguments[k]) for k in self.data_names}
        batched = self._structure.batched_sites

        def terms(rows):
            log_prior, likelihood, _ = self._log_terms(z, overrides=rows)
            zero = jnp.zeros((), self.dtype)
            per_row = sum((v for k, v in likelihood.items() if k in batched), zero)
            once = sum((v for k, v in likelihood.items() if k not in batched), zero)
            return log_prior, per_row, once

        def block(start):
            rows = {k: jax.lax.dynamic_slice_in_dim(v, start, size) for k, v in data.items()}
            return terms(rows)[1]

        # One direct call on the rows past the last whole block (or on the first block when
        # they divide evenly) gives the prior and the sites counted once; lax.map does the rest.
        full = (n // size) * size
        if full < n:
            head, starts = {k: v[full:] for k, v in data.items()}, jnp.arange(0, full, size)
        else:
            head, starts = {k: v[:size] for k, v in data.items()}, jnp.arange(size, full, size)
        log_prior, rest, once = terms(head)
        blocks = jax.lax.map(jax.checkpoint(block), starts)
        return log_prior, jnp.sum(blocks) + rest + once

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

    def check_new_data(self, data, where):
        """Raise one sentence unless ``data`` (``{argument: array}``, e.g. test inputs for
        ``where``) can stand in for the compiled arguments: every name is a model argument, each
        array keeps its compiled counterpart's shape past the leading (data-point) axis, and the
        arrays share that leading size. Returns ``{name: jnp array}``."""
        parameters = list(self._signature.parameters)
        unknown = sorted(k for k in data if k not in parameters)
        if unknown:
            raise DataError(
                f"{where}: {unknown} are not arguments of '{self.name}' (its arguments are "
                f"{parameters})."
            )
        data = {k: jnp.asarray(v) for k, v in data.items()}
        for k, value in data.items():
            compiled = self._arguments.get(k)
            if compiled is None or jnp.ndim(compiled) == 0:
                continue
            expected = tuple(jnp.shape(compiled)[1:])
            if value.ndim == 0 or tuple(value.shape[1:]) != expected:
                wanted = f"(N, {', '.join(map(str, expected))})" if expected else "(N,)"
                raise DataError(
                    f"{where}: '{k}' has shape {tuple(value.shape)}; '{self.name}' was compiled "
                    f"with shape {wanted} for it (one row per data point)."
                )
        rows = {k: int(v.shape[0]) for k, v in data.items() if v.ndim}
        if len(set(rows.values())) > 1:
            fewest, most = min(rows, key=rows.get), max(rows, key=rows.get)
            raise DataError(
                f"{where}: '{fewest}' has {rows[fewest]} rows and '{most}' {rows[most]}; every "
                "data argument needs one row per data point."
            )
        return data

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

    # -- starting points (probinfer.starts) and draws from the model (probinfer.simulation) -------

    def draw_z(self, key, strategy="prior"):
        """One unchecked starting point ``(dim,)``: :func:`probinfer.starts.draw_z`."""
        return starts.draw_z(self, key, strategy)

    def init_fn(self, key, n, max_tries=100, strategy="prior"):
        """Jittable ``(z (n, dim), ok (n,))``: :func:`probinfer.starts.init_fn`."""
        return starts.init_fn(self, key, n, max_tries, strategy)

    @renamed_keywords("Target.init")
    def init(self, key, n, max_tries=100, strategy="prior"):
        """``n`` starting points ``(n, dim)`` with finite density and gradient, redrawn up to
        ``max_tries`` times: :func:`probinfer.starts.init`."""
        return starts.init(self, key, n, max_tries, strategy)

    def starting_points(self, init, n, *, key=None, default="prior"):
        """A runner's ``init`` argument as checked ``(n, dim)`` starting points:
        :func:`probinfer.starts.starting_points`."""
        return starts.starting_points(self, init, n, key=key, default=default)

    @renamed_keywords("Target.sample_prior")
    def sample_prior(self, key, n):
        """``n`` prior draws ``{site: (n, *shape)}``: :func:`probinfer.simulation.sample_prior`."""
        return simulation.sample_prior(self, key, n)

    @renamed_keywords("Target.simulate")
    def simulate(self, key, n):
        """``n`` prior-predictive draws ``(params, observations)``:
        :func:`probinfer.simulation.simulate`."""
        return simulation.simulate(self, key, n)

    def observations(self):
        """The data the model was compiled with, ``{observed site: array}``:
        :func:`probinfer.simulation.observations`."""
        return simulation.observations(self)

    def simulate_observations(self, key, z):
        """One data set at ``z (dim,)`` (traceable): :func:`probinfer.simulation.simulate_observations`."""
        return simulation.simulate_observations(self, key, z)

    # -- errors, conditioning ------------------------------------------------------------------------

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
        data, sites = {}, {}
        for name, value in observations.items():
            if jnp.shape(value) != self._structure.observed_shapes[name]:
                raise DataError(
                    f"observed site '{name}' of '{self.name}' has shape "
                    f"{self._structure.observed_shapes[name]}, but condition() got {jnp.shape(value)}."
                )
            value = jnp.asarray(value)
            if name in self.data_names and jnp.shape(self._arguments[name]) == jnp.shape(value):
                data[name] = value
            else:
                sites[name] = value
        # Same sites, shapes and data plates: the new Target shares this one's static structure
        # and its compiled programs (the data are their argument: :meth:`jit`).
        leaves = self._data_leaves()
        return self._with_data(({**leaves[0], **data}, {**leaves[1], **sites}))

    def block_data(self, block_size):
        """This target with its full-data likelihood summed over blocks of ``block_size`` rows
        (a ``lax.map`` whose blocks are recomputed in the backward pass): a gradient then holds
        one block's intermediates instead of N rows' — what bounds NUTS's and SMC's memory on a
        million rows (SMC's own ``block_size`` bounds the particles). The values equal the
        unblocked ones up to the order of the float sums. Needs data marked and every latent
        global (as minibatching does); compiled programs are not shared with this target's
        unblocked twin.

        >>> target = pi.compile(model, x, y=y, data=("x", "y")).block_data(10_000)  # doctest: +SKIP
        """
        self.check_minibatchable()
        size = int(block_size)
        if not 1 <= size <= self.num_data:
            raise DataError(
                f"block_data: block_size must be between 1 and the {self.num_data} rows of "
                f"'{self.name}', got {block_size}."
            )
        blocked = Target(
            self.model,
            self._signature,
            self._arguments,
            self.data_names,
            self._structure,
            self.name,
            conditioned=self._conditioned,
        )  # a new program key: its programs differ from the unblocked target's
        blocked.data_block = size
        return blocked

    def shard_data(self, devices=None):
        """This target with its data rows split over ``devices`` (:mod:`probinfer.devices`; None:
        every local device): every compiled program takes the data as an argument
        (:meth:`jit`), so XLA partitions each full-data log density and gradient by rows and
        adds the devices' partial sums — NUTS, SMC, full-batch flow VI and the mode searches of
        any runner then spread the data plate over the devices, each holding N / D rows. The
        results equal one device's up to the order of the float sums. ``N`` must be a multiple
        of the number of devices (one sentence otherwise); a single device returns ``self``.
        Shares this target's compiled programs.

        >>> target = pi.compile(model, x, y=y, data=("x", "y")).shard_data()  # doctest: +SKIP
        """
        from probinfer import devices as _devices

        if not self.data_names:
            raise DataError(
                f"shard_data: '{self.name}' has no data arguments marked; compile with "
                "data=('x', 'y') naming the arguments whose leading axis indexes data points."
            )
        count = _devices.num_devices(devices)
        if count < 2:
            return self
        if self.num_data % count:
            raise DataError(
                f"shard_data: {self.num_data} rows of '{self.name}' do not split evenly over "
                f"{count} devices; use a number of devices that divides them (devices=[...])."
            )
        sharding = _devices.leading_sharding(self.num_data, devices)
        arguments, observed = self._data_leaves()
        rows = lambda v: jnp.ndim(v) > 0 and jnp.shape(v)[0] == self.num_data  # noqa: E731
        place = lambda v: jax.device_put(jnp.asarray(v), sharding) if rows(v) else v  # noqa: E731
        return self._with_data(
            (
                {k: place(v) for k, v in arguments.items()},
                {k: place(v) for k, v in observed.items()},
            )
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


def _value_bytes(name, value):
    """The bytes of an array-like argument for :meth:`Target.data_digest`: its values whatever
    their precision (every k-th of an argument with more than ``_DIGEST_VALUES``); something
    that is not a numeric array (a list of labels) by its repr."""
    try:
        array = np.asarray(value)
        shape = array.shape
        if array.size > _DIGEST_VALUES:  # a strided sample: no 8-byte copy of a big data set
            array = array.reshape(-1)[:: -(-array.size // _DIGEST_VALUES)]
        kind = np.float64 if np.issubdtype(array.dtype, np.inexact) else np.int64
        array = np.ascontiguousarray(array.astype(kind))
    except (TypeError, ValueError):
        return f"{name}={value!r};".encode()
    return f"{name}:{shape};".encode() + array.tobytes()


_DIGEST_VALUES = 2**22  # values of one argument hashed at most (every k-th beyond)


class _ProgramKey:
    """What a model's compiled programs are cached under (shared by its conditioned targets)."""

    __slots__ = ("init", "__weakref__")


def _site_log_det(site, free):
    """log|det| of ``biject_to(support)`` at a latent site, summed over its event dimensions."""
    log_det = biject_to(site["fn"].support).log_abs_det_jacobian(free, site["value"])
    return sum_rightmost(
        log_det, jnp.ndim(log_det) - jnp.ndim(site["value"]) + len(site["fn"].event_shape)
    )
