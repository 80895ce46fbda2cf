"""Starting points on the unconstrained space: prior draws or Stan's uniform(−2, 2) box, redrawn
until the log density and its gradient are finite; a user's ``init`` (a strategy name, a dict of
constrained values or ``z``) checked. :class:`~probinfer.Target` exposes each as a method
(``target.init(key, n)``).

>>> z = init(target, key, 4, strategy="uniform")   # doctest: +SKIP
"""

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions.transforms import biject_to

from probinfer._utils import as_key
from probinfer.errors import DataError, NonFiniteError
from probinfer.tracing import improper_init_fn

__all__ = ["INIT_STRATEGIES", "INIT_RADIUS", "draw_z", "init_fn", "init", "starting_points"]

#: Named starting-point strategies (``init="uniform"`` / ``init="prior"`` on the runners).
INIT_STRATEGIES = ("uniform", "prior")
#: Half-width of ``"uniform"`` starts on the unconstrained space (Stan's ``init_radius``).
INIT_RADIUS = 2.0


def _check_strategy(strategy):
    if strategy not in INIT_STRATEGIES:
        raise DataError(
            f"unknown starting-point strategy '{strategy}'; use one of "
            f"{[*INIT_STRATEGIES, 'pathfinder']}."
        )


def draw_z(target, key, strategy="prior"):
    """One unchecked starting point on the unconstrained space, ``(dim,)``; :func:`init`
    keeps only finite ones.

    ``strategy="prior"``: a prior draw (uniform on (−2, 2) for improper sites);
    ``"uniform"``: every coordinate uniform on (−2, 2) — Stan's and NumPyro's default
    (``init_to_uniform``), which keeps chains out of a heavy-tailed prior's far tails.
    """
    _check_strategy(strategy)
    if strategy == "uniform":
        return jax.random.uniform(key, (target.dim,), target.dtype, -INIT_RADIUS, INIT_RADIUS)
    tr = target._trace(key, substitute_fn=improper_init_fn)
    free = {k: biject_to(tr[k]["fn"].support).inv(tr[k]["value"]) for k in target.latent_sites}
    return target.ravel(free)


def init_fn(target, key, n, max_tries=100, strategy="prior"):
    """Pure, jittable core of :func:`init`: returns ``(z (n, dim), ok (n,))``."""
    target.check_continuous()

    def valid(z):
        value, grad = jax.value_and_grad(target.log_density)(z)
        return jnp.isfinite(value) & jnp.all(jnp.isfinite(grad))

    def one(key):
        def cond(state):
            tries, _, _, ok = state
            return (~ok) & (tries < max_tries)

        def body(state):
            tries, key, _, _ = state
            key, sub = jax.random.split(key)
            z = draw_z(target, sub, strategy)
            return tries + 1, key, z, valid(z)

        z0 = jnp.zeros((target.dim,), target.dtype)
        _, _, z, ok = jax.lax.while_loop(cond, body, (0, key, z0, jnp.array(False)))
        return z, ok

    return jax.vmap(one)(jax.random.split(key, n))


def init(target, key, n, max_tries=100, strategy="prior"):
    """``n`` starting points ``(n, dim)`` with finite density and gradient.

    Each point is drawn by ``strategy`` (:func:`draw_z`: ``"prior"`` draws, or ``"uniform"``
    on (−2, 2) in unconstrained space); a point whose log density or gradient is not finite
    is redrawn, up to ``max_tries`` times, so heavy-tailed priors (Cauchy) cannot break
    initialisation. Raises :class:`~probinfer.errors.NonFiniteError` naming the offending
    site otherwise.
    """
    _check_strategy(strategy)  # before compiling
    program = getattr(target.program_key, "init", None)
    if program is None:  # one compiled program per model, conditioned targets included
        program = target.program_key.init = target.jit(
            lambda t: t.init_fn, static_argnums=(1, 2, 3)
        )
    z, ok = program.bind(target)(as_key(key), int(n), int(max_tries), strategy)
    ok = np.asarray(ok)
    if not ok.all():
        bad = int(np.argmin(ok))
        raise NonFiniteError(
            f"No finite log density (or gradient) for point {bad} of '{target.name}' after "
            f"{max_tries} {strategy} draws; {target.explain_nonfinite(z[bad])}"
        )
    return z


def starting_points(target, value, n, *, key=None, default="prior"):
    """``(n, dim)`` starting points, checked. ``value`` (a runner's ``init``) is a strategy name
    (``"uniform"``, ``"prior"``: :func:`init`; ``"pathfinder"``: draws of multi-path Pathfinder,
    :func:`probinfer.pathfinder.pathfinder_starts`), None for the runner's ``default`` strategy, a
    dict of constrained site values (each ``site_shape`` or ``(n, *site_shape)``) or
    unconstrained ``z`` (``(dim,)`` or ``(n, dim)``)."""
    if value is None:
        value = default
    if isinstance(value, str) and value == "pathfinder":  # runs on the host: not traceable
        from probinfer.pathfinder import pathfinder_starts

        return pathfinder_starts(target, as_key(0 if key is None else key), n)
    if isinstance(value, str):
        return init(target, key, n, strategy=value)
    if isinstance(value, dict):
        missing = set(target.latent_sites) - set(value)
        if missing:
            raise DataError(f"init lacks latent site(s) {sorted(missing)} of '{target.name}'.")
        z = target.unconstrain({k: jnp.asarray(value[k]) for k in target.latent_sites})
    else:
        z = jnp.asarray(value, target.dtype)
    z = jnp.broadcast_to(z, (n, target.dim)) if z.shape == (target.dim,) else z
    if z.shape != (n, target.dim) or not bool(jnp.all(jnp.isfinite(z))):
        raise DataError(
            f"init gives starting points of shape {z.shape}; need finite ({target.dim},) or "
            f"({n}, {target.dim}) unconstrained values, a dict of constrained site values, or "
            f"a strategy name ({', '.join(map(repr, (*INIT_STRATEGIES, 'pathfinder')))})."
        )
    return z
