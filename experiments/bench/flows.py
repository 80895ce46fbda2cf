"""Flow VI: probinfer's ``flow_vi`` vs NumPyro's SVI with ``AutoIAFNormal`` and ``AutoBNAFNormal``,
same targets, same steps, same ELBO particles, same process (issue 13's goal).

Targets: the centred eight schools (a funnel; reference: NumPyro NUTS on the non-centred model,
4 × 5,000 draws, from ``experiments/coin/results/accuracy.json``), the breast-cancer logistic
regression (31 dims; the same file's NUTS reference) and Rezende & Mohamed's U1–U4 on the box
[−4, 4]² (reference: moments on a 1,000 × 1,000 grid). Each method: ``--steps`` steps (5,000), ``--particles`` ELBO draws per step (32, our default) for all,
``--seeds`` seeds; NumPyro's guides at their default sizes with Adam at each of
``--numpyro-lrs`` (1e-3 and 1e-2; the better one is the comparison, the most favourable reading
for the peer); ours with its defaults. Error: worst |mean − ref| / ref sd and worst |sd / ref sd − 1| over every latent
coordinate, from 4,000 draws of the fitted guide. Speed: warm steps per second (our runner
called twice, the second timed; NumPyro's ``svi.update`` in one jitted ``lax.scan``, compiled
then timed). Equal time: each peer setting is run again for as many steps as it makes in the
seconds our default run took (``*_equal_time`` rows; the question a user with a time budget
asks).

Writes ``experiments/bench/results/flows.json``.

    pip install -e '.[bench]' && python experiments/bench/flows.py [--steps 5000] [--seeds 4]
"""

import argparse
import json
import platform
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import probinfer as pi
from probinfer._utils import write_json
from probinfer.models import eight_schools, energies, logistic_regression

HERE = Path(__file__).parent
ACCURACY = HERE.parent / "coin" / "results" / "accuracy.json"


def grid_reference(energy, half_width=4.0, size=1000):
    a = np.linspace(-half_width, half_width, size)
    points = np.stack(np.meshgrid(a, a, indexing="ij"), -1).reshape(-1, 2)
    log_p = -np.asarray(energy(jnp.asarray(points, jnp.float32)), np.float64)
    w = np.exp(log_p - log_p.max())
    w /= w.sum()
    mean = w @ points
    sd = np.sqrt(w @ (points - mean) ** 2)
    return {"mean": {"z": mean.tolist()}, "sd": {"z": sd.tolist()}}


def problems():
    saved = json.loads(ACCURACY.read_text())["models"]
    x, y = logistic_regression.load_breast_cancer()
    out = {
        "eight_schools_centered": (
            eight_schools.centered,
            (eight_schools.SIGMA,),
            {"y": eight_schools.Y},
            saved["eight_schools_centered"]["reference"],
        ),
        "breast_cancer_lr": (
            logistic_regression.logistic_regression,
            (x,),
            {"y": y},
            saved["breast_cancer_lr"]["reference"],
        ),
    }
    for name, energy in [
        ("U1", energies.u1),
        ("U2", energies.u2),
        ("U3", energies.u3),
        ("U4", energies.u4),
    ]:
        # Uniform on [−4, 4]²: U2–U4 do not confine z₁, so unboxed they are improper.
        out[name] = (energies.energy_model(energy, bound=4.0), (), {}, grid_reference(energy))
    return out


def errors(draws, reference):
    worst_mean, worst_sd = 0.0, 0.0
    for site, ref_mean in reference["mean"].items():
        x = np.asarray(draws[site]).reshape(len(draws[site]), -1)
        ref_mean, ref_sd = np.asarray(ref_mean), np.asarray(reference["sd"][site])
        worst_mean = max(worst_mean, float(np.max(np.abs(x.mean(0) - ref_mean) / ref_sd)))
        worst_sd = max(worst_sd, float(np.max(np.abs(x.std(0) / ref_sd - 1))))
    return worst_mean, worst_sd


