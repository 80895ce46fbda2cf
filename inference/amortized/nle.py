"""``nle``: neural likelihood estimation (Papamakarios, Sterratt & Murray 2019) — fit a conditional
flow q_φ(x | θ) to the model's simulations (θ_i, x_i) ~ p(θ) p(x | θ) by maximum likelihood,
max E[log q(x | θ)], so q(x | θ) ≈ p(x | θ) wherever the prior puts θ (ALGORITHMS §12).

Its value is composition: the learned likelihood goes where the simulator's missing likelihood
would, as a site of another model —

>>> est = pi.nle(trial_simulator, key=0)                         # doctest: +SKIP
>>> def hierarchical(x):                                         # doctest: +SKIP
...     mu = pi.sample("mu", dist.Normal(0, 1))
...     with pi.plate("groups", x.shape[0]):
...         theta = pi.sample("theta", dist.Normal(mu, 0.5))
...         pi.sample("x", est.likelihood(theta), obs=x)
>>> pi.mcmc(pi.compile(hierarchical, x_groups), key=1)           # doctest: +SKIP

— so NUTS, SMC and ``calibrate`` run on a hierarchical model whose per-group simulator has no
likelihood, i.i.d. trials are a plate over the trials, and the prior can change after training
(the estimator is only trusted where the training prior put θ).

Training is NPE's (:func:`~probinfer.inference.amortized.npe.fit_conditional_flow`: the same
simulations in compiled blocks, standardisation, early stopping, Adam at 5·10⁻⁴) with the roles of
θ and x swapped: the flow models the standardised, flattened data; its context is an MLP of the
standardised unconstrained θ (or that θ itself: the MAF candidate below). No weight-decay copy is trained: the context is θ, a few numbers,
where NPE's decay guards a high-dimensional x against overfitting.

By default (``flow="auto"``) two flows train one after the other on the same split and
minibatches — a neural spline coupling flow on the MLP of θ, and sbi's NLE default: a masked
autoregressive flow (MAF) with tanh conditioners on the standardised θ itself — and the one
with the lower held-out −log q(x | θ) is kept (the losses are the same quantity on the same
rows). Neither wins everywhere (``experiments/bench/sbi.py`` tasks, C2ST of the NUTS posterior
against the reference, 3 observations): at 10⁴ simulations a MAF took SLCP from 0.92 to 0.81
(a Gaussian x whose scale is θ's: MAF's θ-dependent affine steps are that family), at 10³ the
spline flow took two moons to 0.59 where MAF gave 0.75 (a crescent); a single x coordinate
leaves MAF a Gaussian. Training costs the two flows' sum.
"""

import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from probinfer._utils import as_key
from probinfer.checkpoint import fingerprint, path_for
from probinfer.compiler import as_target
from probinfer.errors import DataError
from probinfer.inference.amortized.learned import LearnedLikelihood, LearnedSiteEstimator
from probinfer.inference.amortized.npe import (
    _settings,
    best_loss,
    candidate_path,
    fit_conditional_flow,
    simulate_training_set,
    simulation_counts,
)
from probinfer.inference.amortized.posterior import (
    _jsonable,
    standardised_arrays,
    target_and_layout,
)
from probinfer.nn import estimator as estimator_file
from probinfer.nn.embeddings import embedding_module
from probinfer.nn.flows import FLOWS, flow_from_config
from probinfer.nn.layout import ObservationLayout

__all__ = ["nle", "LikelihoodEstimator", "LearnedLikelihood"]

KIND = "nle"
_MAX_TRIAL_ROWS = 100_000
# The candidates of flow="auto", trained in this order: (flow, embedding of θ, activation)
_AUTO = (("nsf", "mlp", "gelu"), ("maf", "none", "tanh"))


