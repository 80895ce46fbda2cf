"""``nre``: contrastive neural ratio estimation (NRE-C; Miller, Weniger & Forré 2022) — a classifier
d_φ(θ, s_ψ(x)) trained on the model's simulations so that d = log r(θ, x) = log p(x | θ) − log p(x)
exactly at the optimum, with the balanced-NRE regulariser (Delaunoy et al. 2022) as an option
(ALGORITHMS §12).

The classification problem: a data set x and K parameter points Θ = (θ_1 … θ_K). Class 0 (prior
weight p₀ = 1/(1+γ)): every θ_k was drawn independently of x; class k ≥ 1 (weight γ/((1+γ) K)
each): θ_k is the one x was simulated from. The Bayes classifier is

    q(k | Θ, x) = (γ/K) r(θ_k, x) / (1 + (γ/K) Σ_j r(θ_j, x)),   q(0 | Θ, x) = 1 / (1 + (γ/K) Σ_j r(θ_j, x)),

so parameterising q through d = log r and minimising the cross-entropy
−p₀ E_marginal[log q(0)] − γ p₀ E_joint[log q(1)] makes d the log ratio itself, normalised
(E_p(θ) [r(θ, x)] = 1) — where NRE-A (K = 1, γ = 1) and the atomic NRE-B learn it only up to a
function of x. Contrastive θ are the other simulations of the minibatch (rows i+1 … i+K of a
shuffled batch, independent of x_i). ``balance=λ`` adds λ (E_joint[σ(d)] + E_marginal[σ(d)] − 1)²,
which holds at the optimum and, enforced on a finite budget, makes the posterior conservative
(wider, not narrower) where the classifier is unsure.

The posterior p(θ | x) ∝ p(θ) r(θ, x) has no sampler of its own: the estimator is a learned
likelihood (up to a constant in θ) for SMC or NUTS, as NLE's is (:mod:`.learned`) —

>>> est = pi.nre(model, key=0)                                   # doctest: +SKIP
>>> est.posterior(y_obs, key=1)                                  # NUTS on p(θ) r(θ, y_obs)  # doctest: +SKIP
>>> est.log_ratio({"mu": 0.3}, y_obs)                            # doctest: +SKIP

Training is NPE's (:func:`~.npe.fit_network`: the same simulations in compiled blocks,
standardisation, early stopping, Adam at 5·10⁻⁴, and by default the embedding's weight decay 0
and 1 side by side).
"""

import functools
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from probinfer._utils import as_key
from probinfer.checkpoint import fingerprint, path_for
from probinfer.compiler import as_target
from probinfer.errors import DataError
from probinfer.inference.amortized.learned import LearnedSiteEstimator
from probinfer.inference.amortized.npe import (
    _STEP_DECAYS,
    _decays,
    _default_optimizer,
    _settings,
    absence_settings,
    fit_network,
    simulate_training_set,
    simulation_counts,
)
from probinfer.inference.amortized.posterior import (
    _jsonable,
    embedded_parts,
    embedding_config,
    standardised_arrays,
)
from probinfer.nn import estimator as estimator_file
from probinfer.nn.embeddings import default_width, embedding_module, layout_kind, output_size
from probinfer.nn.layout import ObservationLayout, mask_features
from probinfer.nn.training import Trainer

__all__ = ["nre", "RatioEstimator", "RatioClassifier", "contrastive_loss"]

KIND = "nre"


