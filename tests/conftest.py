"""Shared test helpers."""

import json
import os
import subprocess
import sys

import pytest

# The suite runs in two worker processes (pyproject's addopts): on a GPU each would otherwise
# reserve 75 % of the device's memory at start-up.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")


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
