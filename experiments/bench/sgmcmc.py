"""SGMCMC steps per second: probinfer vs BlackJAX and SGMCMCJax, same process, same network.

Network: the zoo's ``digits_bnn`` — a tanh MLP 64 → 50 → 10 on scikit-learn's digits (1,347
training images), N(0, 1) priors on all 3,760 weights, categorical likelihood; minibatches of 128
drawn with replacement at every step (as SGMCMCJax does). The peers get the network as a user would
write it for them: flax ``apply`` on a parameter pytree, the log likelihood of one datum vmapped.

Rates are gradient evaluations per second of one chain, from the difference of two warm runs of
T₁ and T₂ steps (so compilation and fixed per-call work cancel): ``(T₂ − T₁) / (t₂ − t₁)``.
BlackJAX's and SGMCMCJax's SGHMC take 10 integration steps per call (10 gradients, one minibatch
per call for BlackJAX, one per gradient for SGMCMCJax); their rates count gradients. probinfer's
whole ``pi.sgmcmc`` call is timed (its compiled loop is cached per target and settings; the
difference removes the per-call set-up, and the first-call wall time, with compilation, is
reported separately). The floor is a bare jitted ``lax.scan`` of the same
minibatch gradients (index draw, gather, gradient, ``θ += ε g``), on the hand-written network;
"floor + noise" adds the N(0, I) draw every Langevin step needs (3,760 normals a step, which on a
CPU cost about as much as this small network's minibatch gradient).

SGMCMCJax 0.2.13 imports ``jax.experimental.host_callback``, which JAX removed in 0.4.35; only its
progress bar uses it, so we install an empty stand-in module before importing it.

    pip install -e '.[bench]' && python experiments/bench/sgmcmc.py
"""

import argparse
import platform
import sys
import time
import types
from pathlib import Path

import jax
import jax.numpy as jnp

import probinfer as pi
from probinfer._utils import write_json
from probinfer.models import bnn

BATCH, STEP = 128, 1e-4
LEAPFROG = 10


def _network():
    x, y, _, _ = bnn.load_digits()
    x, y = jnp.asarray(x), jnp.asarray(y)
    module = bnn.MLP((50,), 10)
    params = module.init(jax.random.PRNGKey(0), x[:1])["params"]

    def log_prior(params):
        leaves = jax.tree.leaves(params)
        return sum(jax.scipy.stats.norm.logpdf(p).sum() for p in leaves)

    def log_likelihood(params, datum):  # one data point (x, y)
        xi, yi = datum
        return jax.nn.log_softmax(module.apply({"params": params}, xi))[yi]

    return x, y, params, log_prior, log_likelihood


def _minibatch(key, x, y):
    index = jax.random.randint(key, (BATCH,), 0, x.shape[0])
    return x[index], y[index]