def nre(
    model,
    *,
    key,
    num_simulations=10_000,
    embedding="mlp",
    num_observations=None,
    missing_rate=0.0,
    num_contrastive=10,
    gamma=1.0,
    balance=0.0,
    num_steps=None,
    batch_size=None,
    validation_fraction=0.1,
    optimizer=None,
    weight_decay="auto",
    block_size=10_000,
    devices=None,
    checkpoint=None,
    progress="auto",
    model_args=(),
    model_kwargs=None,
    data=(),
):
    """Contrastive neural ratio estimation: learn log r(θ, x) = log p(x | θ) − log p(x).

    Args:
        model: the simulator as a model (latent sites θ, observed sites x; the observed values
            given at compile fix x's shapes), a Target, zoo Example or name.
        key: int seed or PRNG key.
        num_simulations: simulated pairs (θ, x), validation included.
        embedding: ``"mlp"`` (flattened x), ``"set"`` (DeepSets over the observed sites' leading
            axis: exchangeable observations) or a flax module ``(b, x_dim) → (b, features)``.
        num_observations, missing_rate: data sets of several sizes and with missing entries, as
            :func:`~probinfer.inference.amortized.npe` takes them.
        num_contrastive: K, the parameter points each x is classified against (the other
            simulations of its minibatch); more sharpens the ratio at a little cost.
        gamma: γ, the odds of "one θ_k is x's" against "none is" (1: the paper's default).
        balance: λ of balanced NRE's regulariser (0: off; Delaunoy et al. use 100), which
            trades sharpness for posteriors that are conservative rather than overconfident.
        num_steps: at most this many optimiser steps (None: the larger of 50,000
            and 500 epochs, and a warning when that limit rather than early stopping ends
            training); early stopping may end it sooner.
        batch_size: simulations per step (at least K + 1; None: NPE's, ``num_simulations /
            16`` between 64 and 256).
        validation_fraction: share held out for early stopping, in (0, 0.5].
        optimizer: an optax GradientTransformation (None: Adam 5e-4, clipping at norm 5).
        weight_decay: the embedding's decoupled weight decay with the default optimizer:
            ``"auto"`` (0 and 1 side by side, the lower validation loss kept) or a number.
        block_size: simulations drawn per compiled block (memory bound).
        devices: devices each minibatch's rows are split over (:mod:`probinfer.devices`).
        checkpoint: folder or ``.npz`` path; training is saved after every epoch and resumes.
        progress: progress bar (True, False or ``"auto"``).

    Returns:
        A :class:`RatioEstimator`: ``log_ratio(theta, x)``, ``likelihood(theta)`` (a
        distribution whose log density is log r, for a model's site), ``posterior(x, key=)`` and
        ``sample(key, x, n)`` (NUTS on p(θ) r(θ, x)), ``save``; diagnostics as
        :func:`~probinfer.inference.amortized.npe`'s, with losses the contrastive
        cross-entropy in nats (its floor is not 0: the classes overlap).

    Example:
        >>> def model(y=None):
        ...     mu = pi.sample("mu", dist.Normal(0, 1))
        ...     with pi.plate("data", 10):
        ...         pi.sample("y", dist.Normal(mu, 1), obs=y)
        >>> est = pi.nre(model, key=0, model_kwargs={"y": jnp.zeros(10)})   # doctest: +SKIP
        >>> est.posterior(jnp.ones(10), key=1)                              # doctest: +SKIP
    """
    start_time = time.perf_counter()
    target = as_target(model, model_args, model_kwargs, data)
    target.check_continuous()
    layout = ObservationLayout.from_target(target, layout_kind(embedding)).with_absences(
        num_observations, missing_rate
    )
    settings = _settings(num_simulations, batch_size, validation_fraction, num_steps)
    contrast = _contrast_settings(num_contrastive, gamma, balance, settings["batch_size"])
    checkpoint = path_for(checkpoint, KIND)
    key_sim, key_split, key_init, key_train = jax.random.split(as_key(key), 4)
    z, raw, dropped = simulate_training_set(
        target, layout, key_sim, settings["num_simulations"], int(block_size)
    )
    layout = layout.fitted(raw)
    loc, scale = z.mean(0), np.where(z.std(0) > 1e-8, z.std(0), 1.0)
    u = ((z - loc) / scale).astype(np.float32)
    features = np.asarray((raw - layout.loc) / layout.scale, np.float32)
    decays = _decays(weight_decay, optimizer is not None)
    record = fingerprint(
        as_key(key),
        target,
        method=KIND,
        embedding=repr(embedding),
        optimizer="default" if optimizer is None else "custom",
        weight_decay=list(decays),
        **absence_settings(layout),
        **contrast,
        **settings,
    )
    hidden = _hidden(u.shape[1])

    def build(patience):
        absences = (layout.sizes, layout.missing_rate)
        parts = (u.shape[1], tuple(features.shape[1:]), absences, hidden, *contrast.values())
        parts = (*parts, decays)
        if optimizer is not None or not isinstance(embedding, str):  # not hashable: no cache
            return _program.__wrapped__(embedding, *parts, patience, optimizer)
        return _program(embedding, *parts, patience, None)

    module, head, params, diagnostics = fit_network(
        build,
        u,
        features,
        keys=(key_split, key_init, key_train),
        offset=0.0,
        settings=settings,
        decays=decays,
        devices=devices,
        checkpoint=checkpoint,
        fingerprint=record,
        progress=progress,
        name="the ratio classifier",
    )
    diagnostics |= simulation_counts(u.shape[0], dropped, start_time)
    return RatioEstimator(
        target=target,
        head=head,
        embedding=module,
        layout=layout,
        params=params,
        loc=loc.astype(np.float32),
        scale=scale.astype(np.float32),
        settings={
            "embedding": embedding if isinstance(embedding, str) else "custom",
            "hidden": list(hidden),
            **absence_settings(layout),
            **contrast,
            **settings,
        },
        diagnostics=diagnostics,
    )


