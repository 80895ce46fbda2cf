"""NUTS: ``pi.mcmc`` (its default kernel) vs NumPyro's ``MCMC(NUTS)`` on the same model, same process.

Both run NumPyro's NUTS (we drive its functional API on ``-target.log_density``); what differs is
the harness: our chains are one jitted, vmapped scan over the compiled Target; NumPyro's run with
``chain_method="vectorized"``. 4 chains × 1,000 warm-up × 1,000 draws on the non-centred eight
schools and the breast-cancer logistic regression (31 dims). Reported: warm wall time (best of
``--repeats``, compilation excluded by a first run), the smallest bulk ESS over all coordinates,
and ESS per second; ratio = ours / NumPyro's (goal ≥ 1.0).

    python experiments/bench/nuts.py [--repeats 2]
"""

import argparse
import platform
import time
from pathlib import Path

import jax
import numpy as np

import probinfer as pi
from probinfer._utils import import_arviz, write_json
from probinfer.models import get

MODELS = ("eight_schools", "logistic_regression")
RUN = {"num_chains": 4, "num_warmup": 1000, "num_draws": 1000}


def min_ess(draws):
    """Smallest bulk ESS over every coordinate of ``{site: (chains, draws, ...)}``."""
    az = import_arviz()
    values = []
    for x in draws.values():
        x = np.asarray(x)
        x = x.reshape(x.shape[0], x.shape[1], -1)
        values += [float(az.ess(x[..., i])) for i in range(x.shape[-1])]
    return min(values)


def ours(example, seed):
    # example.target: compiled once in main, so the timed runs reuse the compiled program.
    post = pi.mcmc(example.target, key=seed, progress=False, **RUN)
    return post.draws


_NUMPYRO = {}


def numpyro_run(example, seed):
    from numpyro.infer import MCMC, NUTS

    # One MCMC object per model: NumPyro keeps its compiled sampler on the object, so the timed
    # runs (a new key each) reuse it, as ours reuse the compiled Target's program.
    if example.name not in _NUMPYRO:
        _NUMPYRO[example.name] = MCMC(
            NUTS(example.model),
            num_warmup=RUN["num_warmup"],
            num_samples=RUN["num_draws"],
            num_chains=RUN["num_chains"],
            chain_method="vectorized",
            progress_bar=False,
            jit_model_args=True,
        )
    mcmc = _NUMPYRO[example.name]
    mcmc.run(jax.random.PRNGKey(seed), *example.args, **example.kwargs)
    return mcmc.get_samples(group_by_chain=True)


def timed(fn, example, repeats):
    fn(example, 0)  # compile
    best, draws = np.inf, None
    for seed in range(1, repeats + 1):
        start = time.perf_counter()
        out = fn(example, seed)
        jax.block_until_ready(out)
        elapsed = time.perf_counter() - start
        if elapsed < best:
            best, draws = elapsed, out
    return best, draws


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "nuts.json"))
    args = parser.parse_args()
    results = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": platform.processor() or platform.machine(),
        "devices": str(jax.devices()),
    }
    for name in MODELS:
        example = get(name)
        target = example.compile()
        object.__setattr__(example, "target", target)  # Example is frozen
        row = {}
        for label, fn in [("probinfer", ours), ("numpyro", numpyro_run)]:
            seconds, draws = timed(fn, example, args.repeats)
            latent = {k: v for k, v in draws.items() if k in target.latent_sites}
            ess = min_ess(latent)
            row[label] = {"seconds": seconds, "min_ess_bulk": ess, "ess_per_second": ess / seconds}
        row["ratio_ess_per_second"] = (
            row["probinfer"]["ess_per_second"] / row["numpyro"]["ess_per_second"]
        )
        results[name] = row
        print(name, row, flush=True)
    write_json(args.out, results)


if __name__ == "__main__":
    main()
