"""``amortized_vi``: auto-encoding variational Bayes (Kingma & Welling 2014) for models with one
latent z_i per data point along the data plate and global parameters θ (ALGORITHMS §10).

An encoder network q_φ(z_i | x_i) — a diagonal Gaussian from an MLP, or a conditional flow —
replaces one variational factor per datum, and a guide q(θ) (mean-field Gaussian or a point)
covers the globals. Both maximise the reparameterised minibatch ELBO, unbiased for the full-data
ELBO because the per-datum terms are scaled by N/B:

    L = E_q(θ)[ log p(θ) − log q(θ) + (N/B) Σ_{i∈B} E_q(z_i|x_i)[log p(x_i, z_i | θ) − log q(z_i | x_i)] ].

The encoder reads row i of the model's data arguments (``data=`` at compile), flattened. Local
sites live on their unconstrained space (NumPyro's ``biject_to``), Jacobians included.

>>> target = pi.compile(vae, x, data=("x",))                           # doctest: +SKIP
>>> fit = pi.amortized_vi(target, key=0, local=("z",))                  # doctest: +SKIP
>>> fit.encode(x_new)["z"]                                             # (mean, sd)  # doctest: +SKIP
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

from probinfer._utils import as_key, check_skipped_steps
from probinfer.checkpoint import fingerprint, path_for
from probinfer.errors import DataError
from probinfer.inference.amortized.encoder import (
    EncoderPosterior,
    FittedEncoder,
    _Encoder,
    _gaussian_log_q,
    _global_draws,
    _Spec,
)
from probinfer.nn.objectives import bound
from probinfer.nn.training import fit

__all__ = ["amortized_vi", "EncoderPosterior", "OBJECTIVES"]

OBJECTIVES = ("elbo", "iwae", "piwae")


def amortized_vi(
    target,
    *,
    key,
    local=("z",),
    encoder=None,
    flow=None,
    guide="gaussian",
    num_steps=5000,
    batch_size=None,
    num_particles=1,
    objective="elbo",
    optimizer=None,
    num_draws=1000,
    devices=None,
    checkpoint=None,
    checkpoint_every=None,
    progress="auto",
):
    """Amortized variational inference (AEVB): an encoder q_φ(z_i | x_i) for the local sites and
    a guide q(θ) for the globals, trained on the minibatch ELBO (module docstring).

    Args:
        target: a compiled Target with ``data=`` marked and local latents along the data plate.
        key: int seed or PRNG key.
        local: names of the per-datum latent sites (leading axis = the data points).
        encoder: hidden widths of the encoder MLP (None: two layers of 2× the input, 64–256).
        flow: None for a diagonal Gaussian encoder, or a flow name (``"nsf"``, ``"realnvp"``, …)
            for a conditional-flow encoder on the MLP's features.
        guide: ``"gaussian"`` (mean-field on the unconstrained globals) or ``"point"`` (MAP-like
            point estimate: q(θ) a point mass, no entropy term).
        num_steps: Adam steps; batch_size: data points per step (None: min(128, N)), drawn
            in epochs (a fresh permutation of the data per epoch, every point once per epoch;
            :func:`probinfer.nn.training.fit`, which runs the optimisation and skips steps with
            a non-finite loss or gradient);
        num_particles: draws of (θ, z_B) per step (``"elbo"``), or K draws of each z_i given
            one draw of θ (``"iwae"``, ``"piwae"``).
        objective: ``"elbo"``; ``"iwae"``, the per-datum importance-weighted bound
            log (1/K) Σ_k p(x_i, z_ik | θ) / q(z_ik | x_i) (Burda et al. 2016; a lower bound of
            log p(x | θ) for each θ, so the whole is still a bound of log p(x)); or ``"piwae"``
            (Rainforth et al. 2018, "Tighter Variational Bounds are Not Necessarily Better"):
            the global guide follows the IWAE gradient, the encoder the MIWAE one (groups of 4
            draws), because the encoder's gradient signal-to-noise ratio falls like 1/√K under
            IWAE (``experiments/flows/snr.py`` measures it). ``num_particles`` must be a multiple
            of 4 for ``"piwae"``.
        optimizer: optax GradientTransformation (None: Adam, 1e-2 for the guide and 1e-3 for
            the encoder, cosine decay to a tenth, clipping at norm 100).
        num_draws: draws of q(θ) kept as the posterior of the globals.
        devices: devices each minibatch's data points are split over (data-parallel, the same
            fit up to float reduction order; :mod:`probinfer.devices`: None for every device).
        checkpoint, checkpoint_every: folder or ``.npz`` path; saved every ``checkpoint_every``
            steps (default a tenth of the run), resumes bit-identically.
        progress: progress bar (True, False or ``"auto"``).

    Returns:
        :class:`EncoderPosterior` — draws of the globals; ``encode``, ``sample_local``,
        ``amortization_gap``; diagnostics ``elbo`` (per step, full-data scale: the objective's
        bound, IWAE's for ``"iwae"`` and ``"piwae"``; NaN at a skipped step), ``elbo_final``
        and ``elbo_final_se`` (the full-data ELBO, 16 draws), ``kl_per_datum`` (the mean over data
        of E_q[log q(z_i | x_i) − log p(z_i | θ)]: near 0 means posterior collapse — the decoder
        ignores z).

    Example:
        >>> fit = pi.amortized_vi(pi.compile(ppca, x, data=("x",)), key=0, local=("z",))  # doctest: +SKIP
    """
    spec = _Spec(target, local)
    if guide not in ("gaussian", "point"):
        raise DataError(f"guide must be 'gaussian' or 'point', got {guide!r}.")
    if objective not in OBJECTIVES:
        raise DataError(f"objective must be one of {OBJECTIVES}, got {objective!r}.")
    if objective == "piwae" and int(num_particles) % 4:
        raise DataError(
            "objective='piwae' trains the encoder on MIWAE bounds over groups of 4 draws; "
            f"num_particles must be a multiple of 4, got {num_particles}."
        )
    batch_size = min(128, spec.num_data) if batch_size is None else int(batch_size)
    if not 1 <= batch_size <= spec.num_data:
        raise DataError(
            f"batch_size must be between 1 and the {spec.num_data} data points, got {batch_size}."
        )
    if int(num_steps) < 1 or int(num_particles) < 1:
        raise DataError("num_steps and num_particles must be positive integers.")
    num_steps, num_particles = int(num_steps), int(num_particles)
    net = _Encoder(spec, flow, encoder)
    custom = optimizer is not None
    optimizer = optimizer or _default_optimizer(num_steps)
    key_init, key_fit, key_draws, key_eval = jax.random.split(as_key(key), 4)
    data = target.data

    elbo = _bound(spec, net, guide, data, "elbo", num_particles)
    params = jax.jit(lambda key: _init_params(spec, net, key))(key_init)
    record = fingerprint(
        as_key(key),
        target,
        local=list(spec.local),
        flow=flow,
        guide=guide,
        num_steps=num_steps,
        batch_size=batch_size,
        num_particles=num_particles,
        objective=objective,
        encoder=repr(encoder),
        optimizer="custom" if custom else "default",
    )
    # The minibatch is a row-index array: fit draws epochs of permutations of 0..N−1 and hands
    # the loss batch_size of them per step (split over ``devices``).
    fitted = fit(
        _loss(spec, net, guide, data, objective, num_particles),
        params,
        key=key_fit,
        num_steps=num_steps,
        optimizer=optimizer,
        data=jnp.arange(spec.num_data),
        batch_size=batch_size,
        devices=devices,
        checkpoint=path_for(checkpoint, "amortized_vi"),
        fingerprint=record,
        checkpoint_every=checkpoint_every,
        progress=progress,
        desc="amortized_vi",
    )
    params, skipped = fitted.params, np.asarray(fitted.skipped)
    check_skipped_steps(skipped, "amortized_vi", target.name)
    final, kl = jax.jit(jax.vmap(lambda k: elbo(params, k, jnp.arange(spec.num_data))))(
        jax.random.split(key_eval, 16)
    )
    thetas = jax.vmap(lambda k: _guide_draw(params["guide"], k, guide)[0])(
        jax.random.split(key_draws, int(num_draws))
    )
    draws = _global_draws(spec, thetas)
    diagnostics = {
        "elbo": -np.asarray(fitted.losses),
        "elbo_final": float(np.mean(final)),
        "elbo_final_se": float(np.std(final) / np.sqrt(final.size)),
        "kl_per_datum": float(np.mean(kl)),
        "skipped_steps": int(skipped.sum()),
    }
    estimator = FittedEncoder(
        spec=spec,
        encoder=net,
        params=params,
        guide=guide,
        settings=dict(record),
        diagnostics=diagnostics,
    )
    return EncoderPosterior(
        {k: np.asarray(v)[None] for k, v in draws.items()},
        estimator=estimator,
        method="amortized_vi",
        diagnostics=diagnostics,
        settings=dict(record),
    )


def _bound(spec, net, guide, data, objective, num_particles):
    """``value(params, key, index) -> (bound, KL per datum)``: the minibatch estimate of the
    objective's bound on log p(x) (full-data scale) for the data rows ``index``."""

    def value(params, key, index):
        batch = {k: v[index] for k, v in data.items()}
        inputs = spec.inputs(batch)
        scale = spec.num_data / index.shape[0]

        def one(key, theta, log_q_theta):
            u, log_q_z = net.sample_and_log_prob(params["encoder"], key, inputs)
            total, rows, prior_rows = spec.terms(theta, u, batch)
            return total - log_q_theta, rows - log_q_z, jnp.mean(log_q_z - prior_rows)

        if objective == "elbo":

            def joint(key):
                key_theta, key_z = jax.random.split(key)
                theta, log_q_theta = _guide_draw(params["guide"], key_theta, guide)
                outer, log_w, kl = one(key_z, theta, log_q_theta)
                return outer + scale * jnp.sum(log_w), kl

            values, kl = jax.vmap(joint)(jax.random.split(key, num_particles))
            return jnp.mean(values), jnp.mean(kl)
        key_theta, key_z = jax.random.split(key)
        theta, log_q_theta = _guide_draw(params["guide"], key_theta, guide)
        outer, log_w, kl = jax.vmap(lambda k: one(k, theta, log_q_theta))(
            jax.random.split(key_z, num_particles)
        )
        per_datum = jax.vmap(partial(bound, objective), in_axes=1)(log_w)  # log_w: (K, B)
        return outer[0] + scale * jnp.sum(per_datum), jnp.mean(kl)

    return value


def _loss(spec, net, guide, data, objective, num_particles):
    """The loss minimised: −bound; for PIWAE the guide's gradient comes from IWAE and the
    encoder's from MIWAE (each evaluated with the other part's parameters stopped)."""
    if objective != "piwae":
        value = _bound(spec, net, guide, data, objective, num_particles)
        return lambda params, key, index: -value(params, key, index)[0]
    iwae = _bound(spec, net, guide, data, "iwae", num_particles)
    miwae = _bound(spec, net, guide, data, "miwae", num_particles)
    stop = jax.lax.stop_gradient

    def loss(params, key, index):
        for_guide = {"guide": params["guide"], "encoder": stop(params["encoder"])}
        for_encoder = {"guide": stop(params["guide"]), "encoder": params["encoder"]}
        bound_value = iwae(for_guide, key, index)[0]
        # The second term's value is subtracted back out: the loss reads as −IWAE.
        encoder_term = miwae(for_encoder, key, index)[0]
        return -(bound_value + encoder_term - stop(encoder_term))

    return loss


def _init_params(spec, net, key):
    """Encoder at flax's initialisation; the guide's location uniform on (−2, 2) in the
    unconstrained space (NumPyro's ``init_to_uniform``: prior draws of a wide prior start far
    out), its scales at e⁻²."""
    loc = jax.random.uniform(key, (spec.global_dim,), minval=-2.0, maxval=2.0)
    return {
        "encoder": net.init(jax.random.fold_in(key, 1), spec.input_dim),
        "guide": {"loc": loc, "log_scale": jnp.full_like(loc, -2.0)},
    }


def _default_optimizer(num_steps):
    """Adam with a cosine decay to a tenth: 1e-2 for the guide of θ, 1e-3 for the encoder;
    gradients clipped at global norm 100."""

    def adam(lr):
        return optax.adam(optax.cosine_decay_schedule(lr, num_steps, alpha=0.1))

    return optax.chain(
        optax.clip_by_global_norm(100.0),
        optax.multi_transform(
            {"guide": adam(1e-2), "encoder": adam(1e-3)},
            lambda params: {k: jax.tree.map(lambda _, k=k: k, v) for k, v in params.items()},
        ),
    )


def _guide_draw(params, key, guide):
    """θ ~ q(θ) and log q(θ): mean-field Gaussian, or the point ``loc`` with log q = 0."""
    if guide == "point":
        return params["loc"], jnp.zeros(())
    eps = jax.random.normal(key, params["loc"].shape)
    return params["loc"] + jnp.exp(params["log_scale"]) * eps, _gaussian_log_q(
        eps, params["log_scale"]
    )
