"""The calibration pipeline: exact, wrong and prior-returning estimators; every way to run a method."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import probinfer as pi
from probinfer import DataError, DiscreteLatentError, ProbinferError, dist
from probinfer.models import conjugate


@pytest.fixture(scope="module")
def target():
    return conjugate.normal_normal_example(num_data=10).compile()


class Exact:
    """The exact normal–normal posterior of μ given y, scaled in width and shifted."""

    def __init__(self, width=1.0, shift=0.0):
        self.width, self.shift = width, shift

    def sample(self, key, x, n):
        mean, sd = _posterior(x["y"])
        return {"mu": mean + self.shift + self.width * sd * jax.random.normal(key, (n,))}


def _posterior(y):
    precision = 1.0 + y.shape[0]
    return y.sum() / precision, 1.0 / jnp.sqrt(precision)


class Prior:
    def sample(self, key, x, n):
        return jax.random.normal(key, (n, 1))


def test_exact_posterior_is_judged_calibrated(target):
    result = pi.calibrate(target, Exact(), num_sims=300, num_draws=200, key=0)
    assert result.samples.shape == (200, 300, 1) and result.theta.shape == (300, 1)
    assert result.names == ["mu"]
    assert result.is_calibrated(), result.verdict()
    assert "calibrated at level" in result.verdict()


@pytest.mark.parametrize(
    ("estimator", "label"),
    [
        (Exact(width=0.5), "over-confident"),
        (Exact(width=2.0), "under-confident"),
        (Exact(shift=0.3), "biased"),
    ],
)
def test_wrong_estimators_are_flagged(target, estimator, label):
    result = pi.calibrate(target, estimator, num_sims=300, num_draws=200, key=0)
    assert not result.is_calibrated()
    assert result.tarp.diagnosis()[0] == label, result.verdict()


def test_prior_estimator_passes_random_references_only(target):
    result = pi.calibrate(target, Prior(), num_sims=300, num_draws=200, key=0)
    assert result.tarp_random.diagnosis()[0] == "calibrated"
    assert result.tarp.diagnosis()[0] != "calibrated"
    assert not result.is_calibrated()


def test_registered_runner_is_vmapped_over_simulations(target, tmp_path):
    result = pi.calibrate(
        target,
        "hmc",
        num_sims=12,
        num_draws=40,
        key=1,
        block_size=5,
        method_kwargs={"num_warmup": 100, "num_chains": 2},
    )
    assert result.samples.shape == (40, 12, 1)
    # Every simulation's draws sit at its own exact posterior (blocks and padding kept in order).
    mean, sd = jax.vmap(_posterior)(jnp.asarray(result.observations["y"]))
    # Standard errors from the chains' own ESS: the draws are pooled chain by chain (2 × 20
    # each), and every simulation runs the same sampler on a Gaussian of its own mean and sd,
    # so the standardised chains of all 12 share one autocorrelation: ArviZ's bulk ESS over the
    # 24 chains, divided by 12, is each simulation's ESS.
    u = (result.samples[:, :, 0] - np.asarray(mean)) / np.asarray(sd)  # (40, 12)
    chains = u.reshape(2, 20, 12).transpose(0, 2, 1).reshape(24, 20, 1)
    ess = float(pi.diagnostics.chain_diagnostics(chains)[1][0]) / 12
    z = u.mean(0) * np.sqrt(ess)
    # max of 12 |z| under 4: a false alarm about once in 1,300 runs (normal tails).
    assert np.abs(z).max() < 4.0, (z, ess)
    paths = result.save(tmp_path)
    assert (tmp_path / "calibration.png").stat().st_size > 0
    assert "hmc on 12 simulated data sets" in Path(paths["verdict"]).read_text()


@pytest.mark.slow
def test_smc_is_vmapped_over_simulations(target):
    result = pi.calibrate(
        target,
        "smc",
        num_sims=6,
        num_draws=50,
        key=2,
        method_kwargs={"num_particles": 200, "num_mcmc_steps": 3},
    )
    mean, sd = jax.vmap(_posterior)(jnp.asarray(result.observations["y"]))
    # Resampled particles repeat: judge against an ESS of a quarter of the draws.
    z = (result.samples[:, :, 0].mean(0) - mean) / (sd / np.sqrt(50 / 4))
    assert np.abs(z).max() < 4.0, z


@pytest.mark.slow
def test_draws_follow_each_simulated_data_set(target):
    """A uniform-signature runner gets the conditioned target: its draws track that data set."""

    def runner(conditioned, *, key):
        # Exact posterior of the data set the pipeline conditioned on, via the target itself.
        y = np.asarray(conditioned.data["y"])
        mean, sd = _posterior(jnp.asarray(y))
        draws = mean + sd * np.random.default_rng(int(key[-1])).normal(size=(1, 500))
        return pi.Posterior({"mu": draws}, method="exact")

    result = pi.calibrate(target, runner, num_sims=200, num_draws=100, key=3)
    assert result.method == "runner"
    assert result.is_calibrated(), result.verdict()


@pytest.mark.slow
def test_non_traceable_estimator_falls_back_to_a_loop(target):
    class NumpyExact:
        def sample(self, key, x, n):
            y = np.asarray(x["y"])  # not traceable: forces one simulation at a time
            mean, sd = _posterior(jnp.asarray(y))
            return np.asarray(mean + sd * jax.random.normal(key, (n, 1)))

    result = pi.calibrate(target, NumpyExact(), num_sims=100, num_draws=50, key=4)
    assert result.samples.shape == (50, 100, 1)
    assert result.is_calibrated(), result.verdict()


@pytest.mark.slow
def test_calibrate_from_a_model_function_and_a_zoo_name():
    def model(y=None):
        mu = pi.sample("mu", dist.Normal(0.0, 1.0))
        with pi.plate("data", 10):
            pi.sample("y", dist.Normal(mu, 1.0), obs=y)

    result = pi.calibrate(
        model, Exact(), num_sims=50, num_draws=20, key=0, model_kwargs={"y": jnp.zeros(10)}
    )
    assert result.theta.shape == (50, 1)
    result = pi.calibrate("normal_normal", Exact(), num_sims=20, num_draws=20, key=0)
    assert result.theta.shape == (20, 1)


def test_bad_input(target):
    with pytest.raises(ProbinferError, match="num_sims"):
        pi.calibrate(target, Exact(), num_sims=1, key=0)
    with pytest.raises(ProbinferError, match="unknown method"):
        pi.calibrate(target, "no-such-method", num_sims=10, key=0)
    with pytest.raises(ProbinferError, match="method must be"):
        pi.calibrate(target, 3, num_sims=10, key=0)

    def discrete():
        pi.sample("k", dist.Poisson(3.0))

    with pytest.raises(DiscreteLatentError, match="'k'"):
        pi.calibrate(discrete, Exact(), num_sims=10, key=0)


def test_condition_replaces_observations(target):
    y = jnp.linspace(-1.0, 1.0, 10)
    conditioned = target.condition({"y": y})
    direct = conjugate.normal_normal_example(num_data=10).model
    reference = pi.compile(direct, y=y, data=("y",))
    z = jnp.array([0.3])
    np.testing.assert_allclose(conditioned.log_density(z), reference.log_density(z), rtol=1e-6)
    # The data argument is replaced too, so minibatches see the new data.
    np.testing.assert_allclose(conditioned.batch(jnp.arange(3))["y"], y[:3])
    with pytest.raises(DataError, match="shape"):
        target.condition({"y": jnp.zeros(3)})
    with pytest.raises(DataError, match="not observed sites"):
        target.condition({"mu": jnp.zeros(())})


@pytest.mark.slow  # 30-40 s; the default tier stays under 15 minutes
def test_method_settings_travel_in_method_kwargs_and_unknown_ones_are_refused(target):
    with pytest.raises(pi.ProbinferError, match="unknown SMC setting"):
        pi.calibrate(target, "smc", key=0, num_sims=2, method_kwargs={"num_particle": 10})
    result = pi.calibrate(target, Exact(), key=0, num_sims=20, num_draws=20, bootstrap=10)
    assert result.settings["method_kwargs"] == {}
    with pytest.raises(TypeError, match="method_kwargs"):  # keywords were 0.1's spelling
        pi.calibrate(target, "hmc", key=0, num_sims=2, num_draws=4, num_warmup=20, num_chains=2)


def test_settings_an_estimator_cannot_take_are_refused_before_any_run(target):
    """An NPE-like estimator's sample(key, x, n) takes no settings: method_kwargs meant for a
    runner are refused in one sentence, not swallowed."""
    with pytest.raises(pi.ProbinferError, match="takes no such settings"):
        pi.calibrate(target, Exact(), key=0, num_sims=4, method_kwargs={"num_particles": 10})


def test_a_failed_smc_run_inside_calibrate_is_reported_not_hidden():
    """A model whose likelihood is impossible for every prior particle: smc_draws returns NaN
    draws for that simulation and calibrate names the failure."""

    def model(y=None):
        mu = pi.sample("mu", dist.Normal(0.0, 1.0))
        pi.factor("wall", jnp.where(mu > 50.0, 0.0, -jnp.inf))
        pi.sample("y", dist.Normal(mu, 1.0), obs=y)

    target = pi.compile(model, y=jnp.zeros(()))
    with pytest.raises(pi.NonFiniteError, match="smc returned non-finite draws for 3 of 3"):
        pi.calibrate(
            target, "smc", key=0, num_sims=3, num_draws=5, method_kwargs={"num_particles": 50}
        )


@pytest.mark.slow
def test_simulations_spread_over_devices_give_the_one_device_draws(on_cpu_devices):
    """Blocks of 8 simulations on 4 simulated CPU devices: each simulation is computed alone, so
    the exact estimator's draws and the MAP references match one device to float rounding."""
    import textwrap

    script = textwrap.dedent(
        """
        import json
        import jax, jax.numpy as jnp
        import numpy as np
        import probinfer as pi
        from probinfer.models import conjugate

        class Exact:
            def sample(self, key, x, n):
                y = x["y"]
                precision = 1.0 + y.shape[0]
                mean = jnp.sum(y) / precision
                return {"mu": mean + jax.random.normal(key, (n,)) / jnp.sqrt(precision)}

        target = conjugate.normal_normal_example(num_data=10).compile()
        out = {}
        for label, devices in [("sharded", None), ("single", 1)]:
            result = pi.calibrate(target, Exact(), key=0, num_sims=16, num_draws=20,
                                  block_size=8, bootstrap=10, devices=devices)
            out[label] = {"samples": result.samples.tolist(),
                          "devices": result.settings["devices"],
                          "ecp": result.tarp.ecp.tolist()}
        print(json.dumps(out))
        """
    )
    runs = on_cpu_devices(script, 4)
    assert runs["sharded"]["devices"] == 4 and runs["single"]["devices"] == 1
    np.testing.assert_allclose(runs["sharded"]["samples"], runs["single"]["samples"], rtol=1e-5)
    np.testing.assert_allclose(runs["sharded"]["ecp"], runs["single"]["ecp"], atol=1 / 16)


def test_an_estimator_error_is_raised_not_taken_for_untraceable_code(target):
    """Only JAX's tracing errors send calibrate to the one-simulation-at-a-time loop; an
    estimator's own TypeError reaches the user from its first call."""
    calls = []

    class Broken:
        def sample(self, key, x, n):
            calls.append(1)
            raise TypeError("estimator bug")

    with pytest.raises(TypeError, match="estimator bug"):
        pi.calibrate(target, Broken(), num_sims=20, num_draws=10, key=0)
    assert len(calls) == 1
