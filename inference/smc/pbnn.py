"""SMC training of partial Bayesian neural networks — Zhao, Mair, Schön & Sjölund (2024),
"On Feynman–Kac training of partial Bayesian neural networks" (open-horizon variant).

A partial BNN ``y | x ~ p(y | f(x; φ, ψ))`` has stochastic weights ``φ ~ N(0, s² I)`` (here the
output layer) and deterministic weights ``ψ`` (the hidden layers and the noise scale). ψ maximises
``log p(y; ψ)`` while N particles track ``p(φ | y; ψ)``; by Fisher's identity

    ∇_ψ log p(y; ψ) = E_{p(φ | y; ψ)} [∇_ψ log p(y | φ; ψ)] ≈ (N_data / B) Σ_j W_j ∇_ψ log p(y_B | φ_j; ψ).

Per minibatch B (particles persist across minibatches and epochs): a Gaussian random-walk move of
φ, reweighting by ``p(y_B | φ; ψ)``, an Adam step on ψ with the weighted gradient, and stratified
resampling when the ESS falls below N/2. All of it is one jitted ``lax.scan`` over batches: a
particle system carried along with ψ's optimiser, not the minimisation of one loss, so it keeps
its own loop; :func:`map_network`, the point-estimate baseline, is a plain minimisation and runs
on the project's trainer (:func:`probinfer.nn.training.fit`).

>>> net = mlp(hidden=(50,))                                                   # doctest: +SKIP
>>> result = pbnn_smc(net, x, y, key=0, num_particles=100, num_epochs=200)     # doctest: +SKIP
>>> result.nlpd(x_test, y_test)                                               # doctest: +SKIP
"""

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.special import logsumexp

from probinfer._utils import as_key, positive_number
from probinfer.errors import DataError, ProbinferError
from probinfer.inference.smc import resampling
from probinfer.nn.training import fit
from probinfer.progress import ProgressBar, should_show

__all__ = ["PartialNetwork", "mlp", "pbnn_smc", "map_network", "PBNNResult", "fisher_gradient"]


class PartialNetwork(NamedTuple):
    """``init(key, x) -> ψ`` (a pytree with ``"log_sigma"``), ``features(ψ, x) -> (n, h)``
    (the deterministic part), ``phi_dim``: size of the stochastic output layer (h + 1) · out,
    ``out``: output dimension."""

    init: object
    features: object
    phi_dim: int
    out: int


class _Hidden(nn.Module):
    hidden: tuple

    @nn.compact
    def __call__(self, x):
        for width in self.hidden:
            x = nn.tanh(nn.Dense(width)(x))
        return x


def mlp(hidden=(50,), out=1):
    """A tanh MLP whose hidden layers (flax ``Dense``) are deterministic and whose output layer
    (weights and bias, ``(hidden[-1] + 1) · out`` numbers) is stochastic."""
    module = _Hidden(tuple(hidden))

    def init(key, x):
        return {"net": module.init(key, x[:1]), "log_sigma": jnp.zeros(())}

    def features(psi, x):
        return module.apply(psi["net"], x)

    return PartialNetwork(init, features, (hidden[-1] + 1) * out, out)


def _output(network, h, phi):
    """Output layer with stochastic weights: features h (n, k), φ (phi_dim,) -> (n, out)."""
    weights = phi.reshape(h.shape[-1] + 1, network.out)
    return h @ weights[:-1] + weights[-1]


def _predict(network, psi, phi, x):
    """``f(x; φ, ψ)``: (n, out) for one φ (phi_dim,)."""
    return _output(network, network.features(psi, x), phi)


def _gaussian(mean, y, log_sigma):
    return jnp.sum(
        -0.5 * ((y - mean) / jnp.exp(log_sigma)) ** 2 - log_sigma - 0.5 * jnp.log(2 * jnp.pi)
    )


def _log_likelihood(network, psi, phi, x, y):
    """Gaussian log likelihood of a batch, summed: y (n, out)."""
    return _gaussian(_predict(network, psi, phi, x), y, psi["log_sigma"])


def fisher_gradient(network, psi, phi, log_weights, x, y, scale=1.0):
    """Fisher's identity: ``scale · Σ_j W_j ∇_ψ log p(y | φ_j; ψ)`` and the per-particle
    log likelihoods ``(N,)``; ``phi`` (N, phi_dim), ``log_weights`` (N,) before this batch, W
    the weights after it.

    The weights are held constant, so this is the gradient of ``Σ_j W_j log p(y | φ_j; ψ)``: one
    pass through the deterministic layers for all particles, not one per particle.
    """

    def weighted(psi):
        h = network.features(psi, x)
        log_lik = jax.vmap(lambda p: _gaussian(_output(network, h, p), y, psi["log_sigma"]))(phi)
        weights = jax.lax.stop_gradient(jnp.exp(resampling.normalise(log_weights + log_lik)))
        return scale * weights @ log_lik, log_lik

    gradient, log_lik = jax.grad(weighted, has_aux=True)(psi)
    return gradient, log_lik


