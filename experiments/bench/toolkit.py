"""Old loops against the one trainer (issue 31): the same timings with the code before the toolkit
(``--old``, default commit ``fa02722``: each family's own training loop) and the current tree, each
in its own process on the same machine, one after the other.

Measured (every call is made once to warm up first):

* ``flow_vi``: NSF on the 31-D breast-cancer logistic regression;
* PFN and DT training, small networks;

  each as steps per second from the time of a long run minus a short one (so a call's fixed
  cost — compilation, set-up — is left out) and that fixed cost per call in seconds;
* ``npe``: training seconds (simulation included), Gaussian linear (10-D), 2,000 simulations and
  the default network, with the final validation loss.

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

    def rate(call, short, long):
        """(steps per second between a short and a long run, fixed seconds per call)."""
        call(short)
        t_short, _ = warm(lambda: call(short))
        t_long, _ = warm(lambda: call(long))
        per_step = (t_long - t_short) / (long - short)
        return 1.0 / per_step, t_short - short * per_step

    out = {"version": pi.__version__, "file": pi.__file__}
    target = logistic_regression.breast_cancer_example().compile()
    out["flow_vi_steps_per_s"], out["flow_vi_fixed_s"] = rate(
        lambda n: pi.flow_vi(target, key=0, num_steps=n, progress=False), 500, 2500
    )

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
    out["pfn_steps_per_s"], out["pfn_fixed_s"] = rate(
        lambda n: pi.pfn.train(
            pi.pfn.GPPrior(), key=0, num_steps=n, batch_size=16, seq_len=50,
            network=network, progress=False,
        ), 100, 1100,
    )  # fmt: skip

    def line(x=None, y=None):
        theta = pi.sample("theta", pi.dist.Normal(0, 1).expand([2]).to_event(1))
        with pi.plate("data", 20):
            x = pi.sample("x", pi.dist.Uniform(-1.0, 1.0), obs=x)
            pi.sample("y", pi.dist.Normal(theta[0] + theta[1] * x, 0.5), obs=y)

    example_data = {"x": jax.numpy.zeros(20), "y": jax.numpy.zeros(20)}
    out["dt_steps_per_s"], out["dt_fixed_s"] = rate(
        lambda n: pi.dt.train(
            line, key=0, num_steps=n, batch_size=16,
            network=DistributionTransformer(d_model=32, num_layers=2, num_heads=4),
            model_kwargs=example_data, progress=False,
        ), 100, 1100,
    )  # fmt: skip
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
    keys = [
        "flow_vi_steps_per_s", "flow_vi_fixed_s", "npe_train_s", "pfn_steps_per_s", "pfn_fixed_s",
        "dt_steps_per_s", "dt_fixed_s",
    ]  # fmt: skip
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
