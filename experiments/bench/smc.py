"""Adaptive tempered SMC: probinfer vs BlackJAX's ``adaptive_tempered_smc``, same process.

Target: Bayesian logistic regression, 25 weights with N(0, 1) priors, 1,000 simulated points.
Both use N particles, 10 HMC steps of 10 leapfrog steps per temperature, systematic resampling and
target ESS 0.5. BlackJAX's HMC has a fixed step size and mass (it has no in-SMC tuning; we hand it
our run's final step size and diagonal mass matrix), ours adapts both from the particles, so the ladders differ a little: we report wall time, temperatures,
time per temperature and log Z for each. The floor is the same number of batched gradient
evaluations as our run made, timed alone in one jitted loop. A second table gives |log Z − exact|
against wall time on the conjugate linear regression.

Equal accuracy (issue 11 §2): on the conjugate linear regression (exact log Z), our defaults
(adaptive move lengths) and BlackJAX (10 HMC steps of 10 leapfrog steps per temperature, handed
our run's step size and mass at each N) at N = 125 … 4,000 particles, ``--seeds`` seeds each:
root-mean-square log Z error and mean wall time per run. The time each needs to reach the same
error — the smallest RMSE both reach, times interpolated on the log–log curve — and their ratio;
and, less noisy, the ratio of MSE × seconds at equal N (the ratio of times at equal accuracy when
the variance falls as 1/N), pooled over N ≥ 500 with a bootstrap spread.

    pip install -e '.[bench]' && python experiments/bench/smc.py [--particles 1000]
"""

import argparse
import json
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import probinfer as pi
from probinfer import dist
from probinfer._utils import write_json
from probinfer.models import conjugate

NUM_MCMC_STEPS, NUM_LEAPFROG = 10, 10