class PBNNResult(NamedTuple):
    """psi: trained deterministic weights; phi: (N, phi_dim) particles; log_weights: (N,);
    loss: (num_steps,) minus the weighted minibatch log likelihood per datum (``map_network``:
    its minibatch loss, NaN at a skipped step); network."""

    psi: dict
    phi: jax.Array
    log_weights: jax.Array
    loss: np.ndarray
    network: PartialNetwork

    def predict(self, x):
        """Per-particle means ``(N, n, out)``, the normalised weights ``(N,)`` and σ."""
        h = self.network.features(self.psi, jnp.asarray(x))
        means = jax.vmap(lambda p: _output(self.network, h, p))(self.phi)
        return (
            means,
            jnp.exp(resampling.normalise(self.log_weights)),
            jnp.exp(self.psi["log_sigma"]),
        )

    def nlpd(self, x, y):
        """Mean negative log predictive density of ``y`` (n, out) under the particle mixture."""
        return _mixture_nlpd(*self.predict(x), jnp.asarray(y))


def _mixture_nlpd(means, weights, sigma, y):
    log_p = jnp.sum(
        -0.5 * ((y[None] - means) / sigma) ** 2 - jnp.log(sigma) - 0.5 * jnp.log(2 * jnp.pi), -1
    )  # (N, n)
    return float(-jnp.mean(logsumexp(jnp.log(weights)[:, None] + log_p, axis=0)))


def _check(x, y, batch_size):
    x, y = jnp.asarray(x), jnp.asarray(y)
    if y.ndim == 1:
        y = y[:, None]
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise DataError(
            f"x must be (n, d) and y (n,) or (n, out) with the same n; got {x.shape}, {y.shape}."
        )
    if not 1 <= int(batch_size) <= x.shape[0]:
        raise DataError(
            f"batch_size must be between 1 and the {x.shape[0]} data points, got {batch_size}."
        )
    return x, y


def _batches(key, num_data, batch_size, num_epochs):
    """(num_epochs · ⌊n/B⌋, B) indices: a fresh permutation per epoch, laid out in advance for
    :func:`pbnn_smc`'s scan (the epoch scheme :func:`probinfer.nn.training.fit` draws for
    :func:`map_network`)."""
    per_epoch = num_data // batch_size
    keys = jax.random.split(key, num_epochs)
    order = jax.vmap(lambda k: jax.random.permutation(k, num_data)[: per_epoch * batch_size])(keys)
    return order.reshape(num_epochs * per_epoch, batch_size)


