"""How far SLCP's reference draws (``results/sbi_references.npz``, our adaptive tempered SMC with
8,192 particles) are from two more SMC runs of the same size: the C2ST of 1,000 draws of each
fresh run against the first 1,000 reference draws, and their means, at observations 0 and 2.

    python experiments/bench/slcp_reference_spread.py

Prints one line per run (docs/benchmarks.md, "SLCP's references carry their own spread").
"""

from pathlib import Path

import numpy as np

import probinfer as pi
from probinfer.diagnostics import c2st
from probinfer.models import sbi as tasks

REFERENCES = Path(__file__).parent / "results" / "sbi_references.npz"


def main():
    refs = np.load(REFERENCES)
    for seed in (0, 2):
        example = tasks.slcp_example(seed)
        ref = refs[f"slcp_{seed}"][:1000]
        for key in (50, 51):
            post = pi.smc(example.compile(), key=key, num_particles=8192, progress=False)
            draws = np.asarray(post.sample(key=key + 1, n=1000)["theta"])
            print(
                f"observation {seed}, SMC key {key}: C2ST {c2st(ref, draws, key=0):.3f}; means "
                f"reference {ref.mean(0).round(2)}, run {draws.mean(0).round(2)}, true θ "
                f"{np.asarray(example.exact['theta']).round(2)}",
                flush=True,
            )


if __name__ == "__main__":
    main()