def _contrast_settings(num_contrastive, gamma, balance, batch_size):
    if int(num_contrastive) < 1:
        raise DataError(f"num_contrastive must be a positive integer, got {num_contrastive}.")
    if int(num_contrastive) >= batch_size:
        raise DataError(
            f"num_contrastive ({num_contrastive}) must be below batch_size ({batch_size}): the "
            "contrastive parameter points are the minibatch's other simulations."
        )
    if not float(gamma) > 0.0:
        raise DataError(f"gamma must be a positive number, got {gamma}.")
    if not float(balance) >= 0.0:
        raise DataError(f"balance must be a number ≥ 0 (0: off), got {balance}.")
    return {
        "num_contrastive": int(num_contrastive),
        "gamma": float(gamma),
        "balance": float(balance),
    }


def _hidden(dim):
    """The classifier's hidden widths: three GELU layers of the embedding's default width."""
    return (default_width(4 * dim),) * 3


class RatioClassifier(nn.Module):
    """d(u, s): the log ratio of standardised θ ``u`` ``(…, dim)`` and the data's embedding
    ``s`` ``(…, features)`` — an MLP of ``hidden`` GELU layers on their concatenation."""

    hidden: tuple = (64, 64, 64)

    @nn.compact
    def __call__(self, u, s):
        h = jnp.concatenate([u, s], axis=-1)
        for width in self.hidden:
            h = nn.gelu(nn.Dense(width)(h))
        return nn.Dense(1)(h)[..., 0]


def contrastive_loss(logit, u, s, num_contrastive, gamma, balance=0.0):
    """NRE-C's cross-entropy (module docstring) on a minibatch, plus balanced NRE's penalty.

    Args:
        logit: ``logit(theta (b, k, dim), s (b, k, features)) -> (b, k)``, the classifier d.
        u: ``(b, dim)`` parameter points; ``s``: ``(b, features)`` the embeddings of the data
            simulated from them (row i of each a joint draw).
        num_contrastive: K (at most b − 1 are used); gamma: γ; balance: λ.

    Returns:
        The mean loss (a scalar).
    """
    b = u.shape[0]
    k = max(1, min(int(num_contrastive), b - 1))
    rows = (jnp.arange(b)[:, None] + jnp.arange(k + 1)[None, :]) % b  # column 0: x's own θ
    d = logit(u[rows], jnp.broadcast_to(s[:, None, :], (b, k + 1, s.shape[-1])))
    log_gamma, log_k = jnp.log(gamma), jnp.log(float(k))

    def log_normaliser(logits):  # log(K + γ Σ_j r_j)
        pad = jnp.full((b, 1), log_k, logits.dtype)
        return jax.nn.logsumexp(jnp.concatenate([log_gamma + logits, pad], axis=-1), axis=-1)

    joint, marginal = d[:, :k], d[:, 1:]
    log_q_joint = log_gamma + joint[:, 0] - log_normaliser(joint)
    log_q_marginal = log_k - log_normaliser(marginal)
    p0 = 1.0 / (1.0 + gamma)
    loss = -jnp.mean(p0 * log_q_marginal + gamma * p0 * log_q_joint)
    if balance:
        gap = jnp.mean(jax.nn.sigmoid(joint[:, 0])) + jnp.mean(jax.nn.sigmoid(marginal[:, 0])) - 1
        loss = loss + balance * gap**2
    return loss


@functools.lru_cache(maxsize=8)
def _program(embedding, dim, feature_shape, absences, hidden, num_contrastive, gamma, balance,
             decays, patience, optimizer):  # fmt: skip
    """``(embedding module, classifier, initialise, Trainer)`` (cached as NPE's ``_program``)."""
    module = embedding_module(embedding, feature_shape, dim, masked=absences != (None, 0.0))
    head = RatioClassifier(tuple(hidden))
    width = output_size(module, feature_shape)

    @jax.jit
    def initialise(key):
        params = {
            "embedding": module.init(key, jnp.zeros((1, *feature_shape))),
            "head": head.init(
                jax.random.fold_in(key, 1), jnp.zeros((1, dim)), jnp.zeros((1, width))
            ),
        }
        return jax.tree.map(lambda x: jnp.broadcast_to(x, (len(decays), *jnp.shape(x))), params)

    template = jax.tree.map(  # one copy's parameters (shapes)
        lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype),
        jax.eval_shape(initialise, jax.random.PRNGKey(0)),
    )

    def loss(params, key, batch):
        u, features = batch
        s = module.apply(params["embedding"], mask_features(key, features, *absences))
        logit = functools.partial(head.apply, params["head"])
        return contrastive_loss(logit, u, s, num_contrastive, gamma, balance)

    trainer = Trainer(
        loss,
        lambda decay: optimizer if optimizer is not None else _default_optimizer(decay, template),
        early_stopping={"patience": patience, "decays": _STEP_DECAYS, "factor": 0.1},
        copies=len(decays),
        hyper=jnp.asarray(decays, jnp.float32),
        flat=optimizer is None,  # a custom optimizer may mask by leaf
        desc=KIND,
    )
    return module, head, initialise, trainer