def ours(model, args, kwargs, steps, seed, particles, flow="nsf"):
    target = pi.compile(model, *args, **kwargs)
    run = lambda: pi.flow_vi(  # noqa: E731
        target,
        key=seed,
        flow=flow,
        num_steps=steps,
        num_particles=particles,
        num_draws=4000,
        progress=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a Pareto k̂ warning is reported below
        run()
        start = time.perf_counter()
        post = run()
    seconds = time.perf_counter() - start
    draws = {k: v[0] for k, v in post.draws.items()}
    return draws, steps / seconds, post.diagnostics["pareto_k"]


def numpyro_guide(kind, model, args, kwargs, steps, seed, learning_rate, particles, timed=True):
    from numpyro.infer import SVI, Trace_ELBO
    from numpyro.infer.autoguide import AutoBNAFNormal, AutoIAFNormal
    from numpyro.optim import Adam

    guide = (AutoIAFNormal if kind == "iaf" else AutoBNAFNormal)(model)
    svi = SVI(model, guide, Adam(learning_rate), Trace_ELBO(num_particles=particles))
    state = svi.init(jax.random.PRNGKey(seed), *args, **kwargs)

    @jax.jit
    def train(state):
        def body(state, _):
            state, loss = svi.update(state, *args, **kwargs)
            return state, loss

        return jax.lax.scan(body, state, None, length=steps)

    if timed:  # compile and run once, then time a second run
        jax.block_until_ready(train(state))
    start = time.perf_counter()
    state, losses = jax.block_until_ready(train(state))
    seconds = time.perf_counter() - start
    params = svi.get_params(state)
    draws = guide.sample_posterior(jax.random.PRNGKey(seed + 1), params, sample_shape=(4000,))
    return draws, steps / seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument(
        "--particles", type=int, default=32, help="ELBO draws per step, ours and the peers'"
    )
    parser.add_argument("--only", nargs="*", help="target names to run")
    parser.add_argument(
        "--numpyro-lrs",
        nargs="*",
        type=float,
        default=[1e-3, 1e-2],
        help="Adam learning rates for NumPyro's guides; each reported, the best is the comparison",
    )
    parser.add_argument(
        "--max-steps", type=int, default=200_000, help="cap on a peer's equal-time steps"
    )
    parser.add_argument("--out", default=str(HERE / "results" / "flows.json"))
    args = parser.parse_args()
    rows = {}
    if args.only and Path(args.out).exists():  # keep the other targets' rows
        rows = json.loads(Path(args.out).read_text())["rows"]
    for name, (model, a, kw, reference) in problems().items():
        if args.only and name not in args.only:
            continue
        rows[name] = {}
        peers = [(kind, lr) for kind in ("iaf", "bnaf") for lr in args.numpyro_lrs]
        methods = ["probinfer_nsf"] + [f"numpyro_{kind}_lr_{lr}" for kind, lr in peers]
        # Equal time: each peer gets as many steps as it runs in the seconds our default took.
        methods += [f"numpyro_{kind}_lr_{lr}_equal_time" for kind, lr in peers]
        for method in methods:
            runs = []
            for seed in range(args.seeds):
                steps = args.steps
                if method == "probinfer_nsf":
                    draws, rate, k_hat = ours(model, a, kw, steps, seed, args.particles)
                else:
                    kind, lr = method.split("_")[1], float(method.split("_")[3])
                    equal_time = method.endswith("_equal_time")
                    if equal_time:
                        ours_seconds = args.steps / rows[name]["probinfer_nsf"]["steps_per_s"]
                        peer_rate = rows[name][method.removesuffix("_equal_time")]["steps_per_s"]
                        steps = int(min(args.max_steps, round(ours_seconds * peer_rate)))
                    draws, rate = numpyro_guide(
                        kind, model, a, kw, steps, seed, lr, args.particles, timed=not equal_time
                    )
                    k_hat = float("nan")
                draws = {k: v for k, v in draws.items() if k in reference["mean"]}
                runs.append((*errors(draws, reference), rate, k_hat, steps))
            runs = np.asarray(runs)
            rows[name][method] = {
                "worst_mean_error_in_sd": float(runs[:, 0].mean()),
                "worst_sd_relative_error": float(runs[:, 1].mean()),
                "steps_per_s": float(runs[:, 2].mean()),
                "pareto_k": float(runs[:, 3].mean()),
                "steps": int(runs[0, 4]),
            }
            print(name, method, rows[name][method], flush=True)
        write_json(
            args.out,
            {
                "date": time.strftime("%Y-%m-%d"),
                "steps": args.steps,
                "seeds": args.seeds,
                "particles": args.particles,
                "rows": rows,
                "backend": jax.default_backend(),
                "machine": platform.processor() or platform.machine(),
            },
        )
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