def logistic_model(x, y=None):
    w = pi.sample("w", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    with pi.plate("data", x.shape[0]):
        pi.sample("y", dist.Bernoulli(logits=x @ w), obs=y)


def _timed(fn, repeats):
    jax.block_until_ready(fn())  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return min(times), out


def blackjax_run(target, num_particles, step_size, inverse_mass):
    import blackjax

    smc = blackjax.adaptive_tempered_smc(
        target.log_prior,
        target.log_likelihood,
        blackjax.hmc.build_kernel(),
        blackjax.hmc.init,
        {
            # Leading axis 1: shared by all particles (BlackJAX's convention).
            "step_size": jnp.array([step_size]),
            "inverse_mass_matrix": jnp.asarray(inverse_mass)[None],
            "num_integration_steps": jnp.array([NUM_LEAPFROG]),
        },
        blackjax.smc.resampling.systematic,
        0.5,
        num_mcmc_steps=NUM_MCMC_STEPS,
    )

    @jax.jit
    def run(key):
        key_init, key = jax.random.split(key)
        positions = jax.vmap(target.draw_z)(jax.random.split(key_init, num_particles))
        state = smc.init(positions)

        def cond(carry):
            return carry[1].tempering_param < 1.0

        def body(carry):
            key, state, log_z, steps = carry
            key, sub = jax.random.split(key)
            state, info = smc.step(sub, state)
            return key, state, log_z + info.log_likelihood_increment, steps + 1

        _, state, log_z, steps = jax.lax.while_loop(cond, body, (key, state, 0.0, 0))
        return log_z, steps

    return run


def equal_accuracy(target, exact, seeds, particle_counts=(125, 250, 500, 1000, 2000, 4000)):
    """RMSE of log Z and mean seconds per run for both samplers at each N; the time each takes
    to reach the smallest RMSE both reach (log–log interpolation); and the pooled ratio of
    MSE × seconds (see :func:`_work_ratio`)."""
    curves = {"probinfer": [], "blackjax": []}
    errors_by = {"probinfer": [], "blackjax": []}
    for n in particle_counts:
        warm = pi.smc(target, key=0, num_particles=n, progress=False)  # compiles
        bj = blackjax_run(
            target,
            n,
            float(warm.diagnostics["step_size"][0]),
            warm.diagnostics["inverse_mass_matrix"][0],
        )
        jax.block_until_ready(bj(jax.random.PRNGKey(0)))
        for name, run in (
            (
                "probinfer",
                lambda s, n=n: pi.smc(target, key=s, num_particles=n, progress=False).log_evidence,
            ),
            ("blackjax", lambda s, bj=bj: float(bj(jax.random.PRNGKey(s))[0])),
        ):
            errors, seconds = [], []
            for seed in range(1, seeds + 1):
                start = time.perf_counter()
                errors.append(run(seed) - exact)
                seconds.append(time.perf_counter() - start)
            errors_by[name].append(np.asarray(errors))
            curves[name].append(
                {
                    "particles": n,
                    "rmse": float(np.sqrt(np.mean(np.square(errors)))),
                    "mean_error": float(np.mean(errors)),
                    "seconds": float(np.mean(seconds)),
                }
            )
            print(name, curves[name][-1], flush=True)
    goal = max(min(row["rmse"] for row in rows) for rows in curves.values())
    times = {name: _time_to_reach(rows, goal) for name, rows in curves.items()}
    return {
        "curves": curves,
        "common_rmse": goal,
        "seconds_to_reach": times,
        "ratio_probinfer_over_blackjax": times["probinfer"] / times["blackjax"],
        **_work_ratio(curves, errors_by, particle_counts),
    }


def _work_ratio(curves, errors_by, particle_counts, smallest=500, replicates=2000):
    """Time to reach a log Z error ε is MSE(N) · seconds(N) / ε² when the variance falls as 1/N
    and the time grows as N, so the ratio of MSE × seconds at the same N is the ratio of times
    at equal accuracy, read at every N instead of where two noisy RMSE curves cross. Pooled as
    the geometric mean over N ≥ ``smallest`` (below it fixed costs dominate the time), with a
    bootstrap over seeds for its spread."""
    rng = np.random.default_rng(0)
    keep = [i for i, n in enumerate(particle_counts) if n >= smallest]

    def pooled(draw):
        logs = []
        for i in keep:
            work = {}
            for name in curves:
                errors = errors_by[name][i]
                if draw:
                    errors = errors[rng.integers(0, errors.size, errors.size)]
                work[name] = np.mean(errors**2) * curves[name][i]["seconds"]
            logs.append(np.log(work["probinfer"] / work["blackjax"]))
        return float(np.exp(np.mean(logs)))

    boot = np.log([pooled(True) for _ in range(replicates)])
    return {
        "work_ratio_probinfer_over_blackjax": pooled(False),
        "work_ratio_log_sd": float(np.std(boot)),
        "work_ratio_particles": [particle_counts[i] for i in keep],
    }


def _time_to_reach(rows, goal):
    """Seconds at which the RMSE curve first falls to ``goal`` (log–log interpolation between the
    particle counts that bracket it)."""
    for before, after in zip(rows, rows[1:], strict=False):
        if before["rmse"] <= goal:
            return before["seconds"]
        if after["rmse"] <= goal:
            slope = np.log(after["seconds"] / before["seconds"]) / np.log(
                after["rmse"] / before["rmse"]
            )
            return float(before["seconds"] * (goal / before["rmse"]) ** slope)
    return rows[-1]["seconds"]


def floor_run(target, num_particles, num_gradients):
    grad = jax.vmap(jax.grad(target.log_density))

    @jax.jit
    def run(z):
        return jax.lax.fori_loop(0, num_gradients, lambda _, z: z + 1e-6 * grad(z), z)

    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--particles", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "smc.json"))
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 25)).astype(np.float32)
    w = rng.normal(size=25) * 0.5
    y = (rng.uniform(size=1000) < 1 / (1 + np.exp(-x @ w))).astype(np.float32)
    target = pi.compile(logistic_model, x, y=y, data=("x", "y"))
    n = args.particles

    ours_s, post = _timed(
        lambda: pi.smc(
            target,
            key=1,
            num_particles=n,
            num_mcmc_steps=NUM_MCMC_STEPS,
            kernel=pi.kernels.hmc(num_integration_steps=NUM_LEAPFROG),
        ),
        args.repeats,
    )
    ours_steps = post.diagnostics["num_steps"]
    step_size = float(post.diagnostics["step_size"][0])
    # BlackJAX has no in-SMC tuning: give it our final step size and diagonal mass matrix.
    bj = blackjax_run(target, n, step_size, post.diagnostics["inverse_mass_matrix"][0])
    bj_s, (bj_log_z, bj_steps) = _timed(lambda: bj(jax.random.PRNGKey(1)), args.repeats)
    bj_steps = int(bj_steps)
    # Gradient evaluations of our run: per temperature, N × steps × (L leapfrog + 1 at init).
    num_gradients = ours_steps * NUM_MCMC_STEPS * (NUM_LEAPFROG + 1)
    floor = floor_run(target, n, num_gradients)
    z0 = target.init(0, n)
    floor_s, _ = _timed(lambda: floor(z0), args.repeats)
    results = {
        "date": time.strftime("%Y-%m-%d"),
        "backend": jax.default_backend(),
        "device": str(jax.devices()[0]),
        "machine": platform.processor() or platform.machine(),
        "particles": n,
        "probinfer": {
            "seconds": ours_s,
            "temperatures": ours_steps,
            "log_z": post.log_evidence,
            "seconds_per_temperature": ours_s / ours_steps,
        },
        "blackjax": {
            "seconds": bj_s,
            "temperatures": bj_steps,
            "log_z": float(bj_log_z),
            "seconds_per_temperature": bj_s / bj_steps,
            "step_size": step_size,
        },
        "floor_seconds": floor_s,
        "ratio_wall_probinfer_over_blackjax": ours_s / bj_s,
        "ratio_per_temperature_probinfer_over_blackjax": (ours_s / ours_steps) / (bj_s / bj_steps),
        "ratio_probinfer_over_floor": ours_s / floor_s,
    }
    example = conjugate.linear_regression_example()
    linreg = example.compile()
    rows = []
    for particles in (125, 250, 500, 1000, 2000):
        seconds, p = _timed(
            lambda particles=particles: pi.smc(linreg, key=2, num_particles=particles), 1
        )
        rows.append(
            {
                "particles": particles,
                "seconds": seconds,
                "abs_log_z_error": abs(p.log_evidence - example.exact["log_evidence"]),
            }
        )
    results["linear_regression_log_z_error_vs_time"] = rows
    results["equal_accuracy"] = equal_accuracy(linreg, example.exact["log_evidence"], args.seeds)
    write_json(args.out, results)  # before printing: a closed pipe must not lose the results
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
