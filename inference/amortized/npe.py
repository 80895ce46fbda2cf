"""``npe``: neural posterior estimation (Papamakarios & Murray 2016; Greenberg et al. 2019) — fit a
conditional flow q_φ(θ | s_ψ(x)) to simulations (θ_i, x_i) ~ p(θ) p(x | θ) of the model by
maximum likelihood, max E[log q(θ | x)], which makes q(θ | x) ≈ p(θ | x) for every x the prior
predictive can produce (ALGORITHMS §10).

* Simulations come from :meth:`Target.simulate` in blocks of ``block_size`` (one compiled
  program, so 10⁶ simulations fit); θ is mapped to the unconstrained space (bounded priors need
  it) and standardised, x standardised (:mod:`.layout`); simulations with a non-finite θ or x
  are dropped and counted.
* A fraction of the simulations is held out; training (:func:`probinfer.nn.training.fit`) runs
  in epochs (one pass over the rest, one compiled scan), the validation loss is measured after
  each, and when it has not improved for 20 epochs (sbi's rule) and 2,000 steps (small
  simulation budgets make short epochs, whose noisy validation losses would stop training too
  soon) training returns to the best weights with a tenfold smaller step, twice, then stops —
  the best weights are kept. Minibatches hold 256 simulations, fewer below 4,096 simulations
  (a sixteenth of them, at least 64): at 10³ simulations epochs of 256 were 3 steps and
  training mostly per-epoch calls and validations; 64 trains NPE 2.4–4× faster to the same
  C2ST within seed spread (``experiments/amortized/small_budget.py``; 64 at 10⁴ lost C2ST;
  NRE takes the same default, NLE keeps 256).
* Adam at 5·10⁻⁴ with gradients clipped at norm 5 (sbi's defaults). By default two copies train
  side by side in one program on the same minibatches: one without weight decay, one with
  decoupled weight decay (AdamW, Loshchilov & Hutter 2019) of 1 on the embedding network's
  weights; the copy with the lower validation loss is kept (``diagnostics["weight_decay"]``).
  A flattened high-dimensional x overfits small simulation budgets (a 20-response regression at
  10⁴ simulations: training loss 0.17 nats below the validation loss, posterior means off by
  0.18–0.26 sd), which the decay cures (0.06–0.11 sd); a low-dimensional x with a curved
  posterior (two moons) needs an unconstrained embedding, and the validation loss tells them apart.
* ``flow="auto"`` (the default) trains a second candidate after the first, on the same split,
  initialisation key and minibatches: sbi's NPE — a MAF whose MADE conditioners use tanh,
  conditioned on the standardised flat x itself (``embedding="none"``) — when x is flat and
  read by the default MLP embedding without absences; the lower validation −log q is kept
  (``diagnostics["validation_by_flow"]``). On the 10-D Gaussian linear task at 10³
  simulations our spline flow on the MLP embedding had held-out −log q 0.29 where sbi's
  configuration had −0.43 (``experiments/bench/npe_architecture.py``; C2ST 0.68 against sbi's
  0.56); on two moons and SLCP the spline flow was better (−2.99 vs −1.87, 7.87 vs 7.94), and
  on a 20-response regression at 10⁴ its decayed copy (0.07 vs MAF's 0.19). It costs the
  second training (at 10³ mostly its compilation, ~5 s).

>>> post = pi.npe(model, key=0, num_simulations=10_000)           # doctest: +SKIP
>>> post.sample(1, {"y": y_obs}, 1000)                            # doctest: +SKIP
"""

import functools
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from probinfer._utils import as_key, user_stacklevel
from probinfer.checkpoint import fingerprint, path_for
from probinfer.compiler import as_target
from probinfer.errors import DataError, NonFiniteError
from probinfer.health import ProbinferWarning
from probinfer.inference.amortized.posterior import AmortizedPosterior
from probinfer.nn.embeddings import embedding_module, layout_kind, output_size
from probinfer.nn.flows import make_flow
from probinfer.nn.layout import ObservationLayout, mask_features
from probinfer.nn.training import Trainer, stream_keys

__all__ = ["npe", "simulate_training_set"]

