"""What sharing compiled programs between conditioned targets saves (issue 31, item 6).

``calibrate``'s one-at-a-time path (SG-MCMC, custom runners) runs a method on
``target.condition(simulated data)`` once per simulation. Before 0.2.0 each conditioned Target
compiled its own programs; now the data are an argument of the compiled program
(``Target.jit``) and every conditioned target of a model shares it. This script times a runner on
``num_sims`` data sets both ways in one process: (a) a freshly compiled Target per data set, which
is what every conditioned target cost before, and (b) ``target.condition`` — and checks the draws
agree (same data, same key: the same program, so equal up to float rounding).

    python experiments/bench/conditioned.py            # writes results/conditioned.json
"""

import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

import probinfer as pi
from probinfer import dist

NUM_DATA, DIM = 200, 5


def logistic(x, y=None):
    w = pi.sample("w", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    with pi.plate("data", x.shape[0]):
        pi.sample("y", dist.Bernoulli(logits=x @ w), obs=y)


RUNNERS = {
    "sgmcmc": lambda t, key: pi.sgmcmc(t, key=key, num_steps=2000, progress=False),
    "mcmc": lambda t, key: pi.mcmc(t, key=key, num_warmup=300, num_draws=300, progress=False),
    "smc": lambda t, key: pi.smc(t, key=key, num_particles=512, progress=False),
}


def main(num_sims=5):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(NUM_DATA, DIM)).astype(np.float32)
    target = pi.compile(logistic, x, y=np.zeros(NUM_DATA, np.float32), data=("x", "y"))
    _, simulated = target.simulate(jax.random.key(1), num_sims)
    results = {}
    for name, run in RUNNERS.items():
        times = {"fresh": [], "condition": []}
        means = {"fresh": [], "condition": []}
        for i in range(num_sims):
            y = np.asarray(simulated["y"][i])
            for way in ("fresh", "condition"):
                start = time.perf_counter()
                if way == "fresh":
                    t = pi.compile(logistic, x, y=y, data=("x", "y"))
                else:
                    t = target.condition({"y": y})
                post = run(t, i)
                times[way].append(time.perf_counter() - start)
                means[way].append(np.asarray(post.summary()["mean"]))
        gap = float(np.max(np.abs(np.array(means["fresh"]) - np.array(means["condition"]))))
        results[name] = {
            "seconds_per_data_set_fresh": times["fresh"],
            "seconds_per_data_set_condition": times["condition"],
            "after_the_first_fresh": float(np.mean(times["fresh"][1:])),
            "after_the_first_condition": float(np.mean(times["condition"][1:])),
            "max_abs_difference_of_means": gap,
        }
        r = results[name]
        print(
            f"{name}: per data set after the first, fresh Target {r['after_the_first_fresh']:.2f} s, "
            f"condition() {r['after_the_first_condition']:.2f} s "
            f"(x{r['after_the_first_fresh'] / r['after_the_first_condition']:.1f}); "
            f"means differ by at most {gap:.2g}"
        )
    out = Path(__file__).parent / "results" / "conditioned.json"
    meta = {"machine": "2-core CPU", "jax": jax.__version__, "num_sims": num_sims}
    record = {"date": time.strftime("%Y-%m-%d"), "meta": meta, "results": results}
    out.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
