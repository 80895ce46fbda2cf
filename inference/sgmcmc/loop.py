"""The jitted SGMCMC loop: chains vmapped inside a top-level ``lax.scan`` over blocks of
``thinning`` steps (one stored position per block, so memory is ``num_steps / thinning`` draws),
chains sharded over the devices, a progress bar, and checkpoint/resume.

Every step's randomness is ``fold_in(chain_key, step)``, so a run cut into segments — to write a
checkpoint between them, or resumed from one — gives the same draws as one uninterrupted run.

>>> outputs, state = run_blocks(step, states, chain_keys, step_sizes, thinning=10)  # doctest: +SKIP
"""

from functools import partial

import jax
import jax.numpy as jnp

from probinfer.checkpoint import boundaries, run_chunks
from probinfer.devices import shard_leading
from probinfer.inference.sgmcmc.kernels import tree_normal
from probinfer.programs import cached_program
from probinfer.progress import ProgressBar

__all__ = ["run_blocks"]


def _build_segment(target, step, observe, **static):
    """The jitted ``segment(states, blocks, chain_keys, step_sizes, params)`` and its bar; every
    array reaches it as an argument (the target's data too: :meth:`Target.jit`), so one compiled
    program serves every call with the same static settings, on any target of the model. The
    progress bar is restarted by each run; the callback advances it."""
    bar = ProgressBar(static["num_blocks"], "sgmcmc", enabled=False)
    return target.jit(lambda t: _segment(partial(step, t), observe, bar, **static)), bar


def _segment(step, observe, bar, *, thinning, num_steps, num_blocks, bulk, progress):
    def segment(states, blocks, chain_keys, step_sizes, params):
        def block(states, b):
            def draw(key, state):
                noise_key = jax.random.fold_in(jax.random.fold_in(key, 2**31 - 1), b)
                return tree_normal(noise_key, observe(state), (thinning,))

            noise = jax.vmap(draw)(chain_keys, states) if bulk else None

            def one_step(states, inputs):
                j, noise = inputs
                t = b * thinning + j
                epsilon = step_sizes[jnp.minimum(t, num_steps - 1)]

                def one_chain(key, state, noise):
                    new = step(jax.random.fold_in(key, t), state, t, epsilon, noise, params)
                    # The last block may run past num_steps: those steps leave the state alone.
                    return jax.tree.map(lambda a, c: jnp.where(t < num_steps, a, c), new, state)

                return jax.vmap(one_chain)(chain_keys, states, noise), None

            steps_noise = (
                None if noise is None else jax.tree.map(lambda e: jnp.swapaxes(e, 0, 1), noise)
            )
            states, _ = jax.lax.scan(one_step, states, (jnp.arange(thinning), steps_noise))
            if progress:
                every = max(1, num_blocks // 100)
                hit = ((b + 1) % every == 0) | (b == num_blocks - 1)
                jax.lax.cond(
                    hit,
                    lambda: jax.debug.callback(bar.update, b),
                    lambda: None,
                )
            return states, jax.vmap(observe)(states)

        return jax.lax.scan(block, states, blocks)

    return segment


def run_blocks(
    step,
    states,
    chain_keys,
    step_sizes,
    *,
    target,
    thinning,
    observe,
    params=None,
    cache=None,
    progress=False,
    checkpoint=None,
    checkpoint_every=None,
    fingerprint=None,
    devices=None,
):
    """Run ``len(step_sizes)`` steps of every chain.

    Args:
        step: ``(target, key, state, t, ε, noise, params) -> state`` for one chain (t the step
            number, noise standard normal shaped like ``observe(state)`` or None: draw it from
            key); it reads the data only through the ``target`` it is given.
        states: the chains' states, leading axis ``num_chains``.
        chain_keys: ``(num_chains,)`` PRNG keys.
        step_sizes: ``(num_steps,)`` host array, ε of every step.
        target: the Target the chains sample (its data are an argument of the program).
        thinning: steps per block; one output per block.
        observe: ``state -> pytree`` stored at the end of every block.
        params: a pytree of arrays ``step`` reads (passed to the compiled program as an argument).
        cache: a hashable key — reuse the program compiled for the target's model (any target
            :meth:`~probinfer.Target.condition` made from it) and this key; ``step`` and
            ``observe`` must then read nothing else but ``params`` and the target (the first
            call's closures are the ones compiled). None: compile afresh.
        progress: True (a bar, one tick per block), ``"log"`` (a heartbeat line a minute once
            the run passes a minute: off a terminal) or False.
        checkpoint: path of the ``.npz`` checkpoint file (:mod:`probinfer.checkpoint`), written
            atomically every ``checkpoint_every`` blocks; a run started with an existing
            checkpoint of the same ``fingerprint`` resumes from it.
        devices: where the chains run (:mod:`probinfer.devices`); chains never interact, so
            sharding them changes where they run, not the draws.

    Returns:
        ``(outputs, states)``: outputs is ``observe``'s pytree with leading axes
        ``(num_blocks, num_chains)``.
    """
    num_steps = len(step_sizes)
    num_blocks = -(-num_steps // thinning)
    step_sizes = jnp.asarray(step_sizes)
    # The kernels' Gaussian noise for a whole block is drawn at once (much cheaper per number on
    # a CPU) unless that block of noise would be large.
    size = sum(x.size for x in jax.tree.leaves(jax.eval_shape(jax.vmap(observe), states)))
    static = dict(
        thinning=thinning,
        num_steps=num_steps,
        num_blocks=num_blocks,
        bulk=thinning * size <= 2**24,
        progress=bool(progress),
    )
    if cache is None:
        segment, bar = _build_segment(target, step, observe, **static)
    else:
        segment, bar = cached_program(
            target,
            ("sgmcmc", cache, tuple(sorted(static.items()))),
            lambda: _build_segment(target, step, observe, **static),
            share=True,
        )
    bar.restart(bool(progress), log_only=progress == "log")

    states = shard_leading(states, devices)
    chain_keys = shard_leading(chain_keys, devices)
    every = num_blocks if checkpoint is None else int(checkpoint_every or max(1, num_blocks // 10))
    treedef = jax.tree.structure(jax.eval_shape(jax.vmap(observe), states))

    def advance(states, start, stop):
        states, out = segment(states, jnp.arange(start, stop), chain_keys, step_sizes, params)
        return states, jax.tree.leaves(out)

    states, outputs = run_chunks(
        advance,
        states,
        boundaries(num_blocks, every),
        path=checkpoint,
        fingerprint=fingerprint,
        restore=lambda states: shard_leading(states, devices),
    )
    return jax.tree.unflatten(treedef, outputs), states
