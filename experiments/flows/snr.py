"""Rainforth et al. (2018), "Tighter Variational Bounds are Not Necessarily Better", their central
effect, measured on our objectives: the signal-to-noise ratio of the inference network's
gradient, SNR = |E ĝ| / sd(ĝ), as the number of particles K grows.

Target: a 5-D Gaussian N(μ, diag(σ²)); q: a diagonal Gaussian (the flow's affine layer alone,
plain reparameterised gradients), started off the posterior (location 0.5 sd away, scales 0.8σ).
For K = 1 … 1,024 and each objective (ELBO, IWAE, MIWAE with groups of 4, CIWAE with β = ½):
``--repeats`` independent gradient estimates at the same parameters; SNR per parameter, the mean
over parameters reported. Expected (their Theorem 1): IWAE's SNR falls like 1/√K, the ELBO's
grows like √K, MIWAE and CIWAE keep it from collapsing.

Second panel, the paper's amortized case (PIWAE needs a generative model): probabilistic PCA
(500 points in 5-D, 2 latent dimensions, W a point guide) fitted by ``pi.amortized_vi`` for 1,000
ELBO steps; at those parameters, the SNR of the global guide's (generative) gradient and of the
encoder's under IWAE and PIWAE for K = 4 … 256 on 100 data rows. Expected: under IWAE the
encoder's SNR falls with K; PIWAE, whose encoder follows MIWAE, keeps it, while the generative
gradient is IWAE's in both.

Writes ``experiments/flows/results/snr.json`` and ``experiments/flows/figures/snr.png``.

    python experiments/flows/snr.py [--repeats 2000]
"""

import argparse
from pathlib import Path

import jax
import jax.flatten_util
import jax.numpy as jnp
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import probinfer as pi  # noqa: E402
from probinfer import dist  # noqa: E402
from probinfer._utils import write_json  # noqa: E402
from probinfer.inference.amortized import aevb  # noqa: E402
from probinfer.inference.flows import make_flow  # noqa: E402
from probinfer.nn.objectives import make_loss  # noqa: E402

HERE = Path(__file__).parent
KS = (4, 16, 64, 256, 1024)
AMORTIZED_KS = (4, 16, 64, 256)
OBJECTIVES = ("elbo", "iwae", "miwae", "ciwae")


def ppca(x):
    w = pi.sample("w", dist.Normal(0.0, 10.0).expand([x.shape[1], 2]).to_event(2))
    with pi.plate("data", x.shape[0]):
        z = pi.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        pi.sample("x", dist.Normal(z @ w.T, 0.5).to_event(1), obs=x)


def amortized_snr(repeats):
    """``{objective: {"guide": [SNR per K], "encoder": [...]}}`` on PPCA (module docstring)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 2)) @ rng.normal(size=(5, 2)).T + 0.5 * rng.normal(size=(500, 5))
    target = pi.compile(ppca, x.astype(np.float32), data=("x",))
    fit = pi.amortized_vi(
        target, key=0, local=("z",), guide="point", num_steps=1000, progress=False
    )
    spec = aevb._Spec(target, ("z",))
    data = {k: jnp.asarray(v) for k, v in target.data.items()}
    index = jnp.arange(100)
    out = {}
    for objective in ("iwae", "piwae"):
        out[objective] = {"guide": [], "encoder": []}
        for k in AMORTIZED_KS:
            loss = aevb._loss(spec, fit.encoder, "point", data, objective, k)
            keys = jax.random.split(jax.random.PRNGKey(1), repeats)
            for part in ("guide", "encoder"):
                # Flatten each draw's gradient (one row per key), then SNR per parameter.
                flat = jax.jit(
                    jax.vmap(
                        lambda key, loss=loss, part=part: jax.flatten_util.ravel_pytree(
                            jax.grad(loss)(fit.params, key, index)[part]
                        )[0]
                    )
                )
                g = np.asarray(flat(keys), np.float64)
                live = g.std(0) > 0  # parameters the loss does not touch carry no SNR
                snr = np.abs(g.mean(0)[live]) / g.std(0)[live]
                out[objective][part].append(float(np.mean(snr)))
            print(objective, k, {p: v[-1] for p, v in out[objective].items()}, flush=True)
    return out


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
    amortized = amortized_snr(min(args.repeats, 1000))
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for objective in OBJECTIVES:
        ax.plot(KS, results[objective], marker="o", label=objective.upper())
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="K (particles per step)",
        ylabel="gradient SNR of q's parameters (mean)",
        title="plain VI (5-D Gaussian)",
    )
    ax.legend()
    for objective, style in (("iwae", "-"), ("piwae", "--")):
        for part, colour in (("encoder", "C0"), ("guide", "C3")):
            ax2.plot(
                AMORTIZED_KS,
                amortized[objective][part],
                style,
                color=colour,
                marker="o",
                label=f"{objective.upper()}: {'encoder' if part == 'encoder' else 'generative (W)'}",
            )
    ax2.set(
        xscale="log",
        yscale="log",
        xlabel="K (draws of each z_i)",
        ylabel="gradient SNR (mean over parameters)",
        title="amortized VI (PPCA)",
    )
    ax2.legend(fontsize=8)
    fig.tight_layout()
    (HERE / "figures").mkdir(exist_ok=True)
    fig.savefig(HERE / "figures" / "snr.png", dpi=120)
    write_json(
        HERE / "results" / "snr.json",
        {"K": list(KS), "snr": results, "amortized": {"K": list(AMORTIZED_KS), **amortized}},
    )


if __name__ == "__main__":
    main()
