"""The on-disk compilation cache (probinfer.caching): each check in its own process, since JAX's
cache settings are process-wide."""

import os
import subprocess
import sys

_PROGRAM = """
import sys
from pathlib import Path

import jax
import jax.numpy as jnp

from probinfer import caching

caching.MIN_COMPILE_SECONDS = 0.0  # cache even this tiny program
folder = caching.enable_compilation_cache(sys.argv[1])
assert folder == Path(sys.argv[1]), folder
assert jax.config.jax_compilation_cache_dir == sys.argv[1]
jax.jit(lambda x: jnp.sin(x) @ x.T + 1.0)(jnp.ones((3, 3))).block_until_ready()
"""


def _run(code, *args, **env):
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_compiled_program_is_written_for_the_next_process(tmp_path):
    done = _run(_PROGRAM, str(tmp_path / "xla"))
    assert done.returncode == 0, done.stderr
    assert any((tmp_path / "xla").iterdir())  # the program's cache entry


def test_a_cache_folder_the_user_set_is_left_alone(tmp_path):
    code = (
        "import jax\nfrom probinfer import caching\n"
        "print(caching.enable_compilation_cache('elsewhere'), jax.config.jax_compilation_cache_dir)"
    )
    done = _run(code, JAX_COMPILATION_CACHE_DIR=str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(tmp_path), str(tmp_path)]


def test_the_command_line_default_reads_the_environment(monkeypatch, tmp_path):
    from probinfer import caching

    for value, expected in [("0", False), ("false", False), ("off", False), ("1", True)]:
        monkeypatch.setenv("PROBINFER_COMPILATION_CACHE", value)
        assert caching.enabled_by_environment() is expected
    monkeypatch.setenv("PROBINFER_CACHE_DIR", str(tmp_path))
    assert caching.default_cache_dir() == tmp_path