def nle(
    model,
    *,
    key,
    num_simulations=10_000,
    flow="auto",
    iid=False,
    num_layers=None,
    num_steps=None,
    batch_size=256,
    validation_fraction=0.1,
    optimizer=None,
    block_size=10_000,
    devices=None,
    checkpoint=None,
    progress="auto",
    model_args=(),
    model_kwargs=None,
    data=(),
):
    """Neural likelihood estimation: train q(x | θ) on the model's own simulations.

    Args:
        model: the simulator as a model (its latent sites are θ, its observed sites x; the
            observed values given at compile fix x's shapes), a Target, zoo Example or name.
        key: int seed or PRNG key.
        num_simulations: simulated pairs (θ, x), validation included.
        flow: the conditional flow on x (``"nsf"``, ``"realnvp"``, ``"maf"``, ``"iaf"``), or
            ``"auto"``: nsf and sbi's maf both trained, the lower validation loss kept (module
            docstring; ``diagnostics["validation_by_flow"]``).
        iid: the observed sites' leading axis indexes conditionally i.i.d. trials (a plate
            whose elements share one distribution given θ: no covariates, no index-dependent
            parameters). The flow then learns one trial's likelihood q(x_j | θ), trained on
            every trial of every simulation (at most 100,000 rows), and the likelihood of a
            data set is the sum over its trials. False (default): x is one flattened vector,
            which needs a density of all m trials at once — on the 20-observation normal model
            with 10,000 simulations that put NUTS's posterior mean 0.45 sd off, and the i.i.d.
            form 0.05 sd (``tests/test_amortized_jobs.py``).
        num_layers: flow layers (None: the flow's default).
        num_steps: at most this many optimiser steps (None: the larger of 50,000
            and 500 epochs, and a warning when that limit rather than early stopping ends
            training); early stopping may end it sooner.
        batch_size: simulations per step.
        validation_fraction: share held out for early stopping, in (0, 0.5].
        optimizer: an optax GradientTransformation (None: Adam 5e-4, clipping at norm 5).
        block_size: simulations drawn per compiled block (memory bound).
        devices: devices each minibatch's rows are split over (:mod:`probinfer.devices`).
        checkpoint: folder or ``.npz`` path; training is saved after every epoch and resumes.
        progress: progress bar (True, False or ``"auto"``).

    Returns:
        A :class:`LikelihoodEstimator`: ``likelihood(theta)`` (a distribution to put in a
        model), ``log_likelihood(theta, x)``, ``simulate(key, theta, n)``,
        ``posterior(x, key=)`` (NUTS on the prior times the learned likelihood; ``method="smc"``
        for SMC), ``save``;
        diagnostics as :func:`~probinfer.inference.amortized.npe`'s (losses are −log q of the
        raw x).

    Example:
        >>> def trial(x=None):
        ...     theta = pi.sample("theta", dist.Normal(0, 2))
        ...     pi.sample("x", dist.Normal(theta * jnp.ones(2), 0.5).to_event(1), obs=x)
        >>> est = pi.nle(trial, key=0, model_kwargs={"x": jnp.zeros(2)})   # doctest: +SKIP
        >>> est.log_likelihood({"theta": 0.3}, jnp.array([0.1, 0.4]))      # doctest: +SKIP
    """
    start_time = time.perf_counter()
    if flow != "auto" and flow not in (*FLOWS, "flow_matching"):  # before any simulation
        raise DataError(f"flow must be 'auto' or one of {FLOWS}, got {flow!r}.")
    target = as_target(model, model_args, model_kwargs, data)
    target.check_continuous()
    layout = ObservationLayout.from_target(target, "set" if iid else "flat")
    settings = _settings(num_simulations, batch_size, validation_fraction, num_steps)
    checkpoint = path_for(checkpoint, "nle")
    key_sim, key_split, key_init, key_train = jax.random.split(as_key(key), 4)
    z, raw, dropped = simulate_training_set(
        target, layout, key_sim, settings["num_simulations"], int(block_size)
    )
    _warn_integer_data(target, layout, raw)
    layout = layout.fitted(raw)
    loc, scale = z.mean(0), np.where(z.std(0) > 1e-8, z.std(0), 1.0)
    context = ((z - loc) / scale).astype(np.float32)
    u = np.asarray((raw - layout.loc) / layout.scale, np.float32)
    if iid:  # one row per trial, θ repeated; at most _MAX_TRIAL_ROWS rows
        trials = u.shape[1]
        context = np.repeat(context, trials, axis=0)
        u = u.reshape(-1, u.shape[-1])
        keep = np.asarray(jax.random.permutation(jax.random.fold_in(key_split, 1), u.shape[0]))[
            :_MAX_TRIAL_ROWS
        ]
        context, u = context[keep], u[keep]
    candidates = _AUTO if flow == "auto" else ((flow, "mlp", "gelu"),)
    fits, embeddings = {}, {}
    for kind, embedding, activation in candidates:  # the same split, initialisation, minibatches
        record = fingerprint(
            as_key(key),
            target,
            method=KIND,
            flow=kind,
            iid=bool(iid),
            num_layers=num_layers,
            optimizer="default" if optimizer is None else "custom",
            **({"embedding": embedding, "activation": activation} if embedding != "mlp" else {}),
            **settings,
        )
        embeddings[kind] = embedding
        fits[kind] = fit_conditional_flow(
            u,
            context,
            keys=(key_split, key_init, key_train),
            offset=float(np.log(layout.scale).sum()),  # −log q of raw x
            flow=kind,
            embedding=embedding,
            activation=activation,
            num_layers=num_layers,
            settings=settings,
            decays=(0.0,),
            optimizer=optimizer,
            devices=devices,
            checkpoint=candidate_path(checkpoint, kind, len(candidates)),
            fingerprint=record,
            progress=progress,
        )
    losses = {k: best_loss(fit[3]["validation_loss"]) for k, fit in fits.items()}
    flow = min(losses, key=losses.get)  # the first on ties
    module, flow_, params, diagnostics = fits[flow]
    diagnostics |= simulation_counts(u.shape[0], dropped, start_time)
    diagnostics["validation_by_flow"] = losses
    return LikelihoodEstimator(
        target=target,
        flow=flow_,
        embedding=module,
        layout=layout,
        params=params,
        loc=loc.astype(np.float32),
        scale=scale.astype(np.float32),
        settings={
            "flow": flow,
            "embedding": embeddings[flow],
            "iid": bool(iid),
            "num_layers": flow_.module.num_layers,
            **settings,
        },
        diagnostics=diagnostics,
    )


