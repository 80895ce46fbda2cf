"""A variational auto-encoder on scikit-learn's digits, written as a model in probinfer's language
and fitted by ``amortized_vi`` (AEVB, Kingma & Welling 2014).

The model: z_i ~ N(0, I₈) per image; a one-hidden-layer decoder (64 tanh units) whose weights
have N(0, 1) priors gives Bernoulli logits for the 64 binarised pixels (pixel > 8 of 16). The
encoder is amortized_vi's default Gaussian MLP; the decoder weights get a point guide (MAP).
1,500 images train, 297 are held out: the per-image ELBO under the encoder (decoder fixed; the
training ELBO also holds log p(weights) / N), the
amortization gap (per-image Gaussian q refined from the encoder's output), the KL per image
(posterior collapse check), and a figure of held-out images beside their reconstructions and
of images decoded from prior draws.

    python experiments/amortized/vae_digits.py [--steps 20000]

Writes ``experiments/amortized/results/vae_digits.json`` and ``vae_digits.png``.
"""

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.datasets import load_digits

import probinfer as pi
from probinfer import dist
from probinfer.inference.amortized.aevb import _row_elbo

HERE = Path(__file__).parent
LATENT, HIDDEN = 8, 64


def decoder(z, w1, b1, w2, b2):
    return jnp.tanh(z @ w1 + b1) @ w2 + b2


def vae(x):
    """x: (N, 64) binary pixels."""
    pixels = x.shape[1]
    w1 = pi.sample("w1", dist.Normal(0.0, 1.0).expand([LATENT, HIDDEN]).to_event(2))
    b1 = pi.sample("b1", dist.Normal(0.0, 1.0).expand([HIDDEN]).to_event(1))
    w2 = pi.sample("w2", dist.Normal(0.0, 1.0).expand([HIDDEN, pixels]).to_event(2))
    b2 = pi.sample("b2", dist.Normal(0.0, 1.0).expand([pixels]).to_event(1))
    with pi.plate("data", x.shape[0]):
        z = pi.sample("z", dist.Normal(0.0, 1.0).expand([LATENT]).to_event(1))
        pi.sample("x", dist.Bernoulli(logits=decoder(z, w1, b1, w2, b2)).to_event(1), obs=x)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000)
    args = parser.parse_args()
    images = (load_digits().data > 8).astype(np.float32)
    order = np.random.default_rng(0).permutation(images.shape[0])
    train, test = images[order[:1500]], images[order[1500:]]
    target = pi.compile(vae, train, data=("x",))
    start = time.perf_counter()
    fit = pi.amortized_vi(
        target,
        key=0,
        local=("z",),
        guide="point",
        num_steps=args.steps,
        batch_size=100,
        progress=True,
    )
    seconds = time.perf_counter() - start
    weights = {k: jnp.asarray(v[0, 0]) for k, v in fit.draws.items()}
    theta = fit.params["guide"]["loc"]

    def per_image(images, key):
        mean, log_sd = fit.encoder.gaussian(fit.params["encoder"], jnp.asarray(images))
        rows = _row_elbo(fit.spec, theta, {"x": jnp.asarray(images)}, mean, log_sd, key, 256)
        return np.asarray(rows), mean

    held_out, mean = per_image(test, jax.random.PRNGKey(3))
    seen, _ = per_image(train[:500], jax.random.PRNGKey(5))
    gap, refined = fit.amortization_gap(key=jax.random.PRNGKey(4), data=test[:100], num_steps=1000)
    results = {
        "train_images": int(train.shape[0]),
        "test_images": int(test.shape[0]),
        "num_steps": args.steps,
        "seconds": seconds,
        "elbo_final_per_image_with_weight_prior": fit.diagnostics["elbo_final"] / train.shape[0],
        "train_elbo_per_image": float(seen.mean()),
        "test_elbo_per_image": float(held_out.mean()),
        "amortization_gap_per_image": float(np.mean(gap)),
        "amortization_gap_se": float(np.std(gap) / np.sqrt(gap.size)),
        "kl_per_image": fit.diagnostics["kl_per_datum"],
        "device": str(jax.devices()[0]),
    }
    print(json.dumps(results, indent=2))
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "vae_digits.json").write_text(json.dumps(results, indent=2) + "\n")
    figure(test[:10], np.asarray(mean[:10]), weights)


def figure(images, codes, weights):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def probabilities(z):
        logits = decoder(jnp.asarray(z), weights["w1"], weights["b1"], weights["w2"], weights["b2"])
        return np.asarray(jax.nn.sigmoid(logits))

    prior = np.random.default_rng(1).normal(size=(10, LATENT))
    rows = [
        ("held-out image", images),
        ("reconstruction (encoder mean)", probabilities(codes)),
        ("decoded prior draw", probabilities(prior)),
    ]
    fig, axes = plt.subplots(3, 10, figsize=(10, 3.4))
    for r, (label, pictures) in enumerate(rows):
        for c in range(10):
            axes[r, c].imshow(pictures[c].reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
    fig.suptitle("VAE on scikit-learn digits, fitted by pi.amortized_vi", fontsize=10)
    fig.tight_layout()
    fig.savefig(HERE / "results" / "vae_digits.png", dpi=120)


if __name__ == "__main__":
    main()
