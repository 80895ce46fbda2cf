"""Pieces the Distribution Transformer experiments share: the DT they train, random problems
(prior, θ*, data) from the meta-prior, a timed batched posterior, and summaries."""

import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

import probinfer as pi
from probinfer.inference.dt import DistributionTransformer, MetaPrior

HERE = os.path.dirname(os.path.abspath(__file__))


def mixture_prior(logits, means, scale_tril, dim):
    """The experiments' θ prior: a Gaussian mixture with these components (the DT and the
    per-prior baselines pass them), a standard normal in ``dim`` dimensions when none are given."""
    if logits is None:
        logits, means, scale_tril = jnp.zeros(1), jnp.zeros((1, dim)), jnp.eye(dim)[None]
    return dist.MixtureSameFamily(
        dist.Categorical(logits=logits), dist.MultivariateNormal(means, scale_tril=scale_tril)
    )


def train_dt(model, example, steps, name):
    """``(dt, seconds)``: the experiments' DT (width 64, 2 layers, batches of 128 random priors),
    checkpointed under results/<name>-<steps> so a killed run resumes."""
    start = time.perf_counter()
    dt = pi.dt.train(
        model,
        key=0,
        num_steps=steps,
        batch_size=128,
        network=DistributionTransformer(d_model=64, num_layers=2, num_heads=4),
        model_kwargs=example,
        checkpoint=os.path.join(HERE, "results", f"{name}-{steps}"),
        progress="auto",
    )
    return dt, time.perf_counter() - start


def problems(model, example, num, key):
    """``num`` random priors (a batched Mixture), true θ (num, D) and data sets from them."""
    target = pi.compile(model, **example)
    k1, k2, k3 = jax.random.split(key, 3)
    priors = MetaPrior().sample(k1, num, target.dim)
    theta = jax.vmap(lambda p, k: p.sample(k, 1)[0])(priors, jax.random.split(k2, num))
    data = jax.vmap(target.simulate_observations)(jax.random.split(k3, num), theta)
    return priors, np.asarray(theta), {k: np.asarray(v) for k, v in data.items()}


def timed_posterior(dt, priors, data):
    """``(posteriors, seconds per prior)`` of one batched pass, compiled before it is timed."""
    jax.block_until_ready(dt.mixture(priors, data).logits)
    start = time.perf_counter()
    q = dt.mixture(priors, data)
    jax.block_until_ready(q.logits)
    return q, (time.perf_counter() - start) / priors.logits.shape[0]


def one(tree, i):
    return jax.tree.map(lambda a: a[i], tree)


def summarise(values):
    values = np.asarray(values, np.float64)
    return {"mean": float(values.mean()), "se": float(values.std(ddof=1) / np.sqrt(values.size)),
            "n": int(values.size)}  # fmt: skip


def per_prior_target(model, prior, **kwargs):
    """The model compiled with one random prior (logits, means, scale_tril) and its data."""
    return pi.compile(model, logits=prior.logits, means=prior.means,
                      scale_tril=prior.scale_tril, **kwargs)  # fmt: skip
