"""L-C2ST (probinfer.local_c2st) on the normal mean, where the exact posterior is known: the exact
posterior passes at data sets it was not trained on, a posterior shifted by one posterior sd is
rejected at every one, and bad settings get one sentence before any training."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import probinfer as pi
from probinfer import DataError, ProbinferError, dist
from probinfer.models.conjugate import normal_normal_posterior

NUM_DATA = 5
SETTINGS = dict(num_simulations=2000, num_null=50, num_steps=1000)


def normal_model(y=None):
    mu = pi.sample("mu", dist.Normal(0.0, 1.0))
    with pi.plate("data", NUM_DATA):
        pi.sample("y", dist.Normal(mu, 1.0), obs=y)


class Conjugate:
    """The exact posterior of ``normal_model`` with its mean moved by ``shift`` posterior sds:
    an estimator with a batched ``sample`` like NPE's."""

    def __init__(self, target, shift=0.0):
        self.target, self.shift, self.settings = target, shift, {}

    def sample(self, key, x, n):
        y = np.asarray(x["y"])
        mean, sd = normal_normal_posterior(np.atleast_2d(y))
        mean = np.broadcast_to(mean, (np.atleast_2d(y).shape[0],))
        noise = np.asarray(jax.random.normal(key, (mean.size, n)))
        mu = (mean + self.shift * sd)[:, None] + sd * noise
        return {"mu": mu if y.ndim == 2 else mu[0]}


@pytest.fixture(scope="module")
def target():
    return pi.compile(normal_model, y=jnp.zeros(NUM_DATA))


@pytest.fixture(scope="module")
def observations(target):
    return target.simulate(jax.random.key(5), 5)[1]["y"]


@pytest.mark.slow
def test_the_exact_posterior_passes_at_new_data(target, observations):
    # Five independent checks (their own classifiers), one data set each: under the null each
    # p-value is uniform on {1/51, …, 1}, so Fisher's −2 Σ log p is at most a χ²₁₀ (discrete
    # p-values only make it smaller); its 0.999 quantile bounds it. The first comes through
    # calibrate(local_c2st=), which tests at the data the model was compiled with.
    estimator = Conjugate(target)
    check = pi.local_c2st(estimator, key=0, **SETTINGS)
    calibration = pi.calibrate(
        normal_model, estimator, key=0, num_sims=20, num_draws=50, local_c2st=check,
        progress=False, model_kwargs={"y": observations[0]},
    )  # fmt: skip
    assert "at the model's data — no local difference" in calibration.verdict()
    assert "cannot reject at this level" in calibration.verdict()  # 50 permutations: blind
    p = [calibration.local.p_value] + [
        pi.local_c2st(Conjugate(target), key=seed, **SETTINGS)
        .test({"y": observations[seed]}, key=seed).p_value
        for seed in range(1, 5)
    ]  # fmt: skip
    assert -2 * np.sum(np.log(p)) < stats.chi2(10).ppf(0.999), p


@pytest.mark.slow
def test_a_posterior_one_sd_off_is_rejected_at_every_data_set(target, observations):
    # 200 permutation classifiers: calibrate tests at level 0.05 / 4 = 0.0125 (Bonferroni), which
    # 50 cannot reach (their smallest p-value is 1/51); measured p = 0.005-0.02 at these data.
    check = pi.local_c2st(Conjugate(target, shift=1.0), key=0, **(SETTINGS | {"num_null": 200}))
    results = [check.test({"y": y}, key=i) for i, y in enumerate(observations)]
    assert all(r.rejected() for r in results), [r.p_value for r in results]
    assert "differs from the posterior" in results[0].verdict()
    assert results[0].probabilities.shape == (1000,) and results[0].null.shape == (200,)
    with pytest.raises(DataError, match="trained on 5"):
        check.test({"y": jnp.zeros(3)}, key=0)
    # in calibrate's verdict: one more check, and it fails (at the second data set: the first's
    # p-value, 0.02, sits at the Bonferroni level)
    calibration = pi.calibrate(
        normal_model, check.estimator, key=0, num_sims=20, num_draws=50, local_c2st=check,
        progress=False, model_kwargs={"y": observations[1]},
    )  # fmt: skip
    assert calibration.local.rejected() and not calibration.is_calibrated()
    assert "at the model's data — q(θ | x) differs" in calibration.verdict()


def test_bad_settings_are_refused_before_training(target):
    with pytest.raises(DataError, match="num_simulations ≥ 100"):
        pi.local_c2st(Conjugate(target), key=0, num_simulations=10)
    focused = Conjugate(target)
    focused.settings = {"observed": {"y": np.zeros(NUM_DATA)}}
    with pytest.raises(DataError, match="one data set"):
        pi.local_c2st(focused, key=0)


def test_calibrate_refuses_a_local_check_it_cannot_run(target):
    kwargs = dict(key=0, num_sims=4, progress=False, model_kwargs={"y": jnp.zeros(NUM_DATA)})
    with pytest.raises(ProbinferError, match="hmc is not one"):
        pi.calibrate(normal_model, "hmc", local_c2st=True, **kwargs)
    with pytest.raises(ProbinferError, match="local_c2st checks an amortized"):
        pi.calibrate(normal_model, Conjugate(target), local_c2st=True, **kwargs)  # no method
    with pytest.raises(ProbinferError, match="trained for this very estimator"):
        pi.calibrate(normal_model, Conjugate(target), local_c2st=object(), **kwargs)
