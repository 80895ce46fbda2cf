"""Bad input at the entry points that had no such test (issue 34): each gets one sentence that
names what is wrong, raised before any compute, never a traceback from inside NumPy, XLA or
scikit-learn. Cheap by construction: nothing here trains or samples for long."""

import jax.numpy as jnp
import numpy as np
import pytest

import probinfer as pi
from probinfer import DataError, ModelError, ProbinferError, dist
from probinfer.cli import main
from probinfer.diagnostics import c2st
from probinfer.errors import DiscreteLatentError
from probinfer.inference.calibration import sbc
from probinfer.inference.smc import pmmh
from probinfer.models import conjugate
from probinfer.models.state_space import LinearGaussian
from probinfer.ssm import state_space

_LG = LinearGaussian.default()
_, _Y = _LG.simulate(0, 20)


def _pmmh(**kwargs):
    settings = dict(key=0, init=jnp.zeros(1), num_draws=10, num_warmup=5, num_particles=10)
    settings.update(kwargs)
    return pmmh(lambda theta: _LG.feynman_kac(), lambda theta: jnp.sum(-(theta**2)), _Y, **settings)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_draws": 0}, "num_draws and num_chains must be ≥ 1"),
        ({"num_chains": 0}, "num_draws and num_chains must be ≥ 1"),
        ({"resampling": "stratifed"}, "resampling must be one of"),
        ({"target_accept": 1.5}, "target_accept must lie in"),
        ({"init": jnp.zeros((2, 2))}, "init must be one starting point"),
        ({"scale": -0.1}, "scale must be positive"),
    ],
)
def test_pmmh_settings(kwargs, message):
    with pytest.raises(ProbinferError, match=message):
        _pmmh(**kwargs)


def _initial():
    return pi.sample("x", dist.Normal(0.0, 1.0))


def _transition(x, t):
    return pi.sample("x", dist.Normal(0.9 * x, 0.5))


def _observation(x, t, y):
    pi.sample("y", dist.Normal(x, 1.0), obs=y)


def test_state_space_models_with_the_wrong_sites_are_named():
    def two_states():
        pi.sample("a", dist.Normal(0.0, 1.0))
        return pi.sample("b", dist.Normal(0.0, 1.0))

    with pytest.raises(
        ModelError, match=r"initial model must have exactly one latent.*\['a', 'b'\]"
    ):
        state_space(two_states, _transition, _observation)

    def unobserved(x, t, y):
        pi.sample("y", dist.Normal(x, 1.0))

    ssm = state_space(_initial, _transition, unobserved)
    with pytest.raises(ModelError, match="observation model must have exactly one observed"):
        pi.inference.smc.particle_filter(ssm, jnp.zeros(5), key=0, num_particles=10)

    def wider(x, t):
        return pi.sample("x", dist.Normal(0.9 * x, 0.5).expand([2]))

    with pytest.raises(
        ModelError, match=r"transition model's state has shape \(2,\).*initial.*\(\)"
    ):
        state_space(_initial, wider, _observation)

    def wrong_arguments(x):
        return pi.sample("x", dist.Normal(x, 1.0))

    with pytest.raises(ModelError, match=r"transition model.*\(x_prev, t\)"):
        state_space(_initial, wrong_arguments, _observation)


@pytest.mark.parametrize("rate", [0.0, -0.1, float("nan"), "fast"])
def test_svgd_learning_rate(rate):
    target = conjugate.normal_normal_example().compile()
    with pytest.raises(ProbinferError, match="learning_rate must be a positive number"):
        pi.svgd(target, key=0, learning_rate=rate, num_steps=5)


def _line(x=None, y=None):
    theta = pi.sample("theta", dist.Normal(0, 1).expand([2]).to_event(1))
    with pi.plate("data", 5):
        x = pi.sample("x", dist.Uniform(-1.0, 1.0), obs=x)
        pi.sample("y", dist.Normal(theta[0] + theta[1] * x, 0.5), obs=y)


_LINE_DATA = {"x": jnp.zeros(5), "y": jnp.zeros(5)}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_steps": 0}, "num_steps and batch_size must be ≥ 1"),
        ({"learning_rate": -1e-3}, "learning_rate must be a positive number"),
        ({"model_kwargs": {"x": jnp.zeros(5), "z": jnp.zeros(5)}}, "do not fit _line"),
    ],
)
def test_dt_train_settings(kwargs, message):
    settings = dict(key=0, num_steps=2, batch_size=2, model_kwargs=_LINE_DATA, progress=False)
    settings.update(kwargs)
    with pytest.raises(ProbinferError, match=message):
        pi.dt.train(_line, **settings)


