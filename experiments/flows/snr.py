"""Rainforth et al. (2018), "Tighter Variational Bounds are Not Necessarily Better", their central
effect, measured on our objectives: the signal-to-noise ratio of the inference network's
gradient, SNR = |E ĝ| / sd(ĝ), as the number of particles K grows.

Target: a 5-D Gaussian N(μ, diag(σ²)); q: a diagonal Gaussian (the flow's affine layer alone,
plain reparameterised gradients), started off the posterior (location 0.5 sd away, scales 0.8σ).
For K = 1 … 1,024 and each objective (ELBO, IWAE, MIWAE with groups of 4, CIWAE with β = ½):
``--repeats`` independent gradient estimates at the same parameters; SNR per parameter, the mean
over parameters reported. Expected (their Theorem 1): IWAE's SNR falls like 1/√K, the ELBO's
grows like √K, MIWAE and CIWAE keep it from collapsing.

Writes ``experiments/flows/results/snr.json`` and ``experiments/flows/figures/snr.png``.

    python experiments/flows/snr.py [--repeats 2000]
"""

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from probinfer._utils import write_json  # noqa: E402
from probinfer.inference.flows import make_flow  # noqa: E402
from probinfer.inference.flows.objectives import make_loss  # noqa: E402

HERE = Path(__file__).parent
KS = (4, 16, 64, 256, 1024)
OBJECTIVES = ("elbo", "iwae", "miwae", "ciwae")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2000)
    args = parser.parse_args()
    dim = 5
    mu = jnp.linspace(-1.0, 1.0, dim)
    sigma = jnp.linspace(0.5, 2.0, dim)

    def log_density(x, batch):
        return jnp.sum(-0.5 * ((x - mu) / sigma) ** 2 - jnp.log(sigma))

    flow = make_flow("iaf", dim, num_layers=0)
    params = flow.init(jax.random.PRNGKey(0), loc=mu + 0.5 * sigma, scale=0.8 * sigma)
    results = {}
    for objective in OBJECTIVES:
        results[objective] = []
        for k in KS:
            loss = make_loss(objective, log_density, flow, num_particles=k, num_steps=1)
            grad = jax.jit(
                jax.vmap(
                    lambda key, loss=loss: jax.flatten_util.ravel_pytree(
                        jax.grad(lambda p: loss(p, key, 0, None)[0])(params)
                    )[0]
                )
            )
            keys = jax.random.split(jax.random.PRNGKey(1), args.repeats)
            g = np.asarray(grad(keys), np.float64)
            snr = np.abs(g.mean(0)) / g.std(0)
            results[objective].append(float(snr.mean()))
            print(objective, k, results[objective][-1], flush=True)
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for objective in OBJECTIVES:
        ax.plot(KS, results[objective], marker="o", label=objective.upper())
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="K (particles per step)",
        ylabel="gradient SNR of q's parameters (mean)",
    )
    ax.legend()
    fig.tight_layout()
    (HERE / "figures").mkdir(exist_ok=True)
    fig.savefig(HERE / "figures" / "snr.png", dpi=120)
    write_json(HERE / "results" / "snr.json", {"K": list(KS), "snr": results})


if __name__ == "__main__":
    main()
