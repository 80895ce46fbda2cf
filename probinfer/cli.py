"""The ``probinfer`` command.

``probinfer`` alone runs the embedded default — the non-centred eight-schools model with NUTS
(``pi.mcmc``'s default kernel) — prints the posterior summary and writes a report folder. ``probinfer run MODEL --method
NAME`` does the same for any zoo model and any registered runner (``probinfer.runners.names()``:
mcmc, hmc, smc, sgmcmc, …), with ``--set key=value`` for the runner's settings;
``probinfer calibrate MODEL --method NAME --sims N`` checks a method's calibration (TARP and SBC)
on data simulated from the model; ``probinfer models`` lists the zoo.
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
    run.add_argument(
        "--method", default="mcmc", help="registered runner (mcmc = NUTS, hmc, smc, …)"
    )
    run.add_argument("--chains", type=int, default=None, help="num_chains (default 4)")
    run.add_argument("--draws", type=int, default=None, help="num_draws (default 1000)")
    run.add_argument("--warmup", type=int, default=None, help="num_warmup (default 1000)")
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting of the runner, e.g. --set num_particles=2000 (VALUE read as JSON)",
    )
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


def _settings(args, runner):
    """The runner's settings from the flags: --chains/--draws/--warmup where it takes them, and
    every --set KEY=VALUE (refused, with the valid names, when the runner does not take it)."""
    import inspect
    import json

    from probinfer.errors import ProbinferError

    accepted = inspect.signature(runner).parameters
    settings = {}
    for flag, name in [("chains", "num_chains"), ("draws", "num_draws"), ("warmup", "num_warmup")]:
        value = getattr(args, flag)
        if value is not None:
            if name not in accepted:
                raise ProbinferError(f"--{flag} does not apply to method '{args.method}'.")
            settings[name] = value
    for item in args.set:
        name, _, text = item.partition("=")
        if name not in accepted or name in ("target", "key"):
            valid = sorted(k for k in accepted if k not in ("target", "key"))
            raise ProbinferError(
                f"method '{args.method}' has no setting '{name}'; it takes {valid}."
            )
        try:
            settings[name] = json.loads(text)
        except json.JSONDecodeError:
            settings[name] = text
    return settings


def _run(args):
    import jax
    import numpy as np

    import probinfer as pi

    example = pi.models.get(args.model)
    target = example.compile()
    runner, _ = pi.runners.get(args.method)
    settings = _settings(args, runner)
    if args.method in ("mcmc", "hmc", "mala", "rwm"):
        settings = {"num_chains": 4, "num_draws": 1000, "num_warmup": 1000, **settings}
    described = ", ".join(f"{k}={v}" for k, v in settings.items()) or "defaults"
    print(f"probinfer {pi.__version__} on {jax.default_backend()} ({jax.device_count()} device(s))")
    print(f"model: {example.name} — {example.description}; {target.dim} unconstrained dims")
    print(f"method: {args.method} ({described}), seed {args.seed}")
    start = time.perf_counter()
    posterior = runner(target, key=args.seed, progress="auto", **settings)
    seconds = time.perf_counter() - start
    diagnostics = posterior.diagnostics
    table = posterior.summary()
    print()
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    print()
    kernel = posterior.settings.get("kernel")
    lines = [
        f"- model: `{example.name}` ({example.description})",
        f"- method: {posterior.method}"
        + (f" (kernel {kernel})" if kernel else "")
        + f", {described}, seed {args.seed}",
        f"- wall time (compilation included): {seconds:.1f} s",
    ]
    divergent = int(np.sum(diagnostics.get("num_divergent", 0)))
    if "acceptance_rate" in diagnostics:
        accept = float(np.mean(diagnostics["acceptance_rate"]))
        lines.append(f"- mean acceptance: {accept:.2f}; divergences: {divergent}")
    if posterior.log_evidence is not None:
        lines.append(f"- log evidence: {posterior.log_evidence:.3f}")
    worst_rhat = float(table["r_hat"].max())
    lines.append(f"- min bulk ESS: {table['ess_bulk'].min():.0f}; max R-hat: {worst_rhat:.3f}")
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
    method_kwargs = {} if args.warmup is None else {"num_warmup": args.warmup}
    print(
        f"calibrating {args.method} on {example.name}: {args.sims} simulated data sets × "
        f"{args.samples} draws, seed {args.seed}"
    )
    result = pi.calibrate(
        example,
        args.method,
        key=args.seed,
        num_sims=args.sims,
        num_draws=args.samples,
        method_kwargs=method_kwargs,
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
    from probinfer.errors import ProbinferError

    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.command in (None, "run"):
            if args.command is None:
                args = _parser().parse_args(["run"])
            return _run(args)
        if args.command == "calibrate":
            return _calibrate(args)
        if args.command == "models":
            return _models()
    except ProbinferError as exc:  # one sentence for the user, no traceback
        print(f"probinfer: error: {exc}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
