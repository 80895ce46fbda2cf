"""DESIGN's calling convention, read off the signatures: every registered runner (and every
family's other public runners) spells one idea one way."""

import inspect

import pytest

import probinfer as pi
from probinfer import runners
from probinfer._utils import RENAMED
from probinfer.inference.smc import particle_filter, pbnn_smc, pmmh

# DESIGN's table: the retired spelling and the word that replaced it.
RETIRED = {
    "init_positions": "init",
    "burn_in": "num_warmup",
    "shard": "devices",
    "resampling_scheme": "resampling",
    "base": "kernel",
    "num_points": "n",
    "num_samples": "num_draws (chains) or n (sampling functions)",
    "method": "kernel",
}
# batch_size means data points per minibatch; runners that have no data minibatches must not
# take it (particles or simulations per block are block_size).
MINIBATCHING = {"sgmcmc", "coin_svgd", "coin_ksdd", "svgd", "flow_vi"}
# Particle variational methods have no Markov transition (their RKHS kernel is stein_kernel).
PARTICLE_VI = {"coin_svgd", "coin_ksdd", "svgd"}
# Variational runners fit a distribution by optimisation: no Markov transition either.
VARIATIONAL = {"flow_vi"}
# Pathfinder fits Gaussians along optimisation paths: neither a transition nor a flow.
PATHS = {"pathfinder"}
OTHER_RUNNERS = {"pmmh": pmmh, "particle_filter": particle_filter, "pbnn_smc": pbnn_smc}


def _parameters(fn):
    return inspect.signature(fn).parameters


@pytest.mark.parametrize("name", runners.names())
def test_registered_runner_follows_the_calling_convention(name):
    runner, draws = runners.get(name)
    params = _parameters(runner)
    first = next(iter(params.values()))
    assert first.name == "target" and first.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    key = params["key"]
    assert key.kind is inspect.Parameter.KEYWORD_ONLY and key.default is inspect.Parameter.empty
    assert params["progress"].default == "auto"
    assert params["devices"].default is None
    if name in PARTICLE_VI:
        assert "kernel" not in params and params["stein_kernel"].default in ("rbf", "imq")
    elif name in VARIATIONAL:
        assert "kernel" not in params and "flow" in params
    elif name in PATHS:
        assert "kernel" not in params and "num_paths" in params
    else:
        assert "kernel" in params  # the transition, by name or object
    for old, new in RETIRED.items():
        assert old not in params, f"{name} takes {old}=; DESIGN calls it {new}="
    if name not in MINIBATCHING:
        assert "batch_size" not in params, f"{name}: batch_size is for data minibatches only"
    if "num_chains" in params:
        assert "num_draws" in params or name in MINIBATCHING  # SG-MCMC keeps num_steps/thinning
    if draws is not None:
        assert list(_parameters(draws))[:3] == ["target", "key", "n"]


@pytest.mark.parametrize("name", sorted(OTHER_RUNNERS))
def test_other_runners_take_key_progress_and_the_table_words(name):
    params = _parameters(OTHER_RUNNERS[name])
    assert params["key"].kind is inspect.Parameter.KEYWORD_ONLY
    assert params["key"].default is inspect.Parameter.empty
    assert params["progress"].default == "auto"
    for old in RETIRED:
        assert old not in params, f"{name} takes {old}="


def test_sampling_functions_take_n_and_calibrate_takes_method_kwargs():
    for fn in (pi.Target.init, pi.Target.sample_prior, pi.Target.simulate, pi.Posterior.sample):
        assert "n" in _parameters(fn), fn
    params = _parameters(pi.calibrate)
    assert params["key"].default is inspect.Parameter.empty
    assert {"method_kwargs", "num_draws", "block_size", "progress"} <= set(params)


RENAMED_IN = {
    "mcmc": pi.mcmc,
    "smc": pi.smc,
    "sgmcmc": pi.sgmcmc,
    "pmmh": pmmh,
    "particle_filter": particle_filter,
    "calibrate": pi.calibrate,
    "Target.init": pi.Target.init,
    "Target.sample_prior": pi.Target.sample_prior,
    "Target.simulate": pi.Target.simulate,
}


@pytest.mark.parametrize(
    ("where", "old"),
    [(where, old) for where, table in RENAMED.items() for old in table if old != "*"],
)
def test_a_spelling_removed_in_0_2_is_a_type_error_naming_its_replacement(where, old):
    """0.1 took these keywords with a DeprecationWarning; 0.2.0 refuses them before anything
    runs, with Python's TypeError and the new spelling (``probinfer._utils.RENAMED``)."""
    with pytest.raises(TypeError) as info:
        RENAMED_IN[where](None, key=0, **{old: 1})
    message = str(info.value)
    assert f"{where}() got an unexpected keyword argument '{old}'" in message
    assert f"(0.2.0 replaced it with {RENAMED[where][old]})" in message
    assert old not in _parameters(RENAMED_IN[where])


def test_calibrate_says_method_settings_go_in_method_kwargs_and_other_typos_stay_plain():
    with pytest.raises(TypeError, match=r"'num_warmup' \(0.2.0 replaced it with method_kwargs"):
        pi.calibrate(None, key=0, num_warmup=10)
    with pytest.raises(TypeError, match=r"got an unexpected keyword argument 'num_chain'$"):
        pi.mcmc(None, key=0, num_chain=2)