class RatioEstimator(LearnedSiteEstimator):
    """log r(θ, x) for the simulator it was trained on, and the posteriors p(θ) r(θ, x).

    Attributes:
        target: the simulator (compiled); ``layout``: how x is flattened and standardised.
        head, embedding: the classifier :class:`RatioClassifier` and the embedding of x;
            ``params``: ``{"head": …, "embedding": …}``.
        loc, scale: ``(dim,)`` standardisation of the unconstrained θ.

    Saved files are of kind ``"nre"`` in :mod:`probinfer.nn.estimator`'s format.
    """

    kind = KIND
    method = KIND

    def __init__(self, *, target, head, embedding, layout, params, loc, scale, settings,
                 diagnostics):  # fmt: skip
        self.target, self.head, self.embedding, self.layout = target, head, embedding, layout
        self.params = params
        self.loc, self.scale = jnp.asarray(loc), jnp.asarray(scale)
        self.settings, self.diagnostics = dict(settings), dict(diagnostics)

    def log_q_flat(self, x_flat, z):
        """log r(θ, x) of raw flat data ``(n, x_dim)`` at unconstrained ``z`` ``(n, dim)``."""
        features = x_flat.reshape((-1, *self.layout.feature_shape))
        s = self.embedding.apply(
            self.params["embedding"], (features - self.layout.loc) / self.layout.scale
        )
        return self.head.apply(self.params["head"], (z - self.loc) / self.scale, s)

    def log_ratio(self, theta, x):
        """log r(θ, x) = log p(x | θ) − log p(x), as :meth:`log_likelihood` takes its inputs
        (``theta`` with batch shape B, ``x`` one data set or one per point): an array of
        shape B."""
        return self.log_likelihood(theta, x)

    def misspecification(self, x, *, key, num_simulations=2000):
        """Whether data set ``x`` looks like the model's simulations in this estimator's
        embedding space (MMD against fresh simulations; :mod:`.misspecification`): a
        :class:`~.misspecification.Misspecification` with ``p_value`` and ``verdict()``."""
        from probinfer.inference.amortized.misspecification import misspecification

        return misspecification(self, x, key=key, num_simulations=num_simulations)

    def __repr__(self):
        return (
            f"RatioEstimator(nre on '{self.target.name}': K={self.settings['num_contrastive']}, "
            f"{self.settings['embedding']} embedding, {self.diagnostics.get('num_epochs')} epochs)"
        )

    def _meta(self):
        return {
            "method": KIND,
            "target": self.target.name,
            "settings": self.settings,
            "embedding": embedding_config(self),
            "diagnostics": _jsonable(self.diagnostics),
        }

    def _arrays(self):
        return standardised_arrays(self)

    @classmethod
    def load(cls, path, model, *, embedding=None, model_args=(), model_kwargs=None, data=()):
        """The estimator saved at ``path`` for the simulator ``model`` it was trained on (a
        custom embedding module given again as ``embedding``)."""
        return estimator_file.load(
            path,
            model,
            kind=KIND,
            embedding=embedding,
            model_args=model_args,
            model_kwargs=model_kwargs,
            data=data,
        )


def _loader(path, header, arrays, model, *, embedding=None, model_args=(), model_kwargs=None,
            data=()):  # fmt: skip
    meta = header["meta"]
    settings = meta["settings"]
    target, layout, module = embedded_parts(
        path, header, arrays, (model, model_args, model_kwargs, data), embedding, "an NRE"
    )
    return RatioEstimator(
        target=target,
        head=RatioClassifier(tuple(settings["hidden"])),
        embedding=module,
        layout=layout,
        params=jax.tree.map(jnp.asarray, arrays["params"]),
        loc=arrays["loc"],
        scale=arrays["scale"],
        settings=settings,
        diagnostics=meta["diagnostics"],
    )


estimator_file.register(KIND, _loader)
