"""The No-U-Turn Sampler, driven through NumPyro's functional HMC API (not rewritten here).

Hoffman & Gelman (2014), "The No-U-Turn Sampler", with the multinomial trajectory sampling and
generalised U-turn criterion of Betancourt (2017), as NumPyro implements them
(``numpyro.infer.hmc.hmc(potential_fn, algo="NUTS")``). Warm-up is NumPyro's Stan-style windowed
adaptation: dual averaging of the step size towards ``target_accept`` and a diagonal (or dense)
inverse mass matrix from the chain's own draws, reset at the end of each doubling window.

NUTS keeps its step size, mass matrix and adaptation inside its own state, so it drives
:func:`probinfer.mcmc` only; SMC and PMMH take the fixed-length kernels (``hmc``, ``mala``,
``rwm``). :func:`program` builds the five pure pieces ``mcmc``'s runner chunks, checkpoints and
vmaps — ``start``, ``warmup``, ``sample``, ``step_size``, ``position`` — with chains vmapped (each chain's
tree is built in lock-step with the others; the longest tree of a step sets its cost).

>>> post = pi.mcmc(target, key=0)                                            # doctest: +SKIP
>>> post = pi.mcmc(target, key=0, kernel=pi.kernels.nuts(dense_mass=True))  # doctest: +SKIP
"""

import jax
import jax.numpy as jnp
from numpyro.infer.hmc import hmc as _numpyro_hmc

from probinfer.errors import ProbinferError

__all__ = ["program", "not_a_transition", "tree_depth", "initial_step_size"]


def initial_step_size(dim):
    """NumPyro's starting step (1.0); its warm-up finds the scale within the first windows."""
    del dim
    return 1.0


def not_a_transition(*_, **__):
    """NUTS has no ``(key, state, log_density_fn, step_size, inverse_mass) -> state`` form."""
    raise ProbinferError(
        "the NUTS kernel adapts inside its own warm-up and drives pi.mcmc only; SMC and PMMH "
        "move particles with kernel='hmc' (fixed trajectory length), 'mala' or 'rwm'."
    )


def tree_depth(num_integration_steps):
    """Depth of the binary tree NUTS built: ``⌈log2(L + 1)⌉`` for ``L`` leapfrog steps."""
    return jnp.ceil(jnp.log2(num_integration_steps + 1.0)).astype(jnp.int32)


def program(target, *, num_chains, num_warmup, step_size, target_accept, thinning, options, bars):
    """``(start, warmup, sample, step_size)`` for ``num_chains`` vmapped NUTS chains.

    ``start(positions (num_chains, dim)) -> state`` (NumPyro's ``HMCState``, chains first);
    ``warmup(state, steps, keys, collect, window_end) -> state`` and ``sample(state, steps, keys)
    -> (state, trace)`` advance by ``len(steps)`` transitions (``keys``, ``collect`` and
    ``window_end`` are unused: the keys and the adaptation schedule live in NumPyro's state, so
    chunked runs equal whole ones). trace = (positions, log density, acceptance, divergent,
    leapfrog steps, Hamiltonian energy), one row per kept draw.
    """
    options = dict(options)
    init_kernel, sample_kernel = _numpyro_hmc(
        potential_fn=lambda z: -target.log_density(z), algo="NUTS"
    )
    warmup_bar, sample_bar = bars

    def start(positions, key):
        def one(position, key):
            return init_kernel(
                position,
                num_warmup,
                step_size=step_size,
                target_accept_prob=target_accept,
                dense_mass=options["dense_mass"],
                max_tree_depth=options["max_tree_depth"],
                rng_key=key,
            )

        return jax.vmap(one)(positions, jax.random.split(key, num_chains))

    # NumPyro's init_kernel stores the sampler's configuration (tree depth, the adaptation
    # update) in closure variables its sample_kernel reads: run it abstractly now, so each piece
    # works when it is compiled on its own (Target.jit builds the pieces afresh per trace).
    jax.eval_shape(start, jnp.zeros((num_chains, target.dim), target.dtype), jax.random.PRNGKey(0))

    def transitions(state, steps, bar):
        def body(state, i):
            bar.tick(i)
            state = jax.vmap(sample_kernel)(state)
            return state, (
                state.z,
                -state.potential_energy,
                state.accept_prob,
                state.diverging,
                state.num_steps,
                state.energy,
            )

        return jax.lax.scan(body, state, steps)

    def warmup(state, steps, keys, collect, window_end):
        del keys, collect, window_end
        return transitions(state, steps, warmup_bar)[0]

    def sample(state, steps, keys):
        del keys
        state, trace = transitions(state, steps, sample_bar)
        return state, jax.tree.map(lambda x: x[thinning - 1 :: thinning], trace)

    def final_step_size(state):
        return state.adapt_state.step_size

    def position(state):
        return state.z, -state.potential_energy

    return start, warmup, sample, final_step_size, position