_PATIENCE_EPOCHS = 20
_PATIENCE_STEPS = 2_000
_STEP_DECAYS = 2
_MAX_STEPS = 50_000  # the default limit: the larger of these steps and _MAX_EPOCHS epochs
_MAX_EPOCHS = 500
_LEARNING_RATE = 5e-4
_WEIGHT_DECAYS = (0.0, 1.0)  # the candidates of weight_decay="auto"


def npe(
    model,
    *,
    key,
    num_simulations=10_000,
    flow="auto",
    embedding="mlp",
    num_observations=None,
    missing_rate=0.0,
    num_layers=None,
    num_steps=None,
    batch_size=None,
    validation_fraction=0.1,
    optimizer=None,
    weight_decay="auto",
    num_estimators=1,
    block_size=10_000,
    devices=None,
    checkpoint=None,
    progress="auto",
    model_args=(),
    model_kwargs=None,
    data=(),
):
    """Neural posterior estimation: train q(θ | x) on the model's own simulations.

    Args:
        model: a model function (compiled with ``model_args``, ``model_kwargs``, ``data``; the
            observed values there fix the shapes of x), a Target, a zoo Example or zoo name.
        key: int seed or PRNG key.
        num_simulations: simulated pairs (θ, x), validation included.
        flow: ``"auto"`` (module docstring: a spline flow on the embedding and, for a flat x
            with the MLP embedding, also sbi's MAF on x itself, the lower validation loss
            kept), a conditional flow (``"nsf"``, ``"realnvp"``, ``"maf"``, ``"iaf"``; see
            :func:`~probinfer.inference.flows.make_flow`), or ``"flow_matching"`` (FMPE, Dax et
            al. 2023: a continuous flow trained by conditional flow matching,
            :mod:`probinfer.nn.flow_matching`; sampling and densities solve an ODE, densities
            with the exact divergence up to 32 dimensions; its losses in ``diagnostics`` are
            the regression's, not −log q).
        embedding: ``"mlp"`` (flattened x), ``"set"`` (a DeepSets encoder over the leading
            axis of the observed sites — exchangeable observations along a plate), ``"none"``
            (the flow conditions on the standardised flat x itself) or a flax module mapping
            standardised flat x ``(b, x_dim)`` to ``(b, features)``.
        num_observations: with ``embedding="set"``, the data-set sizes the estimator answers
            for: ``(lo, hi)``, or an int lo (hi: the compiled size). Simulations are drawn at the
            compiled size and cut to a size log-uniform on [lo, hi] afresh at every step; a data
            set of n observations is given as is (padded inside). None: the compiled size only.
        missing_rate: train with this share of x's entries blanked at random, so NaN entries of
            a data set are read as missing (missing at random) instead of refused; 0: NaN is an
            error.
        num_layers: flow layers (None: the flow's default).
        num_steps: at most this many optimiser steps (None: the larger of 50,000
            and 500 epochs, and a warning when that limit rather than early stopping ends
            training); early stopping may end it sooner.
        batch_size: simulations per step (the minibatch of the training set); None:
            ``num_simulations / 16`` between 64 and 256.
        validation_fraction: share of the simulations held out for early stopping, in (0, 0.5].
        optimizer: an optax GradientTransformation (None: Adam 5e-4, clipping at norm 5).
        weight_decay: decoupled weight decay of the embedding network's parameters with the
            default optimizer: ``"auto"`` (train with 0 and with 1 side by side, keep the one with
            the lower validation loss) or a number (that one only). A custom ``optimizer``
            carries its own (``optax.adamw``); then only ``"auto"`` or 0 are accepted.
        num_estimators: train this many estimators side by side in one program (a deep
            ensemble, Lakshminarayanan et al. 2017: each its own initialisation, minibatch
            order and weight-decay choice; the same simulations and validation split) and
            answer with their equal mixture, q(θ | x) = (1/M) Σ_m q_m(θ | x) — wider where the
            members disagree, i.e. where the simulations said little. Costs M times the
            training arithmetic (one program: on a GPU, little more wall time).
        block_size: simulations drawn per compiled block (memory bound).
        devices: devices each minibatch's rows are split over (data-parallel, the same fit up to
            float reduction order; :mod:`probinfer.devices`: None for every device).
        checkpoint: folder or ``.npz`` path; training is saved after every epoch and resumes.
        progress: progress bar (True, False or ``"auto"``).

    Returns:
        :class:`~probinfer.inference.amortized.AmortizedPosterior` (``sample(key, x, n)``,
        ``log_prob(theta, x)``, ``posterior(x, key=)``, ``save``); diagnostics
        ``train_loss`` and ``validation_loss`` per epoch (mean −log q of unconstrained θ; a
        step with a non-finite loss or gradient is skipped and left out of ``train_loss``),
        ``best_epoch`` (the epoch after which the kept weights were validated), ``num_epochs``,
        ``num_steps``, ``num_dropped``, ``seconds``, the chosen ``weight_decay`` and each
        candidate's best validation loss (``validation_by_decay``).

    Example:
        >>> def model(y=None):
        ...     mu = pi.sample("mu", dist.Normal(0, 1))
        ...     with pi.plate("data", 10):
        ...         pi.sample("y", dist.Normal(mu, 1), obs=y)
        >>> post = pi.npe(model, key=0, embedding="set")               # doctest: +SKIP
    """
    start_time = time.perf_counter()
    target = as_target(model, model_args, model_kwargs, data)
    target.check_continuous()
    layout = ObservationLayout.from_target(target, layout_kind(embedding)).with_absences(
        num_observations, missing_rate
    )
    settings = _settings(num_simulations, batch_size, validation_fraction, num_steps)
    members = _members(num_estimators)
    checkpoint = path_for(checkpoint, "npe")  # its folder proven writable before simulating
    key_sim, key_split, key_init, key_train = jax.random.split(as_key(key), 4)
    z, raw, dropped = simulate_training_set(
        target, layout, key_sim, settings["num_simulations"], int(block_size)
    )
    layout = layout.fitted(raw)
    loc, scale = z.mean(0), np.where(z.std(0) > 1e-8, z.std(0), 1.0)
    u = ((z - loc) / scale).astype(np.float32)
    features = np.asarray((raw - layout.loc) / layout.scale, np.float32)
    decays = _decays(weight_decay, optimizer is not None)
    candidates = _candidates(flow, embedding, layout)
    fits = {}
    for kind, embed, activation in candidates:  # the same split, initialisation and minibatches
        record = fingerprint(
            as_key(key),
            target,
            flow=kind,
            embedding=repr(embed),
            num_layers=num_layers,
            optimizer="default" if optimizer is None else "custom",
            weight_decay=list(decays),
            **({"activation": activation} if activation != "gelu" else {}),
            **({"num_estimators": members} if members > 1 else {}),
            **absence_settings(layout),
            **settings,
        )
        fits[kind] = fit_conditional_flow(
            u,
            features,
            keys=(key_split, key_init, key_train),
            # −log q of z = −log q of u + Σ log scale (flow matching's loss is a regression's)
            offset=0.0 if kind == "flow_matching" else float(np.log(scale).sum()),
            flow=kind,
            embedding=embed,
            activation=activation,
            absences=(layout.sizes, layout.missing_rate),
            num_layers=num_layers,
            settings=settings,
            decays=decays if embed != "none" else (0.0,),  # no embedding weights to decay
            optimizer=optimizer,
            devices=devices,
            checkpoint=candidate_path(checkpoint, kind, len(candidates)),
            fingerprint=record,
            progress=progress,
            members=members,
        )
    losses = {k: best_loss(fit[3]["validation_loss"]) for k, fit in fits.items()}
    chosen = min(losses, key=losses.get)  # the first on ties
    module, flow_, params, diagnostics = fits[chosen]
    embedding = next(e for k, e, _ in candidates if k == chosen)
    if len(candidates) > 1:
        diagnostics["validation_by_flow"] = losses
    diagnostics |= simulation_counts(u.shape[0], dropped, start_time)
    return AmortizedPosterior(
        target=target,
        flow=flow_,
        embedding=module,
        layout=layout,
        params=params,
        loc=loc.astype(np.float32),
        scale=scale.astype(np.float32),
        method="npe",
        settings={
            "flow": chosen,
            "embedding": embedding if isinstance(embedding, str) else "custom",
            "num_layers": getattr(flow_.module, "num_layers", None),
            "num_estimators": members,
            **absence_settings(layout),
            **settings,
        },
        diagnostics=diagnostics,
    )


