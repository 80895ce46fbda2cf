"""Train the shipped 1-D GP-regression PFN ``gp-rbf-1d`` (issue 15) and write its weights into
the package (``inference/pfn/weights/gp-rbf-1d.msgpack``).

Prior: the paper's 1-D GP — RBF kernel, lengthscale 0.1, outputscale 0.1, noise variance 0.1,
inputs uniform on [0, 1]. Network: 4 pre-norm layers of width 128 (4 heads), 500 buckets.
Training: 8,000 steps of 64 data sets of 100 points (about an hour on 2 CPU cores), Adam 10⁻³
with 5 % warm-up and cosine decay. Checkpointed: run it again with the same ``--checkpoint`` to
resume.

    python experiments/pfn/train_gp_rbf_1d.py [--num-steps 8000] [--checkpoint DIR]

Evaluate with ``experiments/pfn/gp_mimicry.py``.
"""

import argparse
from pathlib import Path

import probinfer as pi
from probinfer.inference.pfn import GPPrior, Transformer

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = ROOT / "inference" / "pfn" / "weights" / "gp-rbf-1d.msgpack"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-steps", type=int, default=8000)
    parser.add_argument("--checkpoint", default="experiments/pfn/checkpoints/gp-rbf-1d")
    parser.add_argument("--out", default=str(WEIGHTS))
    args = parser.parse_args()
    pfn = pi.pfn.train(
        GPPrior(lengthscale=0.1, outputscale=0.1, noise=0.1),
        key=0,
        num_steps=args.num_steps,
        batch_size=64,
        seq_len=100,
        network=Transformer(num_buckets=500, d_model=128, num_layers=4, num_heads=4),
        learning_rate=1e-3,
        checkpoint=args.checkpoint,
        checkpoint_every=100,
        progress=False,
    )
    pfn.save(args.out)
    loss = pfn.diagnostics["loss"]
    print(
        f"saved {args.out}; loss over the last 500 steps {loss[-500:].mean():.4f}, "
        f"{pfn.diagnostics['seconds']:.0f} s"
    )


if __name__ == "__main__":
    main()
