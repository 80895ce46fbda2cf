"""The old one-function ``sgmcmc`` options, translated to kernels and schedules for one release.

``pi.sgmcmc(target, method="sghmc", friction=0.2)`` becomes
``pi.sgmcmc(target, kernel=sghmc(friction=0.2))``; each old spelling warns once with the new one.
"""

import warnings

from probinfer.errors import ProbinferError
from probinfer.inference.sgmcmc import kernels as _kernels
from probinfer.inference.sgmcmc import schedules as _schedules

__all__ = ["kernel_from_legacy"]

_KERNEL_OPTIONS = {
    "sgld": {"precondition": "preconditioner"},
    "sghmc": {"friction": "friction"},
    "structured": {
        "base": "kernel",
        "groups": "groups",
        "num_groups": "num_groups",
        "buffer_size": "buffer_size",
        "dropout": "dropout",
        "num_copies": "num_copies",
    },
    "entropy": {"coupling": "coupling"},
}
_SCHEDULE_OPTIONS = {
    "num_cycles": "cyclical",
    "exploration": "cyclical",
    "decay_power": "polynomial",
}
_KNOWN = (
    {"method", "burn_in"}
    | set(_SCHEDULE_OPTIONS)
    | {old for options in _KERNEL_OPTIONS.values() for old in options}
)


def kernel_from_legacy(kernel, schedule, num_warmup, legacy):
    """``(kernel, schedule, num_warmup)`` from the new arguments and the old ``legacy`` dict."""
    unknown = set(legacy) - _KNOWN
    if unknown:
        raise TypeError(f"sgmcmc() got unexpected keyword argument(s) {sorted(unknown)}.")
    legacy = dict(legacy)
    method = legacy.pop("method", None)
    if "burn_in" in legacy:
        _warn("burn_in=", "num_warmup=")
        if num_warmup is not None:
            raise TypeError("sgmcmc() got both num_warmup= and its old name burn_in=.")
        num_warmup = legacy.pop("burn_in")
    schedule_options = {k: legacy.pop(k) for k in list(legacy) if k in _SCHEDULE_OPTIONS}
    if schedule_options:
        name = schedule if isinstance(schedule, str) else None
        if name not in ("cyclical", "polynomial"):
            raise ProbinferError(
                f"{sorted(schedule_options)} are options of a cyclical or polynomial schedule; "
                "pass schedule=schedules.cyclical(...) or schedules.polynomial(...)."
            )
        used = {k: v for k, v in schedule_options.items() if _SCHEDULE_OPTIONS[k] == name}
        _warn(", ".join(f"{k}=" for k in schedule_options), f"schedule=schedules.{name}(...)")
        schedule = getattr(_schedules, name)(**used)
    if method is None and not legacy:
        return kernel, schedule, num_warmup
    if kernel is not None:
        raise TypeError("sgmcmc() got kernel= together with the old method= options.")
    if method is None:  # the default kernel with an explicit precondition=
        method = "sgld"
    if method not in _kernels.NAMES and method not in _KERNEL_OPTIONS:
        _kernels.get(method)  # raises with the closest name
    allowed = _KERNEL_OPTIONS.get(method, {})
    if method == "structured" and legacy.get("base") in ("sgld", None):
        allowed = {**allowed, "precondition": "precondition"}
    stray = set(legacy) - set(allowed)
    if stray:
        raise ProbinferError(f"option(s) {sorted(stray)} do not apply to method '{method}'.")
    options = {allowed[k]: v for k, v in legacy.items()}
    if method == "structured" and "precondition" in options:
        options["kernel"] = _kernels.sgld(preconditioner=options.pop("precondition"))
    constructor = {
        **_kernels.NAMES,
        "structured": _structured,
        "entropy": _entropy,
    }[method]
    described = ", ".join(f"{k}={v!r}" for k, v in options.items())
    _warn(
        "method=" + (f" with {sorted(legacy)}" if legacy else ""), f"kernel={method}({described})"
    )
    return constructor(**options), schedule, num_warmup


def _structured(**options):
    from probinfer.inference.sgmcmc.structured import structured

    return structured(**options)


def _entropy(**options):
    from probinfer.inference.sgmcmc.entropy import entropy

    return entropy(**options)


def _warn(old, new):
    warnings.warn(
        f"sgmcmc: {old} is replaced by {new} (DESIGN's calling convention: a kernel's options "
        "live in its constructor); the old spelling goes in the next release.",
        DeprecationWarning,
        stacklevel=4,
    )
