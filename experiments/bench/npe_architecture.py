"""Why NPE loses Gaussian linear at 10³ simulations to sbi: NPE variants scored by held-out
−log q(θ | x) on 20,000 fresh prior-predictive pairs.

C2ST at a few observations cannot tell architectures apart (its spread is ~0.03); the held-out
negative log density can: E[−log q(θ | x)] = E[−log p(θ | x)] + E[KL(p(·|x) ‖ q(·|x))], so
differences between estimators are differences of their expected KL (standard error ~0.02 nats
at 20,000 pairs), and on Gaussian linear, whose posterior is N(x/2, 0.05 I), the KL itself is
printed. Variants: the flow (``"nsf"``, ``"maf"``), the embedding (our MLP, or none: the flow
conditions on standardised x as sbi's does) and the conditioners' activation (GELU, ours; tanh,
sbi's MAF: swapped in this process by patching ``flax.linen.gelu``, which our flows and
embedding call). With ``--sbi`` (``pip install -e '.[sbi-bench]'``), sbi's NPE with its defaults
on the same simulations.

    taskset -c 1 python experiments/bench/npe_architecture.py [--tasks gaussian_linear]
        [--budgets 1000,10000] [--variants defaults,tanh] [--sbi]

Writes ``experiments/bench/results/npe_architecture.json`` after every cell (atomically; cells
of several runs share the file), rendered by ``tables.py``.
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import probinfer as pi
from probinfer.inference.amortized.npe import _program, simulate_training_set
from probinfer.models import sbi as tasks
from probinfer.nn import flow_layers
from probinfer.nn.layout import ObservationLayout

HERE = Path(__file__).parent
OUT = HERE / "results" / "npe_architecture.json"
TASKS = {  # model, x shape
    "gaussian_linear": (tasks.gaussian_linear, (10,)),
    "two_moons": (tasks.two_moons, (2,)),
    "slcp": (tasks.slcp, (4, 2)),
}
NUM_HELD_OUT = 20_000
GELU = nn.gelu
VARIANTS = {  # name: (npe settings, activation)
    "defaults": ({}, "gelu"),
    "maf": ({"flow": "maf"}, "gelu"),
    "no-embedding": ({"embedding": "none"}, "gelu"),
    "maf+no-embedding": ({"flow": "maf", "embedding": "none"}, "gelu"),
    "tanh": ({}, "tanh"),
    "maf+no-embedding+tanh": ({"flow": "maf", "embedding": "none"}, "tanh"),
}


class Identity(nn.Module):
    """No embedding: the flow conditions on the standardised flat x itself."""

    @nn.compact
    def __call__(self, x):
        return x


def held_out(target, shape):
    """20,000 fresh pairs (θ constrained, x) drawn with a key no estimator trains on."""
    layout = ObservationLayout.from_target(target, "flat")
    z, x, _ = simulate_training_set(target, layout, jax.random.PRNGKey(999), NUM_HELD_OUT, 10_000)
    theta = jax.vmap(target.constrain)(jnp.asarray(z))["theta"]
    return theta, jnp.asarray(x).reshape((NUM_HELD_OUT, *shape))


def score(log_q, name, theta, x):
    """Mean held-out −log q, its standard error, and (Gaussian linear) the expected KL."""
    nll = -np.asarray(log_q, np.float64)
    out = {"nll": float(nll.mean()), "nll_se": float(nll.std() / np.sqrt(nll.size))}
    if name == "gaussian_linear":
        theta, x = np.asarray(theta, np.float64), np.asarray(x, np.float64)
        log_p = -0.5 * np.sum((theta - x / 2) ** 2, 1) / 0.05 - 5 * np.log(2 * np.pi * 0.05)
        out["kl"] = float(np.mean(log_p) + nll.mean())
    return out


def ours(target, budget, settings, activation, theta, x):
    settings = {"flow": "nsf", **settings}  # one flow per variant (flow="auto" would add a MAF)
    if settings.get("embedding") == "none":
        settings["embedding"] = Identity()
    nn.gelu = jnp.tanh if activation == "tanh" else GELU  # the embeddings' GELU
    flow_layers.ACTIVATIONS["gelu"] = nn.gelu  # the conditioners' (read by name since 2026-12-08)
    _program.cache_clear()
    try:
        start = time.perf_counter()
        est = pi.npe(target, key=0, num_simulations=budget, progress=False, **settings)
        seconds = time.perf_counter() - start
        log_q = est.log_prob({"theta": theta}, {"x": x})
    finally:
        nn.gelu = flow_layers.ACTIVATIONS["gelu"] = GELU
    return log_q, seconds


def sbi_npe(target, budget, name, theta_held, x_held):
    """sbi's NPE, defaults, on the simulations ``pi.npe(key=0)`` trains on."""
    # sbi.py beside this file would shadow the sbi package: drop this folder from the path
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    import torch
    from sbi.inference import NPE
    from sbi.utils import BoxUniform

    torch.set_num_threads(1)
    key_sim = jax.random.split(jax.random.PRNGKey(0), 4)[0]
    layout = ObservationLayout.from_target(target, "flat")
    z, x, _ = simulate_training_set(target, layout, key_sim, budget, 10_000)
    theta = np.asarray(jax.vmap(target.constrain)(jnp.asarray(z))["theta"])
    dim = theta.shape[1]
    if name == "gaussian_linear":
        prior = torch.distributions.Independent(
            torch.distributions.Normal(torch.zeros(dim), np.sqrt(0.1) * torch.ones(dim)), 1
        )
    else:
        bound = 1.0 if name == "two_moons" else 3.0
        prior = BoxUniform(-bound * torch.ones(dim), bound * torch.ones(dim))
    inference = NPE(prior=prior, show_progress_bars=False)
    start = time.perf_counter()
    inference.append_simulations(
        torch.as_tensor(theta), torch.as_tensor(np.reshape(x, (budget, -1)))
    )
    estimator = inference.train()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        log_q = estimator.log_prob(
            torch.as_tensor(np.asarray(theta_held)),
            condition=torch.as_tensor(np.asarray(x_held).reshape(NUM_HELD_OUT, -1)),
        )
    return log_q.numpy(), seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="gaussian_linear,two_moons,slcp")
    parser.add_argument("--budgets", default="1000,10000")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--sbi", action="store_true")
    args = parser.parse_args()
    for name in args.tasks.split(","):
        model, shape = TASKS[name]
        target = pi.compile(model, x=jnp.zeros(shape))
        theta, x = held_out(target, shape)
        for budget in map(int, args.budgets.split(",")):
            runs = {v: VARIANTS[v] for v in args.variants.split(",")}
            if args.sbi:
                runs["sbi"] = None
            for variant, spec in runs.items():
                if spec is None:
                    log_q, seconds = sbi_npe(target, budget, name, theta, x)
                else:
                    log_q, seconds = ours(target, budget, *spec, theta, x)
                cell = {"task": name, "budget": budget, "variant": variant, "seconds": seconds}
                cell |= score(log_q, name, theta, x)
                print(json.dumps(cell), flush=True)
                # merged into the file as it is now (another process may write cells too)
                results = json.loads(OUT.read_text()) if OUT.exists() else {}
                results[f"{name}/{budget}/{variant}"] = cell
                results["date"] = time.strftime("%Y-%m-%d")
                results["machine"], results["device"] = platform.machine(), str(jax.devices()[0])
                tmp = OUT.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(json.dumps(results, indent=2) + "\n")
                os.replace(tmp, OUT)


if __name__ == "__main__":
    main()
