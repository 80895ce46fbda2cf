"""How the estimator files under ``tests/data/formats/`` were made, and the models they need.

``v0/`` holds files written by the three *legacy* formats (before ``probinfer.nn.estimator``:
``AmortizedPosterior.save`` with meta format ``probinfer.amortized/1``, ``PFN.save`` with its
``header`` dict, ``DT.save`` with meta format ``probinfer.dt/1``), made by ``make`` below with the
working tree of the commit recorded in ``v0/expected.json`` (key ``"commit"``; jax in ``"jax"``),
before the one estimator format replaced them, so ``tests/test_estimator_files.py`` checks that
old files keep loading and predict what they did (``expected.json``: their outputs at the fixed
inputs below).

Re-running this script with the *current* code would write files in the current format: do not
overwrite ``v0/``. To make a new generation, pass another folder:

    python tests/data/formats/make_fixtures.py tests/data/formats/v1

``v1/`` holds files of the estimators that joined the one format later (``flow_vi``'s fitted flow
and ``amortized_vi``'s encoder), written in format version 1 by ``make_v1`` below: run

    python tests/data/formats/make_fixtures.py --v1 tests/data/formats/v1

Each file is tiny (a few tens of KB): the networks are as small as the code allows and trained
for a handful of steps. What they predict does not matter — only that it does not change.
"""

import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import probinfer as pi
from probinfer import dist

NUM_DATA = 5  # observations of the NPE model
DT_DATA = 6  # data points of the DT model


def normal_model(y=None):
    """The NPE fixture's model: one latent mean, ``NUM_DATA`` unit-variance observations."""
    mu = pi.sample("mu", dist.Normal(0.0, 1.0))
    with pi.plate("data", NUM_DATA):
        pi.sample("y", dist.Normal(mu, 1.0), obs=y)


