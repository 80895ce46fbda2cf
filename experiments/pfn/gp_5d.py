"""A 5-dimensional GP-regression PFN (issue 15's stretch goal: the paper's d = 5 setting)
against the exact GP posterior predictive.

Prior (:class:`GPPrior`, d = 5): RBF kernel with lengthscale 0.5 in every input dimension,
outputscale 1, noise variance 0.1, inputs uniform on [0, 1]⁵. The lengthscale is chosen so the
context matters at 5–50 points (the 1-D prior's 0.1 would leave 50 points in [0, 1]⁵ nearly
uncorrelated): the exact GP's NLL falls from 1.45 nats (no data) to 0.79 at 50 points.

Training: 12,000 steps of 64 data sets of 64 points (so up to 63 context points), the shipped
1-D model's network (4 pre-norm layers of width 128, 4 heads, 500 buckets), uniform split
positions, Adam 10⁻³ with warm-up and cosine decay; checkpointed (run again to resume). The
weights stay in ``experiments/pfn/checkpoints/`` (not shipped). Measured on 2 CPU cores: 1,278 s
of training; 0.007–0.023 nats per test point from the exact GP at 0–60 context points.

    python experiments/pfn/gp_5d.py [--num-steps 12000] [--num-datasets 1000]

Evaluation as in ``gp_mimicry.py`` (held-out data sets, 20 test points each); writes
``experiments/pfn/results/gp_mimicry_5d.{json,png}``.
"""

import argparse
from pathlib import Path

import gp_mimicry

import probinfer as pi
from probinfer.inference.pfn import GPPrior, Transformer

HERE = Path(__file__).parent
CHECKPOINTS = HERE / "checkpoints"
PRIOR = GPPrior(lengthscale=0.5, outputscale=1.0, noise=0.1, num_features=5)
CONTEXTS = (0, 1, 2, 5, 10, 20, 30, 40, 50, 60)


def train(num_steps=12_000):
    """Train (or resume) the 5-D GP PFN and save its weights beside the checkpoint."""
    pfn = pi.pfn.train(
        PRIOR,
        key=5,
        num_steps=num_steps,
        batch_size=64,
        seq_len=64,
        split="uniform",
        network=Transformer(num_buckets=500, d_model=128, num_layers=4, num_heads=4),
        learning_rate=1e-3,
        checkpoint=CHECKPOINTS / f"gp-rbf-5d-{num_steps}",
        checkpoint_every=100,
        progress=False,
    )
    pfn.save(CHECKPOINTS / f"gp-rbf-5d-{num_steps}.msgpack")
    return pfn


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-steps", type=int, default=12_000)
    parser.add_argument("--num-datasets", type=int, default=1000)
    args = parser.parse_args()
    pfn = train(args.num_steps)
    print(f"trained: loss over the last 500 steps {pfn.diagnostics['loss'][-500:].mean():.4f}")
    rows = gp_mimicry.evaluate(pfn, args.num_datasets, CONTEXTS, seed=5000)
    title = f"GP mimicry in 5-D, {args.num_datasets} held-out data sets"
    gp_mimicry.write("gp_mimicry_5d", "5-D GP PFN", pfn, rows, args.num_datasets, title)


if __name__ == "__main__":
    main()