def pbnn_smc(
    network,
    x,
    y,
    *,
    key,
    num_particles=100,
    batch_size=32,
    num_epochs=100,
    learning_rate=1e-2,
    move_scale=0.01,
    prior_sd=1.0,
    weight_decay=0.0,
    progress="auto",
):
    """Train a partial BNN by open-horizon SMC (see the module docstring).

    Args:
        network: :class:`PartialNetwork` (e.g. :func:`mlp`).
        x: (n, d) inputs; y: (n,) or (n, out) targets (standardise both).
        key: int seed or PRNG key.
        num_particles: N particles for φ.
        batch_size: minibatch size B (≤ n).
        num_epochs: passes over the data.
        learning_rate: Adam step size for ψ.
        move_scale: sd of the random-walk move of φ per minibatch.
        prior_sd: prior sd of φ (initial particles).
        weight_decay: decoupled weight decay of ψ (AdamW; 0 for plain Adam, maximum likelihood).
        progress: ``True``, ``False`` or ``"auto"`` (a bar over the minibatch steps).

    Returns:
        :class:`PBNNResult` with ``predict`` and ``nlpd``.
    """
    x, y = _check(x, y, batch_size)
    if int(num_particles) < 2:
        raise ProbinferError(f"pbnn_smc needs at least 2 particles, got {num_particles}.")
    key_psi, key_phi, key_batches, key_steps = jax.random.split(as_key(key), 4)
    psi = network.init(key_psi, x)
    phi = prior_sd * jax.random.normal(key_phi, (int(num_particles), network.phi_dim), x.dtype)
    batches = _batches(key_batches, x.shape[0], int(batch_size), int(num_epochs))
    optimiser = optax.adamw(
        positive_number("learning_rate", learning_rate), weight_decay=weight_decay
    )
    scale = x.shape[0] / int(batch_size)
    n = int(num_particles)

    bar = ProgressBar(batches.shape[0], "pbnn_smc", enabled=should_show(progress, batches.shape[0]))

    def body(carry, inputs):
        psi, opt_state, phi, log_w = carry
        index, key, i = inputs
        bar.tick(i)
        key_move, key_resample = jax.random.split(key)
        phi = phi + move_scale * jax.random.normal(key_move, phi.shape, phi.dtype)
        gradient, log_lik = fisher_gradient(network, psi, phi, log_w, x[index], y[index], scale)
        log_w = resampling.normalise(log_w + log_lik)
        updates, opt_state = optimiser.update(jax.tree.map(jnp.negative, gradient), opt_state, psi)
        psi = optax.apply_updates(psi, updates)
        resample = resampling.ess(log_w) < n / 2
        ancestors = jnp.where(resample, resampling.stratified(key_resample, log_w), jnp.arange(n))
        phi = phi[ancestors]
        log_w = jnp.where(resample, jnp.full_like(log_w, -jnp.log(n)), log_w)
        loss = -jnp.exp(log_w) @ log_lik / index.shape[0]
        return (psi, opt_state, phi, log_w), loss

    @jax.jit
    def run(psi, phi):
        log_w = jnp.full((n,), -jnp.log(n), phi.dtype)
        carry = (psi, optimiser.init(psi), phi, log_w)
        keys = jax.random.split(key_steps, batches.shape[0])
        steps = jnp.arange(batches.shape[0])
        (psi, _, phi, log_w), loss = jax.lax.scan(body, carry, (batches, keys, steps))
        return psi, phi, log_w, loss

    psi, phi, log_w, loss = run(psi, phi)
    loss = np.asarray(loss)
    if not np.all(np.isfinite(loss)):
        step = int(np.argmin(np.isfinite(loss)))
        raise ProbinferError(
            f"pbnn_smc: the minibatch log likelihood became non-finite at step {step}; lower the "
            "learning_rate or standardise x and y."
        )
    return PBNNResult(psi, phi, log_w, loss, network)


def map_network(
    network,
    x,
    y,
    *,
    key,
    batch_size=32,
    num_epochs=100,
    learning_rate=1e-2,
    prior_sd=1.0,
    weight_decay=0.0,
    progress="auto",
):
    """The same network with φ as a point estimate: Adam on minibatches of the log joint
    (N(0, s²) prior on φ; AdamW ``weight_decay`` on ψ as in :func:`pbnn_smc`), ``num_epochs``
    epochs of ⌊n/B⌋ steps run by :func:`probinfer.nn.training.fit` (a step with a non-finite
    loss or gradient is skipped, its loss NaN); ``progress``: a bar over the steps (True, False
    or ``"auto"``). Returns a one-particle :class:`PBNNResult` — the MAP baseline."""
    x, y = _check(x, y, batch_size)
    key_psi, key_phi, key_fit = jax.random.split(as_key(key), 3)
    params = {
        "psi": network.init(key_psi, x),
        "phi": prior_sd * jax.random.normal(key_phi, (network.phi_dim,), x.dtype),
    }
    # Decay ψ only (φ has its Gaussian prior in the loss).
    decay_mask = {"psi": jax.tree.map(lambda _: True, params["psi"]), "phi": False}
    learning_rate = positive_number("learning_rate", learning_rate)
    optimiser = optax.adamw(learning_rate, weight_decay=weight_decay, mask=decay_mask)
    num_data, batch_size = x.shape[0], int(batch_size)
    scale = num_data / batch_size

    def loss(params, key, batch):
        log_lik = _log_likelihood(network, params["psi"], params["phi"], batch["x"], batch["y"])
        log_prior = -0.5 * jnp.sum((params["phi"] / prior_sd) ** 2)
        return -(scale * log_lik + log_prior) / num_data

    fitted = fit(
        loss,
        params,
        key=key_fit,
        num_steps=int(num_epochs) * (num_data // batch_size),
        optimizer=optimiser,
        data={"x": x, "y": y},
        batch_size=batch_size,
        progress=progress,
        desc="map_network",
    )
    params = fitted.params
    return PBNNResult(
        params["psi"], params["phi"][None], jnp.zeros(1), np.asarray(fitted.losses), network
    )
