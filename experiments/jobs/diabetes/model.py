"""A user's own model, as a job file names it (``model.py:regression``): Bayesian linear
regression of disease progression one year after baseline on ten baseline measurements
(Efron et al. 2004, the diabetes data bundled with scikit-learn, written to ``diabetes.csv``).
Features are standardised inside the model; Student-t noise makes it robust to outliers."""

import probinfer as pi
from probinfer import dist


def regression(x, y=None, prior_scale=1.0):
    """``x``: (N, 10) raw features; ``y``: (N,) disease progression."""
    x = (x - x.mean(0)) / x.std(0)
    intercept = pi.sample("intercept", dist.Normal(150.0, 100.0))
    beta = pi.sample("beta", dist.Normal(0.0, 25.0 * prior_scale).expand([x.shape[1]]).to_event(1))
    sigma = pi.sample("sigma", dist.HalfNormal(100.0))
    nu = pi.sample("nu", dist.Gamma(2.0, 0.1))
    with pi.plate("patients", x.shape[0]):
        pi.sample("y", dist.StudentT(nu, intercept + x @ beta, sigma), obs=y)