def blackjax_runner(method, x, y, params, log_prior, log_likelihood):
    import blackjax
    from blackjax.sgmcmc.gradients import grad_estimator

    grad = grad_estimator(log_prior, log_likelihood, x.shape[0])
    algorithm = (
        blackjax.sgld(grad)
        if method == "sgld"
        else blackjax.sghmc(grad, num_integration_steps=LEAPFROG)
    )
    per_call = 1 if method == "sgld" else LEAPFROG

    def make(num_steps):
        @jax.jit
        def run(key, position):
            def body(position, key):
                key_batch, key_step = jax.random.split(key)
                return algorithm.step(key_step, position, _minibatch(key_batch, x, y), STEP), None

            keys = jax.random.split(key, num_steps // per_call)
            return jax.lax.scan(body, algorithm.init(position), keys)[0]

        return lambda: run(jax.random.PRNGKey(1), params)

    return make


def sgmcmcjax_runner(method, x, y, params, log_prior, log_likelihood):
    sys.modules.setdefault("jax.experimental.host_callback", types.ModuleType("host_callback"))
    jax.experimental.host_callback = sys.modules["jax.experimental.host_callback"]
    from sgmcmcjax.kernels import build_sghmc_kernel, build_sgld_kernel

    def loglik(params, xi, yi):
        return log_likelihood(params, (xi, yi))

    data = (jnp.asarray(x), jnp.asarray(y))
    if method == "sgld":
        init, kernel, get_params = build_sgld_kernel(STEP, loglik, log_prior, data, BATCH)
        per_call = 1
    else:
        init, kernel, get_params = build_sghmc_kernel(
            STEP, LEAPFROG, loglik, log_prior, data, BATCH
        )
        per_call = LEAPFROG

    def make(num_steps):
        @jax.jit
        def run(key, params):
            state = init(key, params)

            def body(state, inputs):
                i, key = inputs
                return kernel(i, key, state), None

            calls = num_steps // per_call
            inputs = (jnp.arange(calls), jax.random.split(key, calls))
            return get_params(jax.lax.scan(body, state, inputs)[0])

        return lambda: run(jax.random.PRNGKey(1), params)

    return make


def floor_runner(x, y, params, log_prior, log_likelihood, noise=False):
    """The bare gradient loop; with ``noise``, plus the N(0, I) draw an SGLD step needs (drawn
    100 steps at a time, the cheapest way on a CPU)."""
    n = x.shape[0]

    def log_post(params, batch):
        per_datum = jax.vmap(log_likelihood, in_axes=(None, 0))(params, batch)
        return log_prior(params) + n / BATCH * per_datum.sum()

    grad = jax.grad(log_post)

    def make(num_steps):
        @jax.jit
        def run(key, params):
            def body(params, inputs):
                key, e = inputs
                g = grad(params, _minibatch(key, x, y))
                if e is None:
                    return jax.tree.map(lambda p, d: p + STEP * d, params, g), None
                return jax.tree.map(lambda p, d, e: p + STEP * d + 1e-2 * e, params, g, e), None

            def block(params, key):
                key_batch, key_noise = jax.random.split(key)
                e = None
                if noise:
                    e = jax.tree.map(
                        lambda p: jax.random.normal(key_noise, (100,) + p.shape), params
                    )
                inputs = (jax.random.split(key_batch, 100), e)
                return jax.lax.scan(body, params, inputs)[0], None

            return jax.lax.scan(block, params, jax.random.split(key, num_steps // 100))[0]

        return lambda: run(jax.random.PRNGKey(1), params)

    return make


def probinfer_runner(method, target, z0, num_chains=1):
    def make(num_steps):
        return lambda: (
            pi.sgmcmc(
                target,
                key=1,
                kernel=method,
                step_size=STEP,
                init=z0,
                batch_size=BATCH,
                num_steps=num_steps,
                num_chains=num_chains,
                thinning=100,
                num_warmup=0,
                progress=False,
            ).draws
        )

    return make


def _rate(make, short, long, repeats):
    """Gradient evaluations per second from warm runs of ``short`` and ``long`` steps."""
    runs = {}
    for steps in (short, long):
        fn = make(steps)
        start = time.perf_counter()
        jax.block_until_ready(fn())  # compile (and, for probinfer, a full first call)
        first = time.perf_counter() - start
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            jax.block_until_ready(fn())
            times.append(time.perf_counter() - start)
        runs[steps] = (min(times), first)
    rate = (long - short) / (runs[long][0] - runs[short][0])
    return {"steps_per_s": rate, "first_call_s": runs[long][1], "warm_s": runs[long][0]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", type=int, default=2_000)
    parser.add_argument("--long", type=int, default=22_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "sgmcmc.json"
    )
    args = parser.parse_args()
    x, y, params, log_prior, log_likelihood = _network()
    target = pi.models.get("digits_bnn").compile()
    z0 = target.init(jax.random.PRNGKey(0), 1)[0]
    network = (x, y, params, log_prior, log_likelihood)
    runners = {
        "floor": floor_runner(*network),
        "floor + noise": floor_runner(*network, noise=True),
        "probinfer sgld": probinfer_runner("sgld", target, z0),
        "probinfer sghmc": probinfer_runner("sghmc", target, z0),
        "blackjax sgld": blackjax_runner("sgld", *network),
        "blackjax sghmc": blackjax_runner("sghmc", *network),
        "sgmcmcjax sgld": sgmcmcjax_runner("sgld", *network),
        "sgmcmcjax sghmc": sgmcmcjax_runner("sghmc", *network),
        "probinfer sgld, 4 chains": probinfer_runner("sgld", target, z0, num_chains=4),
    }
    rates = {
        name: _rate(make, args.short, args.long, args.repeats) for name, make in runners.items()
    }
    floor = rates["floor"]["steps_per_s"]
    floor_noise = rates["floor + noise"]["steps_per_s"]
    ratios = {}
    for kernel in ("sgld", "sghmc"):
        ours = rates[f"probinfer {kernel}"]["steps_per_s"]
        ratios[kernel] = {
            "vs_blackjax": ours / rates[f"blackjax {kernel}"]["steps_per_s"],
            "vs_sgmcmcjax": ours / rates[f"sgmcmcjax {kernel}"]["steps_per_s"],
            "time_over_floor": floor / ours,
            "time_over_floor_with_noise": floor_noise / ours,
        }
    results = {
        "date": time.strftime("%Y-%m-%d"),
        "device": jax.devices()[0].device_kind,
        "platform": platform.platform(),
        "jax": jax.__version__,
        "network": "digits MLP 64-50-10 (3,760 weights), batch 128",
        "steps": [args.short, args.long],
        "rates": rates,
        "ratios": ratios,
    }
    write_json(args.out, results)  # before printing: a closed pipe must not lose the results
    print(f"{'implementation':28s} {'grad evals/s':>14s} {'first call (s)':>15s}")
    for name, r in rates.items():
        print(f"{name:28s} {r['steps_per_s']:14.0f} {r['first_call_s']:15.2f}")
    for kernel, r in ratios.items():
        print(
            f"{kernel}: {r['vs_blackjax']:.2f}x BlackJAX, {r['vs_sgmcmcjax']:.2f}x SGMCMCJax, "
            f"time {r['time_over_floor']:.2f}x the floor, "
            f"{r['time_over_floor_with_noise']:.2f}x the floor with noise"
        )


if __name__ == "__main__":
    main()