def fit_conditional_flow(u, features, *, keys, offset, flow, embedding, num_layers, settings,
                         decays, optimizer, devices, checkpoint, fingerprint, progress,
                         absences=(None, 0.0), members=1, activation="gelu",
                         **warm):  # fmt: skip
    """Fit q(u | s_ψ(features)) by maximum likelihood with the early-stopping rule of the module
    docstring — the training NPE and NLE share (their u and conditioning swap places).

    Args:
        u: ``(n, dim)`` standardised values the flow models; features: ``(n, *feature_shape)``
            standardised conditioning inputs of the embedding.
        keys: ``(split, init, train)`` PRNG keys; offset: added to the losses (the log
            Jacobian of the standardisation, so reported losses are −log q of raw values).
        settings: :func:`_settings`'s dict; decays: the weight-decay candidates trained side by
            side (the one with the lowest validation loss is kept).
        absences: ``(sizes, missing_rate)`` of the layout: blanked at random in every
            minibatch (:func:`~probinfer.nn.layout.mask_features`) for a masked embedding.
        members: estimators trained side by side (an ensemble; :func:`fit_network`).
        activation: the flow conditioners' activation (``"gelu"``, ``"tanh"``).
        warm: ``start=``, ``patience=`` of :func:`fit_network` (sequential rounds).

    Returns:
        ``(embedding module, flow, params of the kept copy, diagnostics)`` (:func:`fit_network`).
    """

    def build(patience):
        parts = (flow, u.shape[1], num_layers, tuple(features.shape[1:]), absences, decays,
                 members, patience, activation)  # fmt: skip
        if optimizer is not None or not isinstance(embedding, str):  # not hashable: no cache
            return _program.__wrapped__(embedding, *parts, optimizer)
        # a second call with the same shapes (seeds, budgets) compiles nothing (~6 s saved)
        return _program(embedding, *parts, None)

    return fit_network(build, u, features, keys=keys, offset=offset, settings=settings,
                       decays=decays, devices=devices, checkpoint=checkpoint,
                       fingerprint=fingerprint, progress=progress, members=members,
                       name=f"the {flow} flow", **warm)  # fmt: skip


