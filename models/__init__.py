"""The model zoo: models with exact answers and classic test problems.

Each entry is an :class:`Example` (model + data + which arguments are data), so
``probinfer.models.get("eight_schools").compile()`` gives a ready Target. The conjugate models come
with exact posteriors and exact log evidences, which is how samplers are tested.

>>> from probinfer import models
>>> sorted(models.ZOO)[:3]
['banana', 'beta_binomial', 'eight_schools']
"""

from probinfer.models import (
    bnn,
    conjugate,
    eight_schools,
    energies,
    logistic_regression,
    sbi,
    sparse,
    state_space,
    volatility,
)
from probinfer.models._example import Example

__all__ = [
    "Example",
    "ZOO",
    "get",
    "bnn",
    "conjugate",
    "eight_schools",
    "energies",
    "logistic_regression",
    "sbi",
    "sparse",
    "state_space",
    "volatility",
]

ZOO = {
    "eight_schools": eight_schools.example_noncentered,
    "eight_schools_centered": eight_schools.example_centered,
    "normal_normal": conjugate.normal_normal_example,
    "beta_binomial": conjugate.beta_binomial_example,
    "linear_regression": conjugate.linear_regression_example,
    "logistic_regression": logistic_regression.breast_cancer_example,
    "digits_bnn": bnn.digits_example,
    "item_response": sparse.item_response_example,
    "random_effects_logistic": sparse.random_effects_example,
    "stochastic_volatility": volatility.example,
    "funnel": energies.funnel_example,
    "banana": energies.banana_example,
    "gaussian_mixture": energies.gaussian_mixture_example,
    "rezende_u1": energies.rezende_example_u1,
    "rezende_u2": energies.rezende_example_u2,
    "rezende_u3": energies.rezende_example_u3,
    "rezende_u4": energies.rezende_example_u4,
    "sbi_gaussian_linear": sbi.gaussian_linear_example,
    "sbi_slcp": sbi.slcp_example,
    "sbi_two_moons": sbi.two_moons_example,
}


def get(name):
    """The zoo :class:`Example` called ``name`` (see ``ZOO`` for the names)."""
    if name not in ZOO:
        raise KeyError(f"no model '{name}' in the zoo; choose one of {sorted(ZOO)}.")
    return ZOO[name]()
