"""Shared test helpers."""

import json
import os
import subprocess
import sys

import pytest


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