def fit_network(build, u, features, *, keys, offset, settings, decays, devices, checkpoint,
                fingerprint, progress, start=None, patience=(_PATIENCE_EPOCHS, _PATIENCE_STEPS),
                members=1, name="the network"):  # fmt: skip
    """Train the network ``build(patience)`` returns — ``(embedding module, network, initialise,
    Trainer)`` whose loss reads minibatches ``(u, features)`` — on a held-out split with the
    module docstring's early stopping: what NPE's, NLE's and NRE's training share.

    ``start``: one copy's parameters to start every copy from (a warm start; None: the
    initialiser's); ``patience``: ``(epochs, steps)`` without improvement before a step decay
    (the larger of the two, in epochs); ``members``: M > 1 trains M groups of the decay
    candidates (copy m·D + d: member m, decay d), each group its own minibatch order and keys,
    and keeps each member's best candidate; ``name``: what the step-limit warning calls the
    network (``"the nsf flow"``: ``flow="auto"`` trains two).

    Returns:
        ``(embedding module, network, params of the kept copy, diagnostics)``: ``train_loss``,
        ``validation_loss`` per epoch (plus ``offset``), ``weight_decay``,
        ``validation_by_decay``, ``best_epoch``, ``num_epochs``, ``num_steps`` (of the first
        member); with members, params carry a leading member axis and diagnostics add
        ``members`` (each member's weight decay, best validation loss and best epoch).
    """
    key_split, key_init, key_train = keys
    order = np.asarray(jax.random.permutation(key_split, u.shape[0]))
    num_val = max(1, int(round(settings["validation_fraction"] * u.shape[0])))
    val, train = order[:num_val], order[num_val:]
    batch = min(settings["batch_size"], train.size)
    steps_per_epoch = train.size // batch
    patience = max(patience[0], -(-patience[1] // steps_per_epoch))
    module, network, initialise, trainer = build(patience)
    total = settings["num_steps"] or max(_MAX_STEPS, _MAX_EPOCHS * steps_per_epoch)
    if start is None:
        params = initialise(key_init)
    else:
        params = jax.tree.map(
            lambda x: jnp.broadcast_to(x, (members * len(decays), *jnp.shape(x))), start
        )
    fitted = trainer.fit(
        params,
        key=key_train,
        num_steps=total,
        data=(jnp.asarray(u[train]), jnp.asarray(features[train])),
        batch_size=batch,
        validation=(jnp.asarray(u[val]), jnp.asarray(features[val])),
        validate_every=steps_per_epoch,
        devices=devices,
        checkpoint=checkpoint,
        fingerprint=fingerprint,
        progress=progress,
    )
    best_loss = np.nanmin(np.asarray(fitted.validation), axis=0).reshape(members, len(decays))
    kept = np.argmin(best_loss, axis=1) + len(decays) * np.arange(members)  # each member's best
    chosen = int(kept[0])
    ran = ~np.isnan(np.asarray(fitted.validation)[:, chosen])  # epochs before it finished
    val_loss = np.asarray(fitted.validation)[ran, chosen]
    num_epochs = int(len(val_loss))
    train_loss = _epoch_means(np.asarray(fitted.losses)[:, chosen], steps_per_epoch, num_epochs)
    best_epoch = -(-np.asarray(fitted.best_step) // steps_per_epoch)
    diagnostics = {
        "train_loss": train_loss + offset,
        "validation_loss": val_loss + offset,
        "weight_decay": float(decays[chosen]),
        "validation_by_decay": {
            float(d): float(v) + offset for d, v in zip(decays, best_loss[0], strict=True)
        },
        "best_epoch": int(best_epoch[chosen]),
        "num_epochs": num_epochs,
        "num_steps": int(min(total, num_epochs * steps_per_epoch)),
    }
    if settings["num_steps"] is None and num_epochs * steps_per_epoch >= total:
        _warn_step_limit(name, total, diagnostics["best_epoch"], num_epochs)
    if members == 1:
        return module, network, jax.tree.map(lambda x: x[chosen], fitted.params), diagnostics
    diagnostics["members"] = [
        {"weight_decay": float(decays[c % len(decays)]), "best_epoch": int(best_epoch[c]),
         "validation_loss": float(np.min(best_loss[m])) + offset}
        for m, c in enumerate(kept)
    ]  # fmt: skip
    return module, network, jax.tree.map(lambda x: x[kept], fitted.params), diagnostics


def _warn_step_limit(name, total, best_epoch, num_epochs):
    """Training ended at the default step limit, not by early stopping: say so (NPE's, NLE's,
    NRE's; the warning points at the user's call)."""
    warnings.warn(
        f"training {name} reached the default limit of {total:,} steps before early stopping "
        f"ended it (best validation loss at epoch {best_epoch} of {num_epochs}), so the "
        "estimator may be undertrained; pass a larger num_steps= (each epoch's held-out loss "
        "is in diagnostics['validation_loss']).",
        ProbinferWarning,
        stacklevel=user_stacklevel(),
    )


@functools.lru_cache(maxsize=8)
def _program(embedding, flow, dim, num_layers, feature_shape, absences, decays, members,
             patience, activation, optimizer):  # fmt: skip
    """``(embedding module, flow, initialise, Trainer)`` for one network and training rule.
    Cached by value for the default optimizer and a named embedding, so the trainer's chunk and
    the initialiser compile once per shape in a process (calibration, seeds, benchmarks)."""
    module = embedding_module(embedding, feature_shape, dim, masked=absences != (None, 0.0))
    context_dim = output_size(module, feature_shape)
    flow_ = make_flow(
        flow, dim, num_layers=num_layers, context_dim=context_dim, activation=activation
    )

    def one(key):
        return {
            "embedding": module.init(key, jnp.zeros((1, *feature_shape))),
            "flow": flow_.init(jax.random.fold_in(key, 1)),
        }

    @jax.jit
    def initialise(key):
        # a member's decay candidates start from the same weights, members from their own (the
        # first from the plain run's)
        params = one(key) if members == 1 else jax.vmap(one)(stream_keys(key, members))
        if members == 1:
            return jax.tree.map(lambda x: jnp.broadcast_to(x, (len(decays), *x.shape)), params)
        return jax.tree.map(lambda x: jnp.repeat(x, len(decays), axis=0), params)

    def loss(params, key, batch):
        """The flow's training loss on ``batch`` (mean −log q(u | x), or flow matching's)."""
        u, features = batch
        key, key_mask = jax.random.split(key)
        context = module.apply(params["embedding"], mask_features(key_mask, features, *absences))
        return flow_.training_loss(params["flow"], key, u, context)

    template = jax.eval_shape(one, jax.random.PRNGKey(0))

    def optimizer_for(decay):
        """One copy's optimizer: the custom one, or Adam with the embedding's decoupled decay."""
        return optimizer if optimizer is not None else _default_optimizer(decay, template)

    trainer = Trainer(
        loss,
        optimizer_for,
        early_stopping={"patience": patience, "decays": _STEP_DECAYS, "factor": 0.1},
        copies=members * len(decays),
        hyper=jnp.tile(jnp.asarray(decays, jnp.float32), members),
        streams=members,
        flat=optimizer is None,  # a custom optimizer may mask by leaf
        desc="npe",
    )
    return module, flow_, initialise, trainer


def _candidates(flow, embedding, layout):
    """``[(flow, embedding, activation)]`` to train; ``flow="auto"``: the spline flow on the
    user's embedding and, for a flat x read by the default MLP embedding without absences,
    sbi's NPE — a MAF with tanh conditioners on x itself (module docstring)."""
    if flow != "auto":
        return [(flow, embedding, "gelu")]
    plain = embedding == "mlp" and layout.sizes is None and not layout.missing_rate
    return [("nsf", embedding, "gelu")] + ([("maf", "none", "tanh")] if plain else [])


def best_loss(validation_loss):
    """The lowest finite validation loss (inf when training never gave one): how ``"auto"``
    picks among candidate flows trained on the same rows."""
    v = np.asarray(validation_loss, np.float64)
    return float(np.min(v[np.isfinite(v)])) if np.isfinite(v).any() else float("inf")


def candidate_path(checkpoint, flow, num_candidates):
    """One checkpoint file per candidate flow of ``flow="auto"`` (``npe-nsf.npz``, …)."""
    if checkpoint is None or num_candidates == 1:
        return checkpoint
    return f"{checkpoint[: -len('.npz')]}-{flow}.npz"


def _settings(num_simulations, batch_size, validation_fraction, num_steps):
    if int(num_simulations) < 20:
        raise DataError(f"num_simulations must be at least 20, got {num_simulations}.")
    if batch_size is None:  # small budgets: more steps an epoch (module docstring)
        batch_size = min(256, max(64, int(num_simulations) // 16))
    if int(batch_size) < 1:
        raise DataError(f"batch_size must be a positive integer, got {batch_size}.")
    if not 0.0 < float(validation_fraction) <= 0.5:
        raise DataError(
            f"validation_fraction must lie in (0, 0.5] (early stopping needs held-out "
            f"simulations); got {validation_fraction}."
        )
    if num_steps is not None and int(num_steps) < 1:
        raise DataError(f"num_steps must be a positive integer or None, got {num_steps}.")
    return {
        "num_simulations": int(num_simulations),
        "batch_size": int(batch_size),
        "validation_fraction": float(validation_fraction),
        "num_steps": None if num_steps is None else int(num_steps),
    }


def simulate_training_set(target, layout, key, num_simulations, block_size):
    """``(z (n, dim), raw features (n, *feature_shape), dropped)``: simulations from the prior
    predictive in compiled blocks, θ unconstrained, rows with a non-finite value dropped."""
    size = int(min(block_size, num_simulations))

    @jax.jit
    def block(key):
        params, observations = target.simulate(key, size)
        z = jax.vmap(target.unconstrain)({k: params[k] for k in target.latent_sites})
        return z, layout.raw(observations)[0]

    zs, xs = [], []
    for i, start in enumerate(range(0, num_simulations, size)):
        z, x = block(jax.random.fold_in(key, i))
        keep = min(size, num_simulations - start)
        zs.append(np.asarray(z[:keep]))
        xs.append(np.asarray(x[:keep]))
    z, x = np.concatenate(zs), np.concatenate(xs)
    finite = np.isfinite(z).all(1) & np.isfinite(x.reshape(x.shape[0], -1)).all(1)
    dropped = int((~finite).sum())
    if finite.sum() < 20:
        raise NonFiniteError(
            f"only {int(finite.sum())} of {num_simulations} simulations of '{target.name}' are "
            "finite; check the model's prior predictive (target.simulate)."
        )
    if dropped:
        warnings.warn(
            f"{dropped} of {num_simulations} simulations of '{target.name}' had non-finite "
            "parameters or data and were dropped (diagnostics['num_dropped']).",
            RuntimeWarning,
            stacklevel=3,
        )
    return z[finite], x[finite], dropped


def absence_settings(layout):
    """What an estimator records of the absences its layout takes (saved, and read back by
    :func:`~.posterior.embedded_parts`)."""
    return {
        "num_observations": None if layout.sizes is None else list(layout.sizes),
        "missing_rate": layout.missing_rate,
    }


def simulation_counts(num_used, dropped, start_time):
    """The diagnostics every simulation-trained estimator adds to its training's: simulations
    used, dropped (non-finite), and seconds since ``start_time`` (``time.perf_counter``)."""
    return {
        "num_simulations": int(num_used),
        "num_dropped": int(dropped),
        "seconds": time.perf_counter() - start_time,
    }


def _members(num_estimators):
    if (
        isinstance(num_estimators, bool)
        or int(num_estimators) != num_estimators
        or num_estimators < 1
    ):
        raise DataError(f"num_estimators must be a positive integer, got {num_estimators!r}.")
    return int(num_estimators)


def _decays(weight_decay, custom_optimizer):
    """The weight-decay candidates trained side by side."""
    if isinstance(weight_decay, str) and weight_decay == "auto":
        return (0.0,) if custom_optimizer else _WEIGHT_DECAYS
    if isinstance(weight_decay, str) or not float(weight_decay) >= 0.0:
        raise DataError(f"weight_decay must be 'auto' or a number ≥ 0, got {weight_decay!r}.")
    if custom_optimizer and float(weight_decay) != 0.0:
        raise DataError(
            "weight_decay applies to the default optimizer; put the decay inside your own "
            "(for instance optax.adamw) and leave weight_decay='auto'."
        )
    return (float(weight_decay),)


def _default_optimizer(decay, template):
    """Adam at 5·10⁻⁴, gradients clipped at norm 5, and decoupled weight decay ``decay`` of the
    embedding network's weights only (AdamW's −η λ w: the step is −η (Adam's direction + λ w)),
    for the one parameter vector of a ``Trainer(flat=True)`` whose one copy's pytree is
    ``template`` (shapes suffice): the mask is a 0/1 vector in the vector's leaf order."""
    keep = jax.tree.map(
        lambda x, k: np.full(x.shape, k, np.float32), template, _embedding_only(template)
    )
    mask = ravel_pytree(keep)[0]  # the leaf order of the trainer's vector (jax.tree.flatten's)
    return optax.chain(
        optax.clip_by_global_norm(5.0),
        optax.scale_by_adam(),
        optax.add_decayed_weights(decay * mask),
        optax.scale(-_LEARNING_RATE),
    )


def _embedding_only(params):
    """Decay masks: the embedding network's weights only (the flow's or classifier's stay)."""
    return {
        part: jax.tree.map(lambda _, keep=part == "embedding": keep, p)
        for part, p in params.items()
    }


def _epoch_means(losses, per_epoch, epochs):
    """The mean training loss of each of the first ``epochs`` epochs (``per_epoch`` steps; the
    last may be shorter), skipped steps (NaN) left out; NaN for an epoch with none left."""
    rows = np.full(epochs * per_epoch, np.nan, np.float32)
    steps = losses[: epochs * per_epoch]
    rows[: steps.size] = steps
    rows = rows.reshape(epochs, per_epoch)
    finite = np.isfinite(rows)
    count = finite.sum(1)
    total = np.where(finite, rows, 0.0).sum(1, dtype=np.float32)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan).astype(np.float32)
