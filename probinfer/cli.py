"""The ``probinfer`` command.

``probinfer`` alone runs the embedded default — the non-centred eight-schools model with adaptive
HMC — prints the posterior summary and writes a report folder. ``probinfer run MODEL`` does the
same for any zoo model; ``probinfer calibrate MODEL --method NAME --sims N`` checks a method's
calibration (TARP and SBC) on data simulated from the model; ``probinfer models`` lists the zoo.
"""

import argparse
import sys
import time

__all__ = ["main"]

DEFAULT_MODEL = "eight_schools"


def _parser():
    parser = argparse.ArgumentParser(
        prog="probinfer",
        description="Run Bayesian inference on a zoo model and write a report "
        "(with no arguments: eight schools, adaptive HMC).",
    )
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run a method on a zoo model and write a report")
    run.add_argument("model", nargs="?", default=DEFAULT_MODEL, help="zoo model name")
    run.add_argument("--method", default="hmc", choices=["hmc", "mala", "rwm"])
    run.add_argument("--chains", type=int, default=4)
    run.add_argument("--draws", type=int, default=1000)
    run.add_argument("--warmup", type=int, default=1000)
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--out", default="probinfer-report", help="report folder")
    calibrate = sub.add_parser(
        "calibrate", help="check a method's calibration on data simulated from a zoo model"
    )
    calibrate.add_argument("model", help="zoo model name (see `probinfer models`)")
    calibrate.add_argument("--method", default="hmc", help="runner name (hmc, mala, rwm, smc, …)")
    calibrate.add_argument("--sims", type=int, default=200, help="simulated data sets")
    calibrate.add_argument("--samples", type=int, default=500, help="posterior draws per data set")
    calibrate.add_argument("--warmup", type=int, default=None, help="MCMC warm-up per data set")
    calibrate.add_argument("--seed", type=int, default=0)
    calibrate.add_argument("--out", default="probinfer-calibration", help="output folder")
    sub.add_parser("models", help="list the model zoo")
    return parser


def _run(args):
    import jax

    import probinfer as pi

    example = pi.models.get(args.model)
    target = example.compile()
    print(f"probinfer {pi.__version__} on {jax.default_backend()} ({jax.device_count()} device(s))")
    print(f"model: {example.name} — {example.description}; {target.dim} unconstrained dims")
    print(
        f"method: {args.method}, {args.chains} chains × {args.draws} draws "
        f"({args.warmup} warm-up), seed {args.seed}"
    )
    start = time.perf_counter()
    posterior = pi.mcmc(
        target,
        key=args.seed,
        kernel=args.method,
        num_chains=args.chains,
        num_draws=args.draws,
        num_warmup=args.warmup,
        progress="auto",
    )
    seconds = time.perf_counter() - start
    diagnostics = posterior.diagnostics
    table = posterior.summary()
    print()
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    print()
    divergent = int(diagnostics["num_divergent"].sum())
    worst_rhat = float(table["r_hat"].max())
    lines = [
        f"- model: `{example.name}` ({example.description})",
        f"- method: {args.method}, {args.chains} chains × {args.draws} draws, "
        f"{args.warmup} warm-up, seed {args.seed}",
        f"- wall time (compilation included): {seconds:.1f} s",
        f"- mean acceptance: {diagnostics['acceptance_rate'].mean():.2f}; divergences: {divergent}",
        f"- min bulk ESS: {table['ess_bulk'].min():.0f}; max R-hat: {worst_rhat:.3f}",
    ]
    for line in lines[2:]:
        print(line[2:])
    if worst_rhat > 1.01 or divergent:
        print(
            "warning: R-hat above 1.01 or divergences — do not trust this posterior yet; "
            "run longer or reparameterise."
        )
    paths = pi.report.write_report(
        posterior, args.out, title=f"{example.name} ({args.method})", header_lines=lines
    )
    print(
        f"report written to {args.out}/ ({', '.join(sorted(p.split('/')[-1] for p in paths.values()))})"
    )
    return 0


def _calibrate(args):
    import probinfer as pi

    example = pi.models.get(args.model)
    kwargs = {} if args.warmup is None else {"num_warmup": args.warmup}
    print(
        f"calibrating {args.method} on {example.name}: {args.sims} simulated data sets × "
        f"{args.samples} draws, seed {args.seed}"
    )
    result = pi.calibrate(
        example,
        args.method,
        num_sims=args.sims,
        num_samples=args.samples,
        key=args.seed,
        **kwargs,
    )
    print(result.verdict())
    print(f"runs took {result.seconds:.1f} s")
    paths = result.save(args.out)
    print(
        f"figure and verdict written to {args.out}/ ({', '.join(sorted(p.split('/')[-1] for p in paths.values()))})"
    )
    return 0


def _models():
    from probinfer import models

    for name in sorted(models.ZOO):
        example = models.get(name)
        print(f"{name:24s} {example.description}")
    return 0


def main(argv=None):
    """Entry point of the ``probinfer`` console script."""
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.command in (None, "run"):
        if args.command is None:
            args = _parser().parse_args(["run"])
        return _run(args)
    if args.command == "calibrate":
        return _calibrate(args)
    if args.command == "models":
        return _models()
    return 2


if __name__ == "__main__":
    sys.exit(main())
