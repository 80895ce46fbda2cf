"""Two-dimensional test energies and other classic hard geometries.

Rezende & Mohamed (2015), "Variational Inference with Normalizing Flows", Table 1: densities
``∝ exp(−U(z))`` with ``w₁ = sin(2π z₁/4)``, ``w₂ = 3 exp(−½((z₁−1)/0.6)²)``,
``w₃ = 3 σ((z₁−1)/0.3)``:

* U₁ = ½((‖z‖−2)/0.4)² − log[exp(−½((z₁−2)/0.6)²) + exp(−½((z₁+2)/0.6)²)]
* U₂ = ½((z₂−w₁)/0.4)²
* U₃ = −log[exp(−½((z₂−w₁)/0.35)²) + exp(−½((z₂−w₁+w₂)/0.35)²)]
* U₄ = −log[exp(−½((z₂−w₁)/0.4)²) + exp(−½((z₂−w₁+w₃)/0.35)²)]

As models they put an improper flat prior on ``z`` and the energy in a ``factor``. Also Neal's
funnel (Neal 2003, "Slice sampling"), the twisted-Gaussian banana (Haario et al. 1999) and a
well-separated Gaussian mixture — all proper, so they can be simulated.
"""

import jax
import jax.numpy as jnp
import numpy as np

from probinfer.language import constraints, dist, factor, sample
from probinfer.models._example import Example

__all__ = [
    "u1",
    "u2",
    "u3",
    "u4",
    "energy_model",
    "funnel",
    "banana",
    "gaussian_mixture",
    "funnel_example",
    "banana_example",
    "gaussian_mixture_example",
    "rezende_example_u1",
    "rezende_example_u2",
    "rezende_example_u3",
    "rezende_example_u4",
]


def _w1(z):
    return jnp.sin(2.0 * jnp.pi * z[..., 0] / 4.0)


def _w2(z):
    return 3.0 * jnp.exp(-0.5 * ((z[..., 0] - 1.0) / 0.6) ** 2)


def _w3(z):
    return 3.0 * jax.nn.sigmoid((z[..., 0] - 1.0) / 0.3)


def u1(z):
    """Rezende U₁ (ring with two lobes); ``z``: (..., 2) → (...)."""
    norm = jnp.linalg.norm(z, axis=-1)
    lobes = jnp.logaddexp(
        -0.5 * ((z[..., 0] - 2.0) / 0.6) ** 2, -0.5 * ((z[..., 0] + 2.0) / 0.6) ** 2
    )
    return 0.5 * ((norm - 2.0) / 0.4) ** 2 - lobes


def u2(z):
    """Rezende U₂ (sine wave); improper along z₁, so use it with a bounded flow or prior."""
    return 0.5 * ((z[..., 1] - _w1(z)) / 0.4) ** 2


def u3(z):
    """Rezende U₃ (split sine wave)."""
    return -jnp.logaddexp(
        -0.5 * ((z[..., 1] - _w1(z)) / 0.35) ** 2,
        -0.5 * ((z[..., 1] - _w1(z) + _w2(z)) / 0.35) ** 2,
    )


def u4(z):
    """Rezende U₄ (sine wave with a step)."""
    return -jnp.logaddexp(
        -0.5 * ((z[..., 1] - _w1(z)) / 0.4) ** 2, -0.5 * ((z[..., 1] - _w1(z) + _w3(z)) / 0.35) ** 2
    )


def energy_model(energy, bound=None):
    """A model with a flat prior on ``z`` (2,) and ``factor("energy", −U(z))``: improper by
    default; with ``bound``, uniform on the box [−bound, bound]² (U2–U4 do not confine z₁, so
    only the boxed versions are proper — the flows paper shows them on [−4, 4]²)."""

    def model():
        if bound is None:
            z = sample("z", dist.ImproperUniform(constraints.real_vector, (), (2,)))
        else:
            z = sample("z", dist.Uniform(-bound, bound).expand([2]).to_event(1))
        factor("energy", -energy(z))

    model.__name__ = f"energy_{energy.__name__}"
    return model


def funnel(dim=10):
    """Neal's funnel: ``v ~ N(0, 3²)``, ``x_i ~ N(0, exp(v/2)²)`` for i < dim − 1."""
    v = sample("v", dist.Normal(0.0, 3.0))
    sample("x", dist.Normal(0.0, jnp.exp(v / 2.0)).expand([dim - 1]).to_event(1))


def banana(curvature=0.1, scale=10.0):
    """Twisted Gaussian: ``z₁ ~ N(0, scale)`` (variance), ``z₂ ~ N(b z₁² − b·scale, 1)``."""
    z1 = sample("z1", dist.Normal(0.0, np.sqrt(scale)))
    sample("z2", dist.Normal(curvature * z1**2 - curvature * scale, 1.0))


def gaussian_mixture(weights=(0.3, 0.7), means=((-4.0, -4.0), (4.0, 4.0)), sd=1.0):
    """Mixture of isotropic Gaussians in 2-D with the given weights and means (separated modes)."""
    means = jnp.asarray(means)
    components = dist.Normal(means, sd).to_event(1)
    sample("z", dist.MixtureSameFamily(dist.Categorical(probs=jnp.asarray(weights)), components))


def funnel_example():
    """Neal's funnel in 10 dimensions."""
    return Example("funnel", funnel, description="Neal's funnel, 10 dims")


def banana_example():
    """The twisted-Gaussian banana."""
    return Example("banana", banana, description="twisted Gaussian banana, 2 dims")


def gaussian_mixture_example():
    """Two well-separated modes with weights 0.3 / 0.7."""
    return Example(
        "gaussian_mixture", gaussian_mixture, description="two-mode Gaussian mixture, 2 dims"
    )


def _rezende(index, energy):
    def example():
        return Example(
            f"rezende_u{index}",
            energy_model(energy),
            description=f"Rezende & Mohamed energy U{index} (improper prior)",
        )

    example.__doc__ = f"Rezende & Mohamed's U{index} as a model with a flat prior."
    return example


rezende_example_u1 = _rezende(1, u1)
rezende_example_u2 = _rezende(2, u2)
rezende_example_u3 = _rezende(3, u3)
rezende_example_u4 = _rezende(4, u4)
