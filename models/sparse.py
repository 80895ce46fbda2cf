"""Many parameters, each informed by little of the data: the high-dimensional models of issue 36.

Two classic shapes of "sparse-data" posterior, with simulated data (fixed seeds) so the size can
be chosen:

* **item response** (a Rasch model): ``μ ~ N(0, 2²)``, person abilities ``θ_p ~ N(0, 1)``, item
  difficulties ``b_i ~ N(0, 1)``, answers ``y ~ Bernoulli(σ(μ + θ_p − b_i))``. The default, 400
  persons × 100 items with 30,000 answers (75 per person: 0.25 % of the data), has 501 latents.
* **random-effects logistic regression**: coefficients ``w ~ N(0, 1)`` on 5 covariates, an
  intercept ``μ ~ N(0, 2²)``, a group scale ``τ ~ HalfNormal(1)`` and non-centred group effects
  ``u_g ~ N(0, 1)`` (the group's intercept ``μ + τ u_g``); 500 groups of 40 rows, 507 latents.

Every latent of the group / person kind is informed by a few dozen of tens of thousands of rows,
so a minibatch gradient of it is mostly noise: the case SG-MCMC's defaults must survive. NUTS
finds these posteriors easy (the references are long NUTS runs: ``experiments/bench/scale.py``).
"""

import numpy as np

from probinfer.language import dist, plate, sample
from probinfer.models._example import Example

__all__ = [
    "item_response",
    "item_response_example",
    "random_effects_logistic",
    "random_effects_example",
]


def item_response(person, item, y=None, *, num_persons, num_items):
    """Rasch model. ``person``, ``item``: (N,) int indices; ``y``: (N,) answers in {0, 1}."""
    mu = sample("mu", dist.Normal(0.0, 2.0))
    ability = sample("ability", dist.Normal(0.0, 1.0).expand([num_persons]).to_event(1))
    difficulty = sample("difficulty", dist.Normal(0.0, 1.0).expand([num_items]).to_event(1))
    with plate("data", person.shape[0]):
        logits = mu + ability[person] - difficulty[item]
        sample("y", dist.Bernoulli(logits=logits), obs=y)


def item_response_example(num_persons=400, num_items=100, num_answers=30_000, seed=0):
    """Simulated answers: abilities and difficulties drawn from their priors, μ = 0.5; each
    answer pairs a uniformly drawn person with a uniformly drawn item."""
    rng = np.random.default_rng(seed)
    ability = rng.normal(size=num_persons)
    difficulty = rng.normal(size=num_items)
    person = rng.integers(0, num_persons, num_answers).astype(np.int32)
    item = rng.integers(0, num_items, num_answers).astype(np.int32)
    logits = 0.5 + ability[person] - difficulty[item]
    y = (rng.uniform(size=num_answers) < 1 / (1 + np.exp(-logits))).astype(np.float32)
    return Example(
        "item_response",
        item_response,
        (person, item),
        {"y": y, "num_persons": num_persons, "num_items": num_items},
        data=("person", "item", "y"),
        description=f"Rasch item response, {num_persons} persons × {num_items} items "
        f"({num_persons + num_items + 1} dims, {num_answers} answers)",
    )


def random_effects_logistic(x, group, y=None, *, num_groups):
    """``x``: (N, D) covariates; ``group``: (N,) int group of each row; ``y``: (N,) in {0, 1}."""
    w = sample("w", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    mu = sample("mu", dist.Normal(0.0, 2.0))
    tau = sample("tau", dist.HalfNormal(1.0))
    u = sample("u", dist.Normal(0.0, 1.0).expand([num_groups]).to_event(1))
    with plate("data", x.shape[0]):
        logits = x @ w + mu + tau * u[group]
        sample("y", dist.Bernoulli(logits=logits), obs=y)


def random_effects_example(num_groups=500, rows_per_group=40, num_covariates=5, seed=0):
    """Simulated rows: standard-normal covariates, w ~ N(0, 0.5²), μ = −0.3, τ = 0.8."""
    rng = np.random.default_rng(seed)
    n = num_groups * rows_per_group
    x = rng.normal(size=(n, num_covariates)).astype(np.float32)
    group = np.repeat(np.arange(num_groups), rows_per_group).astype(np.int32)
    w = 0.5 * rng.normal(size=num_covariates)
    u = rng.normal(size=num_groups)
    logits = x @ w - 0.3 + 0.8 * u[group]
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-logits))).astype(np.float32)
    return Example(
        "random_effects_logistic",
        random_effects_logistic,
        (x, group),
        {"y": y, "num_groups": num_groups},
        data=("x", "group", "y"),
        description=f"random-effects logistic regression, {num_groups} groups "
        f"({num_groups + num_covariates + 2} dims, {n} rows)",
    )
