"""The training loop shared by PFNs and Distribution Transformers: Adam with linear warm-up and
cosine decay, gradients clipped at norm 1, jitted chunks of steps with a progress bar showing the
running loss, and checkpoints after every chunk (:mod:`probinfer.checkpoint`).

A step's randomness is ``fold_in(key, step)``, so a run resumed from a checkpoint continues on
the loss curve of an uninterrupted one.

>>> state, losses = run(step, state, key=key, num_steps=1000, every=100, desc="pfn")  # doctest: +SKIP
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from probinfer.checkpoint import boundaries, run_chunks
from probinfer.progress import should_show

__all__ = ["default_optimizer", "warmup_for", "chunk_size", "run"]


def warmup_for(warmup_steps, num_steps):
    """Warm-up steps: 5 % of the run when ``warmup_steps`` is None."""
    return int(0.05 * num_steps) if warmup_steps is None else int(warmup_steps)


def default_optimizer(learning_rate, warmup, num_steps):
    """Adam, linear warm-up to ``learning_rate`` over ``warmup`` steps, cosine decay to 1 % of it
    at ``num_steps``; gradients clipped at global norm 1."""
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, learning_rate, max(warmup, 1), max(num_steps, warmup + 2),
        end_value=0.01 * learning_rate,
    )  # fmt: skip
    return optax.chain(optax.clip_by_global_norm(1.0), optax.adam(schedule))


def chunk_size(checkpoint_every, num_steps):
    """Steps per jitted chunk (and between checkpoints)."""
    return max(1, min(int(checkpoint_every), int(num_steps)))


def run(step, state, *, key, num_steps, every, desc, progress="auto", path=None, fingerprint=None):
    """Run ``step(state, key) -> (state, loss)`` for ``num_steps`` steps in jitted chunks of
    ``every``; returns ``(state, losses (num_steps,))``. ``path``: checkpoint file (resumed when
    it exists)."""

    @jax.jit
    def chunk(state, positions):
        def body(state, i):
            new, loss = step(state, jax.random.fold_in(key, jnp.maximum(i, 0)))
            keep = i >= 0  # −1 pads the last chunk (one compiled program for every chunk)
            return jax.tree.map(lambda a, b: jnp.where(keep, a, b), new, state), loss

        return jax.lax.scan(body, state, positions)

    from tqdm.auto import tqdm

    bar = tqdm(total=num_steps, desc=desc, disable=not should_show(progress, num_steps),
               leave=False)  # fmt: skip

    def advance(state, start, stop):
        positions = np.full(every, -1, np.int32)
        positions[: stop - start] = np.arange(start, stop)
        state, losses = chunk(state, positions)
        losses = np.asarray(losses)[: stop - start]
        bar.update(stop - start)
        bar.set_postfix(loss=f"{losses.mean():.4f}")
        return state, [losses]

    with bar:
        state, (losses,) = run_chunks(
            advance, state, boundaries(num_steps, every), path=path, fingerprint=fingerprint
        )
    return state, losses
