"""Old loops against the one trainer (issue 31): the same timings with the code before the toolkit
(``--old``, default commit ``fa02722``: each family's own training loop) and the current tree, each
in its own process on the same machine, one after the other.

Measured (warm: every call is made twice and the second timed, so compilation is left out):

* ``flow_vi``: steps per second, NSF on the 31-D breast-cancer logistic regression, 2,000 steps;
* ``npe``: training seconds (simulation included), Gaussian linear (10-D), 2,000 simulations and
  the default network, with the final validation loss (the two must train the same network);
* PFN and DT: training steps per second, small networks, 300 steps.

The old tree is installed with ``pip install --no-deps --target`` into a temporary folder and put
first on ``PYTHONPATH`` for its process (the script checks which version each process imported).

    python experiments/bench/toolkit.py [--old fa02722] [--repeats 3]

Writes ``experiments/bench/results/toolkit.json``.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parent.parent


def measure():
    """Run in a child process: every timing, for whichever probinfer it imports."""
    import jax
    import numpy as np

    import probinfer as pi
    from probinfer.models import logistic_regression, sbi

    def warm(call):
        call()
        start = time.perf_counter()
        out = call()
        return time.perf_counter() - start, out

    out = {"version": pi.__version__, "file": pi.__file__}
    target = logistic_regression.breast_cancer_example().compile()
    seconds, _ = warm(lambda: pi.flow_vi(target, key=0, num_steps=2000, progress=False))
    out["flow_vi_steps_per_s"] = 2000 / seconds

    example = sbi.gaussian_linear_example()
    seconds, npe = warm(
        lambda: pi.npe(example.compile(), key=0, num_simulations=2000, progress=False)
    )
    out["npe_train_s"] = seconds
    validation = npe.diagnostics.get("validation_loss")
    out["npe_final_validation_loss"] = None if validation is None else float(np.min(validation))

    from probinfer.inference.dt import DistributionTransformer
    from probinfer.inference.pfn import Transformer

    network = Transformer(num_buckets=100, d_model=32, num_layers=2, num_heads=4, d_ff=64)
    seconds, _ = warm(
        lambda: pi.pfn.train(
            pi.pfn.GPPrior(), key=0, num_steps=300, batch_size=16, seq_len=50,
            network=network, progress=False,
        )
    )  # fmt: skip
    out["pfn_steps_per_s"] = 300 / seconds

    def line(x=None, y=None):
        theta = pi.sample("theta", pi.dist.Normal(0, 1).expand([2]).to_event(1))
        with pi.plate("data", 20):
            x = pi.sample("x", pi.dist.Uniform(-1.0, 1.0), obs=x)
            pi.sample("y", pi.dist.Normal(theta[0] + theta[1] * x, 0.5), obs=y)

    example_data = {"x": jax.numpy.zeros(20), "y": jax.numpy.zeros(20)}
    seconds, _ = warm(
        lambda: pi.dt.train(
            line, key=0, num_steps=300, batch_size=16,
            network=DistributionTransformer(d_model=32, num_layers=2, num_heads=4),
            model_kwargs=example_data, progress=False,
        )
    )  # fmt: skip
    out["dt_steps_per_s"] = 300 / seconds
    print(json.dumps(out))


def run(pythonpath):
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    result = subprocess.run(
        [sys.executable, __file__, "--child"], capture_output=True, text=True, env=env, check=False
    )
    if result.returncode:
        raise SystemExit(f"child failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--old", default="fa02722")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", action="store_true")
    args = parser.parse_args()
    if args.child:
        return measure()
    with tempfile.TemporaryDirectory() as tmp:
        tree, target = Path(tmp) / "tree", Path(tmp) / "site"
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), args.old], cwd=ROOT,
                       check=True, capture_output=True)  # fmt: skip
        try:
            subprocess.run(
                [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                 str(target), str(tree)], check=True, capture_output=True,
            )  # fmt: skip
            runs = {"old": [], "new": []}
            for _ in range(args.repeats):  # interleaved, so drifting load hits both alike
                runs["old"].append(run(str(target)))
                runs["new"].append(run(None))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT,
                           check=False, capture_output=True)  # fmt: skip
    keys = ["flow_vi_steps_per_s", "npe_train_s", "pfn_steps_per_s", "dt_steps_per_s"]
    summary = {}
    for key in keys:
        old = sorted(r[key] for r in runs["old"])
        new = sorted(r[key] for r in runs["new"])
        summary[key] = {"old_median": old[len(old) // 2], "new_median": new[len(new) // 2],
                        "old": old, "new": new}  # fmt: skip
        print(f"{key}: old {summary[key]['old_median']:.3g}, new {summary[key]['new_median']:.3g}")
    record = {
        "old_commit": args.old,
        "versions": {k: v[0]["version"] for k, v in runs.items()},
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "summary": summary,
        "npe_final_validation_loss": {
            k: [r["npe_final_validation_loss"] for r in v] for k, v in runs.items()
        },
        "date": time.strftime("%Y-%m-%d"),
    }
    (HERE / "results" / "toolkit.json").write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
