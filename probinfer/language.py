"""The model language: NumPyro's primitives under probinfer's name.

Every NumPyro model is a probinfer model. Users write ``pi.sample``, ``pi.plate``, ``pi.param``,
``pi.deterministic`` and ``pi.factor`` and take distributions from ``probinfer.dist``
(``numpyro.distributions``).

>>> import probinfer as pi
>>> from probinfer import dist
>>> def model(y=None):
...     mu = pi.sample("mu", dist.Normal(0.0, 1.0))
...     with pi.plate("data", 3):
...         pi.sample("y", dist.Normal(mu, 1.0), obs=y)
"""

import numpyro.distributions as dist
from numpyro.distributions import constraints
from numpyro.primitives import deterministic, factor, param, plate, sample

__all__ = ["sample", "plate", "param", "deterministic", "factor", "dist", "constraints"]
