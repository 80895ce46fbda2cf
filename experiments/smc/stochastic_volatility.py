"""Bootstrap particle filter and PMMH on a stochastic-volatility model.

No daily return series ships with the project's dependencies, so the series is simulated from the
model (μ = −1, φ = 0.95, σ = 0.25, 500 days) — the truth is then known. The figure shows the data,
the true log-volatility and the filtering mean ± 2 sd; PMMH then estimates φ from the data with
the other parameters fixed (uniform prior on (−1, 1)). Writes
``experiments/smc/figures/stochastic_volatility.png`` and ``results/stochastic_volatility.json``.

    python experiments/smc/stochastic_volatility.py
"""

import argparse
from pathlib import Path

import arviz as az
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from probinfer._utils import write_json  # noqa: E402
from probinfer.inference.smc import particle_filter, pmmh  # noqa: E402
from probinfer.models.state_space import StochasticVolatility  # noqa: E402
from probinfer.report import save_figure  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=500)
    parser.add_argument("--particles", type=int, default=2000)
    parser.add_argument("--out", default=str(Path(__file__).parent))
    args = parser.parse_args()
    model = StochasticVolatility()
    states, y = model.simulate(0, args.days)
    result = particle_filter(model.feynman_kac(), y, key=0, num_particles=args.particles)
    mean = np.asarray(result.filtering_mean)[:, 0]
    sd = np.sqrt(np.asarray(result.filtering_var)[:, 0])
    coverage = float(np.mean(np.abs(states[:, 0] - mean) < 2 * sd))

    def log_prior(theta):
        return jnp.sum(jnp.log1p(-(jnp.tanh(theta) ** 2)) - jnp.log(2.0))

    post = pmmh(
        lambda theta: StochasticVolatility(phi=jnp.tanh(theta[0])).feynman_kac(),
        log_prior,
        y,
        key=1,
        init=jnp.array([1.5]),
        num_draws=1500,
        num_warmup=500,
        num_particles=200,
    )
    phi = np.tanh(post.draws["theta"][..., 0])
    results = {
        "log_likelihood": float(result.log_likelihood),
        "two_sd_coverage_of_true_states": coverage,
        "pmmh_phi_mean": float(phi.mean()),
        "pmmh_phi_sd": float(phi.std()),
        "pmmh_phi_ess": float(az.ess(phi)),
        "pmmh_acceptance": post.diagnostics["acceptance_rate"].tolist(),
        "true_phi": model.phi,
    }
    print(results)
    fig, axes = plt.subplots(2, 1, figsize=(9, 5), sharex=True)
    axes[0].plot(y[:, 0], linewidth=0.6, color="0.3")
    axes[0].set_ylabel("return")
    t = np.arange(args.days)
    axes[1].fill_between(t, mean - 2 * sd, mean + 2 * sd, alpha=0.3, label="filter ± 2 sd")
    axes[1].plot(t, mean, label="filtering mean")
    axes[1].plot(t, states[:, 0], color="k", linewidth=0.7, label="true log-volatility")
    axes[1].set(xlabel="day", ylabel="log-volatility")
    axes[1].legend(fontsize=8, loc="upper right")
    out = Path(args.out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    save_figure(
        axes,
        f"Stochastic volatility: bootstrap filter, {args.particles} particles "
        f"(2-sd coverage of the truth {coverage:.0%}); PMMH φ = {phi.mean():.3f} ± {phi.std():.3f}",
        out / "figures" / "stochastic_volatility.png",
    )
    write_json(out / "results" / "stochastic_volatility.json", results)


if __name__ == "__main__":
    main()
