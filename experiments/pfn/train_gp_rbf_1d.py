"""Train the shipped 1-D GP-regression PFN ``gp-rbf-1d`` (issue 15) and write its weights into
the package (``inference/pfn/weights/gp-rbf-1d.msgpack``).

Prior: the paper's 1-D GP — RBF kernel, lengthscale 0.1, outputscale 0.1, noise variance 0.1,
inputs uniform on [0, 1]. Network: 4 pre-norm layers of width 128 (4 heads), 500 buckets.
Data: 64 data sets of 100 points per step.

* Stage 1: 8,000 steps, Adam 10⁻³ (5 % warm-up, cosine), split positions P(k) ∝ 1/(T − k)
  (the reference code's rule) — 3,570 s on 2 CPU cores.
* Stage 2: 2,500 steps from stage 1's weights, Adam 3·10⁻⁴, uniform split positions (stage 1
  left small contexts under-trained: 0.06–0.09 nats from the exact GP below 10 points).

Both stages checkpoint (run the script again to resume); ``--stage1 PATH`` starts stage 2 from
saved stage-1 weights.

    python experiments/pfn/train_gp_rbf_1d.py [--stage1 experiments/pfn/checkpoints/gp-rbf-1d-stage1.msgpack]

Evaluate with ``experiments/pfn/gp_mimicry.py``.
"""

import argparse
from pathlib import Path

import probinfer as pi
from probinfer.inference.pfn import GPPrior, Transformer

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = ROOT / "inference" / "pfn" / "weights" / "gp-rbf-1d.msgpack"
CHECKPOINTS = ROOT / "experiments" / "pfn" / "checkpoints"
PRIOR = GPPrior(lengthscale=0.1, outputscale=0.1, noise=0.1)
DATA = {"batch_size": 64, "seq_len": 100, "checkpoint_every": 100, "progress": False}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage1", default=None, help="saved stage-1 weights (skip stage 1)")
    parser.add_argument("--out", default=str(WEIGHTS))
    args = parser.parse_args()
    if args.stage1:
        first = pi.pfn.load(args.stage1)
    else:
        first = pi.pfn.train(
            PRIOR,
            key=0,
            num_steps=8000,
            split="inverse",
            network=Transformer(num_buckets=500, d_model=128, num_layers=4, num_heads=4),
            learning_rate=1e-3,
            checkpoint=CHECKPOINTS / "gp-rbf-1d",
            **DATA,
        )
        first.save(CHECKPOINTS / "gp-rbf-1d-stage1.msgpack")
    pfn = pi.pfn.train(
        PRIOR,
        key=1,
        num_steps=2500,
        split="uniform",
        pretrained=first,
        learning_rate=3e-4,
        checkpoint=CHECKPOINTS / "gp-rbf-1d-stage2",
        **DATA,
    )
    pfn.save(args.out)
    loss = pfn.diagnostics["loss"]
    print(
        f"saved {args.out}; stage-2 loss over its last 500 steps {loss[-500:].mean():.4f}, "
        f"{pfn.diagnostics['seconds']:.0f} s"
    )


if __name__ == "__main__":
    main()