def _warn_integer_data(target, layout, raw):
    """A flow is a density on real x: say so when the simulations are whole numbers."""
    values = np.asarray(raw)
    if values.size and np.all(values == np.round(values)):
        warnings.warn(
            f"the simulated data of '{target.name}' ({list(layout.sites)}) are all whole "
            "numbers: a flow learns a density of real x, so the learned likelihood of counts "
            "is not a probability over integers; dequantise the data (add uniform(0, 1) noise "
            "in the simulator) or use a likelihood of your own.",
            RuntimeWarning,
            stacklevel=3,
        )


class LikelihoodEstimator(LearnedSiteEstimator):
    """q(x | θ) for the simulator it was trained on.

    Attributes:
        target: the simulator as a compiled model (latent sites θ, observed sites x).
        flow, embedding: the conditional flow on standardised flat x and the MLP of standardised
            unconstrained θ that is its context (``Identity``: θ itself); ``params``: ``{"flow": …, "embedding": …}``.
        layout: how x is flattened and standardised (:class:`ObservationLayout`).
        loc, scale: ``(dim,)`` standardisation of the unconstrained θ.

    Saved files are of kind ``"nle"`` in :mod:`probinfer.nn.estimator`'s format.
    """

    kind = KIND
    method = KIND

    def __init__(self, *, target, flow, embedding, layout, params, loc, scale, settings,
                 diagnostics):  # fmt: skip
        self.target, self.flow, self.embedding, self.layout = target, flow, embedding, layout
        self.params = params
        self.loc, self.scale = jnp.asarray(loc), jnp.asarray(scale)
        self.settings, self.diagnostics = dict(settings), dict(diagnostics)

    # -- the density on flat x given unconstrained z ---------------------------------------------

    def _context(self, z):
        return self.embedding.apply(self.params["embedding"], (z - self.loc) / self.scale)

    @property
    def _trials(self):
        """Trials per data set (the plate's size) when i.i.d., else 1."""
        return self.layout.shapes[0][0] if self.layout.kind == "set" else 1

    def log_q_flat(self, x_flat, z):
        """log q(x | θ) of raw flat data ``(n, x_dim)`` at unconstrained ``z`` ``(n, dim)``
        (i.i.d.: the sum over the trials of each row, trial-major)."""
        m = self._trials
        u = (x_flat.reshape(-1, self.flow.dim) - self.layout.loc) / self.layout.scale
        log_q = self.flow.log_prob(self.params["flow"], u, jnp.repeat(self._context(z), m, 0))
        log_q = log_q - jnp.sum(jnp.log(self.layout.scale))
        return log_q.reshape(-1, m).sum(-1)

    def simulate_flat(self, key, z):
        """One data set per row of ``z`` ``(n, dim)``: raw flat x ``(n, x_dim)``."""
        m = self._trials
        context = jnp.repeat(self._context(z), m, 0)
        u = self.flow.sample(self.params["flow"], key, z.shape[0] * m, context)
        return (self.layout.loc + self.layout.scale * u).reshape(z.shape[0], -1)

    def simulate(self, key, theta, n=None):
        """Data sets from q(x | θ): one per θ of a batch (``{site: (*batch, *shape)}``), or
        ``n`` for one θ (``{site: (n, *shape)}``)."""
        z, batch = self._z(theta)
        if n is not None:
            if batch:
                raise DataError("simulate(n=) takes one θ; a batch of θ gives one data set each.")
            z, batch = jnp.broadcast_to(z, (int(n), z.shape[-1])), (int(n),)
        rows = self.simulate_flat(as_key(key), z.reshape(-1, z.shape[-1]))
        m = self._trials
        rows = rows.reshape(rows.shape[0], m, -1)  # (n, trials, per trial) or (n, 1, x_dim)
        out, start = {}, 0
        for site, shape in zip(self.layout.sites, self.layout.shapes, strict=True):
            size = int(np.prod(shape)) // m
            out[site] = rows[..., start : start + size].reshape(batch + tuple(shape))
            start += size
        return out

    def __repr__(self):
        return (
            f"LikelihoodEstimator(nle on '{self.target.name}': {self.flow.kind} flow on "
            f"{self.flow.dim} data dims, {self.diagnostics.get('num_epochs')} epochs)"
        )

    # -- files ------------------------------------------------------------------------------------

    def _meta(self):
        return {
            "method": KIND,
            "target": self.target.name,
            "settings": self.settings,
            "flow": self.flow.config(),
            "embedding": {
                "features": self.embedding.features,
                "hidden": list(self.embedding.hidden),
            },  # its kind: settings["embedding"] ("mlp" in files before the option)
            "diagnostics": _jsonable(self.diagnostics),
        }

    def _arrays(self):
        return standardised_arrays(self)

    @classmethod
    def load(cls, path, model, *, model_args=(), model_kwargs=None, data=()):
        """The estimator saved at ``path`` for the simulator ``model`` it was trained on."""
        return estimator_file.load(
            path, model, kind=KIND, model_args=model_args, model_kwargs=model_kwargs, data=data
        )


def _loader(path, header, arrays, model, *, model_args=(), model_kwargs=None, data=()):
    meta = header["meta"]
    kind = "set" if meta["settings"].get("iid") else "flat"
    target, layout = target_and_layout(
        path, header, arrays, kind, (model, model_args, model_kwargs, data), "an NLE"
    )
    name = meta["settings"].get("embedding", "mlp")
    module = embedding_module(name, (target.dim,), layout.feature_shape[-1]).clone(
        features=meta["embedding"]["features"], hidden=tuple(meta["embedding"]["hidden"])
    )
    return LikelihoodEstimator(
        target=target,
        flow=flow_from_config(meta["flow"], layout.feature_shape[-1]),
        embedding=module,
        layout=layout,
        params=jax.tree.map(jnp.asarray, arrays["params"]),
        loc=arrays["loc"],
        scale=arrays["scale"],
        settings=meta["settings"],
        diagnostics=meta["diagnostics"],
    )


estimator_file.register(KIND, _loader)
