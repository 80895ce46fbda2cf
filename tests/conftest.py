"""Shared test helpers."""

import json
import os
import subprocess
import sys

import pytest

# The suite runs in two worker processes (pyproject's addopts): on a GPU each would otherwise
# reserve 75 % of the device's memory at start-up.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
# The CLI tests call main() in this process: keep its on-disk compilation cache off, so the
# suite compiles what it tests and writes nothing under $HOME (tests/test_caching.py covers it).
os.environ.setdefault("PROBINFER_COMPILATION_CACHE", "0")

# The default tier is compile-bound: two thirds of its time is XLA compiling small programs once
# (profiled on test_target.py: 71 of 112 s in backend_compile). LLVM's optimisation passes and
# XLA:CPU's new fusion emitters are what that compile time buys; without them the default tier
# runs in 7:14 instead of 11:06 (487 tests, 2 cores), and only the two tests that run long
# compiled loops got slower (those are in the slow tier). Results are the same programs up to
# rounding, which every test already allows. The slow tier (`pytest -m slow`: long runs, where
# the optimised code pays) keeps XLA's defaults, so CI runs the code users run as well.
# PROBINFER_TEST_XLA=default keeps XLA's defaults in every tier.
_FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"


def _selects_slow(config):
    expression = config.getoption("markexpr", "") or ""
    return "slow" in expression and "not slow" not in expression


def pytest_configure(config):
    if _selects_slow(config) and hasattr(config.option, "loadscopereorder"):
        # pytest-xdist orders files by their number of tests; ours is by their length (below)
        config.option.loadscopereorder = False
    if _selects_slow(config) or os.environ.get("PROBINFER_TEST_XLA") == "default":
        return
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_backend_optimization_level" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {_FAST_COMPILE}".strip()


# The slow tier's longest files, longest first (seconds on 2 cores, 2026-12-07). The test runner
# hands out whole files in collection order, and a long file collected last ran alone at the end
# while the other worker sat idle (CI: 74 minutes); longest first (LPT scheduling) lets the short
# files fill in. A file missing here only runs in its collection place.
_SLOW_TIER_LONGEST_FIRST = (
    "tests/test_example_jobs.py",
    "tests/test_docs.py",
    "tests/inference/test_dt.py",
    "tests/test_amortized_jobs.py",
    "tests/test_jobs.py",
    "tests/inference/test_sgmcmc_sparse.py",
    "tests/inference/test_learned_likelihoods.py",
    "tests/inference/test_amortized.py",
    "tests/inference/test_absences.py",
)


def pytest_collection_modifyitems(config, items):
    if not _selects_slow(config):
        return
    rank = {path: i for i, path in enumerate(_SLOW_TIER_LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable


# Every compiled XLA:CPU program holds about three memory mappings until JAX's caches drop it, and
# a process may hold vm.max_map_count (65,530 by default) of them: a slow-tier worker compiles
# ~20,000 programs in half an hour and crossed it — XLA then segfaults inside a compile (seen
# twice, in CI and here, in the same late test; that test passes alone). Between tests, a worker
# past half the budget drops the compiled programs (they recompile on demand).
_MAP_BUDGET = 32_000


def _mapped_regions():
    try:
        with open("/proc/self/maps") as maps:
            return sum(1 for _ in maps)
    except OSError:  # not Linux: no such limit to watch
        return 0


@pytest.fixture(autouse=True)
def _within_the_map_budget():
    yield
    if _mapped_regions() > _MAP_BUDGET:
        import gc

        import jax

        jax.clear_caches()
        gc.collect()


@pytest.fixture
def on_cpu_devices():
    """``run(script, devices, *args) -> dict``: run ``script`` in a fresh Python with ``devices``
    simulated CPU devices and parse the JSON object on its last line of output."""

    def run(script, devices, *args):
        env = dict(
            os.environ,
            XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
            JAX_PLATFORMS="cpu",
        )
        result = subprocess.run(
            [sys.executable, "-c", script, *args], capture_output=True, text=True, env=env
        )
        assert result.returncode == 0, result.stderr[-2000:]
        return json.loads(result.stdout.strip().splitlines()[-1])

    return run


@pytest.fixture
def killed_after_saves(monkeypatch):
    """``saves = killed_after_saves(k)``: from now on every checkpoint save is recorded (its
    progress appended to ``saves``) and the k-th save is followed by a KeyboardInterrupt — a run
    killed right after writing its k-th checkpoint. Later saves are recorded and pass."""
    from probinfer import checkpoint

    def arm(kill_at):
        saves, real_save = [], checkpoint.save

        def dying_save(*args):
            real_save(*args)
            saves.append(args[2])
            if len(saves) == kill_at:
                raise KeyboardInterrupt

        monkeypatch.setattr(checkpoint, "save", dying_save)
        return saves

    return arm
