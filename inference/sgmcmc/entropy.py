"""Entropy-MCMC — Li & Zhang (2023), "Entropy-MCMC: Sampling from Flat Basins with Ease".

The joint ``p(θ, θ_a) ∝ exp(−U(θ) − ‖θ − θ_a‖² / (2η))`` has the posterior as its θ-marginal and
the posterior smoothed by ``N(0, ηI)`` as its θ_a-marginal, which favours flat basins. The kernel
runs its base kernel (SGLD by default, as in the paper) on the pair, with gradients
``∇_θ = ĝ(θ) − (θ − θ_a)/η`` and ``∇_θa = (θ − θ_a)/η``. The runner returns θ as the draws and
θ_a as ``diagnostics["anchor_draws"]``; predict with both (:func:`probinfer.predict`,
``anchors=True``).

>>> post = pi.sgmcmc(target, key=0, kernel=entropy(coupling=1e-3))   # doctest: +SKIP
"""

import jax.numpy as jnp

from probinfer.errors import ProbinferError
from probinfer.inference.sgmcmc import kernels as _kernels

__all__ = ["entropy"]


def entropy(coupling=1.0, kernel="sgld"):
    """Entropy-MCMC with coupling η (> 0) on top of ``kernel`` (a first- or second-order kernel
    without a preconditioner, SGLD by default as in the paper). Default step size:
    0.1 min(σ²_min, η)."""
    if not coupling > 0:
        raise ProbinferError(f"coupling (η of Entropy-MCMC) must be positive, got {coupling}.")
    base = _kernels.get(kernel)
    if dict(base.settings).get("preconditioner") is not None or base.name in ("structured",):
        raise ProbinferError(
            "Entropy-MCMC's base kernel acts on the pair (θ, θ_a): use a plain sgld, sghmc, "
            "sgnht or psgld, without a preconditioner."
        )

    def step(key, state, grad_fn, step_size, params, noise=None):
        pair = state.position
        pull = (pair["theta"] - pair["anchor"]) / params["coupling"]
        grad = {"theta": grad_fn(pair["theta"]) - pull, "anchor": pull}
        return base.step(key, state, lambda _: grad, step_size, params["base"], noise)

    def outputs(paths):
        return paths["theta"], {"anchor_draws": paths["anchor"]}

    return _kernels.SGKernel(
        name="entropy",
        init=lambda z: base.init({"theta": z, "anchor": z}),
        step=step,
        params={"base": base.params, "coupling": jnp.asarray(coupling, jnp.float32)},
        static=("entropy", base.static),
        default_step_size=lambda geometry: 0.1 * min(geometry.min_variance, float(coupling)),
        settings=(("base", base.name), *base.settings, ("coupling", float(coupling))),
        outputs=outputs,
    )