def test_every_runner_returns_a_posterior_named_after_its_registration():
    example = pi.models.get("normal_normal")
    target = example.compile()
    small = {
        "mcmc": {"num_chains": 2, "num_draws": 20, "num_warmup": 20},
        "smc": {"num_particles": 100},
        "sgmcmc": {"num_steps": 200, "batch_size": 5, "num_chains": 2, "step_size": 1e-3},
    }
    for name in ("mcmc", "hmc", "smc", "sgmcmc"):
        runner, _ = runners.get(name)
        post = runner(target, key=0, progress=False, **small.get(name, small["mcmc"]))
        assert isinstance(post, pi.Posterior)
        assert post.method == ("mcmc" if name == "hmc" else name)
        assert isinstance(post.settings["kernel"], str)
        assert "step_size" in post.diagnostics


@pytest.mark.slow
def test_runners_work_in_float64():
    """With jax_enable_x64 every runner keeps float64 end to end (draws, weights, evidence) and
    still recovers the conjugate normal–normal posterior mean within 4 MC errors."""
    import os
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import jax
        jax.config.update("jax_enable_x64", True)
        import numpy as np
        import probinfer as pi
        example = pi.models.get("normal_normal")
        target = example.compile()
        mean, sd = example.exact["mu_mean"], example.exact["mu_sd"]
        runs = {
            "mcmc": pi.mcmc(target, key=0, num_chains=2, num_draws=500, num_warmup=300),
            "smc": pi.smc(target, key=0, num_particles=1000),
            "sgmcmc": pi.sgmcmc(target, key=0, batch_size=5, num_steps=4000),
        }
        for name, post in runs.items():
            mu = post.draws["mu"]
            assert mu.dtype == np.float64, (name, mu.dtype)
            draws = post.sample(key=1, n=2000)["mu"]
            ess = float(post.summary()["ess_bulk"].iloc[0])
            assert abs(draws.mean() - mean) < 4 * sd / np.sqrt(ess), (name, draws.mean(), mean)
        print("ok")
        """
    )
    env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")


def test_a_users_own_kernel_object_drives_mcmc_and_smc():
    """A kernel written outside probinfer (here: an independence Metropolis sampler with a
    N(0, 2²) proposal, init/step of the Kernel shape) is accepted by name-free runners and
    recovers the exact normal–normal posterior mean within 4 MC errors in both."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from probinfer.kernels import Kernel
    from probinfer.kernels.rwm import RWMInfo, RWMState

    def init(position, log_density_fn):
        return RWMState(position, log_density_fn(position))

    def step(key, state, log_density_fn, step_size, inverse_mass_matrix):
        key_move, key_accept = jax.random.split(key)
        proposal = 2.0 * jax.random.normal(key_move, state.position.shape)
        log_density = log_density_fn(proposal)

        def log_q(z):
            return -0.5 * jnp.sum(z**2) / 4.0

        delta = log_density - state.log_density + log_q(state.position) - log_q(proposal)
        delta = jnp.where(jnp.isnan(delta), -jnp.inf, delta)
        accept = jnp.log(jax.random.uniform(key_accept)) < jnp.minimum(0.0, delta)
        new = RWMState(
            jnp.where(accept, proposal, state.position),
            jnp.where(accept, log_density, state.log_density),
        )
        return new, RWMInfo(jnp.exp(jnp.minimum(0.0, delta)), accept, jnp.zeros((), bool))

    kernel = Kernel("independence", init, step, 0.5, lambda dim: 1.0)
    example = pi.models.get("normal_normal")
    target = example.compile()
    mean, sd = example.exact["mu_mean"], example.exact["mu_sd"]
    chains = pi.mcmc(target, key=0, kernel=kernel, num_chains=2, num_draws=1000, num_warmup=100)
    particles = pi.smc(target, key=0, kernel=kernel, num_particles=500)
    for post in (chains, particles):
        assert post.settings["kernel"] == "independence"
        table = post.summary()
        ess = float(table["ess_bulk"].iloc[0])
        assert abs(float(table["mean"].iloc[0]) - mean) < 4 * sd / np.sqrt(ess)


def test_the_import_contract_lists_every_core_module():
    """The core's forbidden-import contract (pyproject.toml) names its source modules one by one:
    a new core module must join the list, or it could import a family unchecked."""
    import pathlib
    import tomllib

    root = pathlib.Path(__file__).resolve().parents[1]
    config = tomllib.loads((root / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    listed = set(next(c for c in contracts if c["type"] == "forbidden")["source_modules"])
    core = {
        f"probinfer.{p.stem if p.is_file() else p.name}"
        for p in (root / "probinfer").iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").exists()
    }
    assert core == listed


def test_every_draws_twin_takes_its_runners_defaults():
    """A pure ``*_draws`` twin (what calibrate vmaps) reads its defaults from its runner's
    signature, so the two cannot drift (0.1's mcmc_draws warmed up 500 steps, mcmc 1,000)."""
    import inspect

    from probinfer import runners

    for name in ("mcmc", "flow_vi", "coin_svgd", "smc"):
        runner, draws = runners.get(name)
        if draws is None:
            continue
        own = {
            k: p.default
            for k, p in inspect.signature(draws).parameters.items()
            if p.default is not inspect.Parameter.empty
        }
        theirs = inspect.signature(runner).parameters
        drift = {
            k: (v, theirs[k].default)
            for k, v in own.items()
            if k in theirs and v != theirs[k].default
        }
        assert not drift, (name, drift)
    from probinfer.mcmc import mcmc_draws

    with pytest.raises(pi.ProbinferError, match=r"unknown mcmc setting\(s\) \['num_draws'\]"):
        mcmc_draws(None, None, 10, num_draws=5)