def wide_model(y=None):
    """Another model with the same observed site but a 2-vector latent (a mismatch for the NPE
    fixture)."""
    mu = pi.sample("mu", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    with pi.plate("data", NUM_DATA):
        pi.sample("y", dist.Normal(mu.sum(), 1.0), obs=y)


def line(x=None, y=None):
    """The DT fixture's model: a 2-parameter line with observed covariates."""
    theta = pi.sample("theta", dist.Normal(0, 1).expand([2]).to_event(1))
    with pi.plate("data", DT_DATA):
        x = pi.sample("x", dist.Uniform(-1.0, 1.0), obs=x)
        pi.sample("y", dist.Normal(theta[0] + theta[1] * x, 0.5), obs=y)


def rows_model(x):
    """The encoder fixture's model: 2-vector rows x_i = w z_i + noise, one latent z_i per row."""
    w = pi.sample("w", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    with pi.plate("data", x.shape[0]):
        z = pi.sample("z", dist.Normal(0.0, 1.0))
        pi.sample("x", dist.Normal(z[:, None] * w, 0.5).to_event(1), obs=x)


NPE_DATA = {"y": jnp.zeros(NUM_DATA)}
# The data set the flow fixture is fitted to (exact binary fractions: the same bits everywhere).
FLOW_DATA = {"y": np.array([-0.5, 0.0, 0.5, 1.0, 1.5], np.float32)}
ROWS = np.stack([np.linspace(-1, 1, 8), np.linspace(1, -0.5, 8)], -1).astype(np.float32)
ROWS_Z = {"z": np.linspace(-1.5, 1.5, 3).astype(np.float32)}
DT_EXAMPLE = {"x": jnp.zeros(DT_DATA), "y": jnp.zeros(DT_DATA)}

# Fixed inputs at which each fixture's predictions are recorded.
NPE_X = {"y": np.linspace(-1.0, 2.0, NUM_DATA).astype(np.float32)}
NPE_THETA = {"mu": np.linspace(-2.0, 2.0, 7).astype(np.float32)}
PFN_X_TRAIN = np.linspace(0.05, 0.95, 6).astype(np.float32)[:, None]
PFN_Y_TRAIN = np.sin(6.0 * PFN_X_TRAIN[:, 0]).astype(np.float32)
PFN_X_TEST = np.linspace(0.0, 1.0, 5).astype(np.float32)[:, None]
DT_X = {
    "x": np.linspace(-0.9, 0.9, DT_DATA).astype(np.float32),
    "y": np.linspace(-0.5, 1.0, DT_DATA).astype(np.float32),
}
DT_THETA = np.stack([np.linspace(-1, 1, 6), np.linspace(1, -1, 6)], -1).astype(np.float32)


def dt_prior():
    """The fixed prior the DT fixture's predictions are recorded under."""
    return pi.dt.Mixture.gaussian(jnp.array([0.1, -0.2]), jnp.eye(2))


def npe_outputs(post):
    """What the NPE fixture predicts at the fixed inputs: log q(θ | x) and 3 draws (key 0)."""
    return {
        "log_prob": np.asarray(post.log_prob(NPE_THETA, NPE_X)).tolist(),
        "sample": np.asarray(post.sample(0, NPE_X, 3)["mu"]).tolist(),
    }


def pfn_outputs(pfn):
    """What the PFN fixture predicts: its logits at the fixed test inputs."""
    return {"logits": np.asarray(pfn.predict(PFN_X_TRAIN, PFN_Y_TRAIN, PFN_X_TEST).logits).tolist()}


def dt_outputs(dt):
    """What the DT fixture predicts: the posterior mixture's log density at fixed θ."""
    mixture = (
        dt.mixture(dt_prior(), DT_X) if hasattr(dt, "mixture") else dt.posterior(dt_prior(), DT_X)
    )
    return {"log_prob": np.asarray(mixture.log_prob(DT_THETA)).tolist()}


def flow_outputs(fitted):
    """What the flow fixture predicts: log q at fixed μ and 3 draws (key 0)."""
    return {
        "log_prob": np.asarray(fitted.log_prob(NPE_THETA)).tolist(),
        "sample": np.asarray(fitted.sample(0, None, 3)["mu"]).tolist(),
    }


def encoder_outputs(fitted):
    """What the encoder fixture predicts: the Gaussian encoder's mean and sd of z for three
    fixed rows, and log q(z | x) at fixed z."""
    mean, sd = fitted.encode(ROWS[:3])["z"]
    return {
        "mean": np.asarray(mean).tolist(),
        "sd": np.asarray(sd).tolist(),
        "log_prob": np.asarray(fitted.log_prob(ROWS_Z, ROWS[:3])).tolist(),
    }


def make_v1(folder):
    """The v1 generation: flow_vi's fitted flow and amortized_vi's encoder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    flow = pi.flow_vi(
        pi.compile(normal_model, **FLOW_DATA),
        key=0,
        flow="realnvp",
        num_layers=2,
        num_steps=20,
        num_draws=10,
        progress=False,
    ).estimator
    flow.save(folder / "flow_vi.msgpack")
    encoder = pi.amortized_vi(
        pi.compile(rows_model, ROWS, data=("x",)),
        key=0,
        local=("z",),
        encoder=(8,),
        num_steps=20,
        num_draws=5,
        progress=False,
    ).estimator
    encoder.save(folder / "amortized_vi.msgpack")
    _write_expected(
        folder, {"flow_vi": flow_outputs(flow), "amortized_vi": encoder_outputs(encoder)}
    )


def _write_expected(folder, outputs):
    commit = subprocess.run(
        ["git", "log", "-1", "--format=%H"], capture_output=True, text=True, check=False
    ).stdout.strip()
    expected = {"commit": commit, "jax": jax.__version__, **outputs}
    (folder / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    for name in outputs:
        print(name, (folder / f"{name}.msgpack").stat().st_size, "bytes")


def make(folder):
    from probinfer.inference.dt import DistributionTransformer
    from probinfer.inference.pfn import Transformer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    npe = pi.npe(
        normal_model,
        key=0,
        num_simulations=200,
        num_steps=50,
        batch_size=50,
        flow="realnvp",
        num_layers=2,
        weight_decay=0.0,
        progress=False,
        model_kwargs=NPE_DATA,
    )
    npe.save(folder / "npe.msgpack")
    pfn = pi.pfn.train(
        pi.pfn.GPPrior(),
        key=0,
        num_steps=2,
        batch_size=4,
        seq_len=20,
        network=Transformer(num_buckets=10, d_model=8, num_layers=1, num_heads=2, d_ff=16),
        progress=False,
    )
    pfn.save(folder / "pfn.msgpack")
    dt = pi.dt.train(
        line,
        key=0,
        num_steps=2,
        batch_size=4,
        network=DistributionTransformer(d_model=8, num_layers=1, num_heads=2),
        model_kwargs=DT_EXAMPLE,
        progress=False,
    )
    dt.save(folder / "dt.msgpack")
    commit = subprocess.run(
        ["git", "log", "-1", "--format=%H"], capture_output=True, text=True, check=False
    ).stdout.strip()
    expected = {
        "commit": commit,
        "jax": jax.__version__,
        "npe": npe_outputs(npe),
        "pfn": pfn_outputs(pfn),
        "dt": dt_outputs(dt),
    }
    (folder / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    for name in ("npe", "pfn", "dt"):
        print(name, (folder / f"{name}.msgpack").stat().st_size, "bytes")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--v1"]:
        make_v1(sys.argv[2] if len(sys.argv) > 2 else Path(__file__).parent / "v1")
    else:
        make(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "v0")
