"""Compiled programs kept on disk between processes (JAX's persistent compilation cache).

Every runner is one or a few jitted programs, and on a CPU compiling them is most of a short
run: a first ``pi.npe`` at 1,000 simulations spends about 20 of its 29 seconds in XLA. Within a
process the programs are cached already (by shape: a second call compiles nothing); across
processes — the ``probinfer`` command, a job rerun, a benchmark — only a disk cache helps:
measured on a 2-core CPU, a fresh process's ``pi.npe`` (1,000 simulations) took 29 s without
it and 11 s with a warm cache (tracing, short programs and the training itself remain).

The ``probinfer`` command turns it on (``PROBINFER_COMPILATION_CACHE=0`` turns it off); in
your own scripts call :func:`enable_compilation_cache` once, before the first run.
"""

import os
from pathlib import Path

import jax

# Programs that compile faster than this are not written (JAX's own default is 1 s; most of a
# runner's compile time is in a handful of programs of 1-10 s, and a disk entry per tiny
# eager op costs more than it saves).
MIN_COMPILE_SECONDS = 0.5


def default_cache_dir():
    """``$PROBINFER_CACHE_DIR``, else ``$XDG_CACHE_HOME/probinfer/xla``, else
    ``~/.cache/probinfer/xla``."""
    if os.environ.get("PROBINFER_CACHE_DIR"):
        return Path(os.environ["PROBINFER_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "probinfer" / "xla"


def enable_compilation_cache(path=None):
    """Keep compiled XLA programs in ``path`` so later processes skip compiling them.

    JAX's persistent compilation cache (``jax_compilation_cache_dir``): an entry is keyed by
    the program, its shapes, the backend and the JAX/XLA versions, so a stale entry is never
    used — another version or device compiles afresh. A cache directory you set yourself
    (``JAX_COMPILATION_CACHE_DIR`` or ``jax.config``) is left as it is.

    Args:
        path: folder for the cache; None for :func:`default_cache_dir`.

    Returns:
        The cache folder in use (a ``Path``), or None when the cache could not be created (a
        read-only home: compilation then simply happens every time).

    Example:
        >>> import probinfer as pi
        >>> pi.enable_compilation_cache()   # doctest: +SKIP
    """
    current = jax.config.jax_compilation_cache_dir
    if current:
        return Path(current)
    folder = Path(path) if path is not None else default_cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    return folder


def enabled_by_environment():
    """The command line's default: on unless ``PROBINFER_COMPILATION_CACHE`` is 0/false/no."""
    value = os.environ.get("PROBINFER_COMPILATION_CACHE", "1").strip().lower()
    return value not in ("0", "false", "no", "off")
