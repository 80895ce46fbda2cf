"""Checkpoints: a long run is cut into jitted chunks, its state is saved atomically after each, and
a run started again on the same checkpoint resumes where the last one stopped — with the draws an
uninterrupted run gives (the randomness of every step depends on the step's index only, and the
chunks run the same compiled step).

``checkpoint=`` on every runner is a folder (the runner writes ``<folder>/<runner>.npz``) or,
for one file, a path ending in ``.npz``. A checkpoint written by other settings is refused with
the settings that differ; a finished run's checkpoint returns its result at once.

>>> state, outputs = run_chunks(advance, state, [100, 200, 300], path=path, fingerprint=settings)  # doctest: +SKIP
"""

import io
import json
import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

from probinfer._utils import atomic_write_bytes, read_npz
from probinfer.devices import to_host
from probinfer.errors import ProbinferError

__all__ = ["path_for", "check_writable", "fingerprint", "save", "load", "run_chunks", "boundaries"]


def path_for(checkpoint, runner):
    """The file of ``runner``'s checkpoint: None, ``checkpoint`` itself when it ends in ``.npz``,
    else ``<checkpoint>/<runner>.npz`` — its folder created and proven writable
    (:func:`check_writable`)."""
    if checkpoint is None:
        return None
    checkpoint = os.fspath(checkpoint)
    path = checkpoint if checkpoint.endswith(".npz") else os.path.join(checkpoint, f"{runner}.npz")
    check_writable(path)
    return path


def check_writable(path):
    """Create ``path``'s folder and prove a file can be written there, before any compute: a
    checkpoint that cannot be saved would otherwise fail after the first chunk (an hour in)."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probinfer-write-test-"):
            pass
    except OSError as error:
        raise ProbinferError(
            f"cannot write the checkpoint '{path}': {error.strerror or error} ('{folder}'); "
            "pass a checkpoint= folder you can write to."
        ) from None


def fingerprint(key, target=None, **settings):
    """The record a checkpoint must match to be resumed: the run's PRNG ``key`` (as its raw
    words), the Target's name and the digest of its data (when there is one:
    :meth:`~probinfer.Target.data_digest`, so a run on other data never resumes this one) and the
    run's ``settings``; every runner builds its record here.

    >>> fingerprint(jax.random.key(0), target, num_steps=1000)   # doctest: +SKIP
    {'key': [0, 0], 'target': 'eight_schools', 'data': '5b1e…', 'num_steps': 1000}
    """
    record = {"key": np.asarray(jax.random.key_data(key)).tolist()}
    if target is not None:
        record["target"] = target.name
        record["data"] = target.data_digest()
    return record | settings


def save(path, fingerprint, progress, state, outputs):
    """Write ``progress`` (an int), the leaves of ``state`` and the list ``outputs`` of arrays to
    ``path`` atomically (a reader sees the old file or the new one, never half of one). In a
    multi-process run every process calls it (the state is gathered from all) and process 0
    writes."""
    state = to_host(state)
    if jax.process_count() > 1:  # every process has read the old checkpoint before it changes
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("probinfer checkpoint")
        if jax.process_index() != 0:
            return
    buffer = io.BytesIO()
    np.savez(
        buffer,
        fingerprint=np.array(json.dumps(fingerprint, sort_keys=True, default=repr)),
        progress=np.array(progress),
        **{f"state_{i}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(state))},
        **{f"out_{i}": np.asarray(x) for i, x in enumerate(outputs)},
    )
    atomic_write_bytes(path, buffer.getvalue())


def load(path, fingerprint, state):
    """``(progress, state, outputs)`` from ``path``; ``state`` gives the pytree structure, and
    every saved leaf must have its shape and dtype. Refuses a checkpoint of a run with other
    settings, naming them, and a damaged or foreign file, naming it."""
    expected = json.loads(json.dumps(fingerprint, sort_keys=True, default=repr))
    fix = "delete it to start the run afresh"
    saved = read_npz(path, "probinfer checkpoint", fix)
    try:
        found = json.loads(str(saved["fingerprint"]))
        progress = int(saved["progress"])
    except (KeyError, ValueError, TypeError) as error:
        raise ProbinferError(
            f"checkpoint '{path}' lacks its run record ({type(error).__name__}: {error}); {fix}."
        ) from None
    if found != expected:
        changed = sorted(k for k in set(found) | set(expected) if found.get(k) != expected.get(k))
        raise ProbinferError(
            f"checkpoint '{path}' belongs to a different run (settings {changed} differ); "
            "delete it or pass another checkpoint path."
        )
    leaves, treedef = jax.tree.flatten(state)
    restored = []
    for i, leaf in enumerate(leaves):
        value = saved.get(f"state_{i}")
        # As save() wrote it: np.asarray of the leaf (a Python int is int64 there).
        dtype = leaf.dtype if hasattr(leaf, "dtype") else np.asarray(leaf).dtype
        want = (tuple(np.shape(leaf)), np.dtype(dtype))
        if value is None or (value.shape, value.dtype) != want:
            got = "missing" if value is None else f"{value.dtype}{list(value.shape)}"
            raise ProbinferError(
                f"checkpoint '{path}' does not fit this run: state leaf {i} is {got}, the run "
                f"needs {want[1]}{list(want[0])}; {fix}."
            )
        restored.append(jnp.asarray(value))
    names = sorted((k for k in saved if k.startswith("out_")), key=lambda k: int(k[4:]))
    outputs = [saved[k] for k in names]
    return progress, jax.tree.unflatten(treedef, restored), outputs


def boundaries(total, every, *, cuts=()):
    """Chunk ends ``[e_1, …, total]``: multiples of ``every`` plus the given ``cuts`` (phase
    changes a chunk must not straddle)."""
    ends = set(range(int(every), int(total), int(every))) | {int(c) for c in cuts} | {int(total)}
    return sorted(e for e in ends if 0 < e <= total)


def run_chunks(advance, state, ends, *, path=None, fingerprint=None, restore=None, done=None):
    """Run ``advance(state, start, stop) -> (state, outputs)`` over the chunks ending at
    ``ends``, saving after each when ``path`` is given, resuming from ``path`` when it exists.

    ``outputs`` is a list of arrays whose leading axis is per chunk (or ``[]`` for a chunk that
    produces nothing); the chunks' outputs are concatenated. ``restore(state) -> state`` places a
    loaded state (e.g. shards it); ``done(state) -> bool`` ends the run early (a loop whose
    length is not known in advance, such as SMC's temperatures). Returns ``(state, outputs)``.
    """
    start, outputs = 0, None
    if path is not None:
        check_writable(path)
    if path is not None and os.path.exists(path):
        start, state, outputs = load(path, fingerprint, state)
        state = state if restore is None else restore(state)
        outputs = outputs or None
    if done is not None and start and done(state):
        return state, outputs
    for stop in ends:
        if stop <= start:
            continue
        state, out = advance(state, start, stop)
        if out:  # a chunk may produce nothing (a warm-up phase)
            out = [to_host(x) for x in out]
            merged = zip(outputs, out, strict=True) if outputs is not None else None
            outputs = out if merged is None else [np.concatenate(p) for p in merged]
        start = stop
        if path is not None:
            save(path, fingerprint, start, state, outputs or [])
        if done is not None and done(state):
            break
    return state, outputs