def test_dt_train_refuses_a_discrete_latent():
    def discrete(y=None):
        k = pi.sample("k", dist.Bernoulli(0.5))
        pi.sample("y", dist.Normal(k, 1.0), obs=y)

    with pytest.raises(DiscreteLatentError, match="'k'"):
        pi.dt.train(discrete, key=0, num_steps=2, model_kwargs={"y": 0.0}, progress=False)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"seq_len": 1}, "seq_len ≥ 2"),
        ({"learning_rate": 0.0}, "learning_rate must be a positive number"),
        ({"split": "middle"}, "split"),
    ],
)
def test_pfn_train_settings(kwargs, message):
    settings = dict(key=0, num_steps=1, batch_size=2, seq_len=10, progress=False)
    settings.update(kwargs)
    with pytest.raises(ProbinferError, match=message):
        pi.pfn.train(pi.pfn.GPPrior(), **settings)


def test_pfn_train_names_a_prior_that_is_not_one():
    with pytest.raises(ProbinferError, match=r"prior must be a PFN prior.*sample\(key, num_sets"):
        pi.pfn.train(_line, key=0, num_steps=1, batch_size=2, seq_len=10, progress=False)


@pytest.mark.parametrize(
    "samples, theta, kwargs, message",
    [
        (np.zeros((10, 4)), np.zeros((4, 1)), {}, "samples must be 3-D"),
        (np.zeros((10, 4, 2)), np.zeros((5, 2)), {}, "theta has shape"),
        (np.full((10, 4, 1), np.nan), np.zeros((4, 1)), {}, "NaN or infinite values"),
        (np.zeros((10, 40, 1)), np.zeros((40, 1)), {"num_bins": 1}, "num_bins must be"),
        (np.zeros((10, 40, 1)), np.zeros((40, 1)), {"layout": "rows"}, "layout must be"),
    ],
)
def test_sbc_input(samples, theta, kwargs, message):
    with pytest.raises(DataError, match=message):
        sbc(samples, theta, key=0, **kwargs)


@pytest.mark.parametrize(
    "x, y, kwargs, message",
    [
        (np.zeros((20, 2)), np.zeros((20, 3)), {}, r"x has 2 dimensions and y 3"),
        (np.full((20, 2), np.nan), np.zeros((20, 2)), {}, "x has 40 entries that are not finite"),
        (np.zeros((3, 2)), np.zeros((20, 2)), {}, "at least 5 points"),
        (np.zeros((20, 2)), np.zeros((20, 2)), {"folds": 1}, "folds must be"),
    ],
)
def test_c2st_input(x, y, kwargs, message):
    with pytest.raises(DataError, match=message):
        c2st(x, y, key=0, **kwargs)


def test_predict_names_wrong_data_keys_and_shapes():
    example = conjugate.linear_regression_example()
    target = example.compile()
    post = pi.Posterior({"w": np.zeros((1, 4, 3), np.float32)}, method="exact")
    x, y = np.zeros((6, 3), np.float32), np.zeros(6, np.float32)
    with pytest.raises(
        DataError,
        match=r"\['X'\] are not arguments of 'linear_regression' \(its arguments are \['x', 'y'",
    ):
        pi.predict(target, post, {"X": x, "y": y})
    with pytest.raises(DataError, match=r"'x'.*shape \(6, 4\).*\(N, 3\)"):
        pi.predict(target, post, {"x": np.zeros((6, 4), np.float32), "y": y})
    with pytest.raises(DataError, match=r"'y' has 5 rows and 'x' 6"):
        pi.predict(target, post, {"x": x, "y": y[:5]})
    with pytest.raises(DataError, match="site 'z' is not an observed site"):
        pi.predict(target, post, {"x": x, "y": y}, site="z")


@pytest.mark.parametrize(
    "args, message",
    [
        (["calibrate", "nope"], "no model 'nope' in the zoo"),
        (["calibrate", "normal_normal", "--method", "hmcc"], "did you mean 'hmc'"),
        (["calibrate", "normal_normal", "--sims", "1"], "--sims must be at least 2"),
        (["calibrate", "normal_normal", "--samples", "0"], "--samples must be at least 2"),
        (["calibrate", "normal_normal", "--warmup", "-5"], "--warmup must be ≥ 0"),
    ],
)
def test_cli_calibrate_bad_arguments(args, message, capsys, tmp_path):
    assert main([*args, "--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("runner", ["mcmc", "smc", "sgmcmc", "coin_svgd"])
def test_a_checkpoint_that_cannot_be_written_is_refused_before_any_compute(tmp_path, runner):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    target = conjugate.normal_normal_example().compile()
    with pytest.raises(ProbinferError, match=r"cannot write the checkpoint .*a_file"):
        getattr(pi, runner)(target, key=0, checkpoint=blocker / "ckpt", progress=False)
