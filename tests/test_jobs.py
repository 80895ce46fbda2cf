"""Inference jobs: validation of job files, a user's model and CSV data against the exact
posterior, checkpoint/resume (programmatic and with a real SIGKILL), atomic reports, and
``probinfer run`` end to end."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import scipy.stats

import probinfer as pi
from probinfer.jobs import JobError, prepare

MODEL_PY = '''
import probinfer as pi
from probinfer import dist


def regression(x, y=None, sigma=0.5, prior_sd=1.0):
    """Conjugate: w ~ N(0, prior_sd² I), y ~ N(x w, sigma²)."""
    w = pi.sample("w", dist.Normal(0.0, prior_sd).expand([x.shape[1]]).to_event(1))
    with pi.plate("data", x.shape[0]):
        pi.sample("y", dist.Normal(x @ w, sigma), obs=y)
'''


@pytest.fixture()
def project(tmp_path):
    """A folder with a user's model file and a CSV whose columns are out of the model's order."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 2))
    y = x @ np.array([1.0, -2.0]) + 0.5 * rng.normal(size=40)
    (tmp_path / "model.py").write_text(MODEL_PY)
    rows = ["label,b,a,note"] + [f"{y[i]:.6f},{x[i, 1]:.6f},{x[i, 0]:.6f},{i}" for i in range(40)]
    (tmp_path / "data.csv").write_text("\n".join(rows) + "\n")
    np.savez(tmp_path / "data.npz", x=x, y=y)
    return tmp_path


def write_job(folder, text, name="job.toml"):
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


GOOD = """
    seed = 3
    out = "out"
    [model]
    name = "model.py:regression"
    args = { sigma = 0.5 }
    [data]
    file = "data.csv"
    columns = { x = ["a", "b"], y = "label" }
    [method]
    name = "smc"
    num_particles = 400
"""

BAD = [
    # (replace this, with this, expected message)
    ("seed = 3", "sede = 3", "unknown key 'sede' (did you mean 'seed'?)"),
    ("seed = 3", 'seed = "three"', "'seed' must be an integer"),
    ("seed = 3", "seed = true", "'seed' must be an integer"),
    ('name = "smc"', 'name = "smcc"', "unknown method 'smcc' (did you mean 'smc'?)"),
    (
        "num_particles = 400",
        "num_particle = 400",
        "method 'smc' has no setting 'method.num_particle' (did you mean 'num_particles'?)",
    ),
    ("num_particles = 400", "num_particles = 4.5", "'method.num_particles' must be an integer"),
    (
        "num_particles = 400",
        'schedule = "data"',
        "has no setting 'method.schedule' (0.2.0 replaced it with annealing=)",
    ),
    ("num_particles = 400", "key = 1", "has no setting 'method.key'"),
    ('file = "data.csv"', 'file = "missing.csv"', "'data.file' names 'missing.csv', which does"),
    ('file = "data.csv"', 'file = "model.py"', "'data.file' must be a .csv, .npz or .parquet"),
    (
        'y = "label"',
        'y = "lable"',
        "'data.columns.y' names column 'lable', which 'data.csv' does not have (did you mean "
        "'label'?)",
    ),
    ('y = "label"', "y = 3", "'data.columns.y' must be a column name or a list"),
    ('y = "label"', 'y = "label", z = "a"', "'data.columns.z': the model takes no argument 'z'"),
    (
        "args = { sigma = 0.5 }",
        "args = { sigmaa = 0.5 }",
        "'model.args.sigmaa': the model takes no argument 'sigmaa' (did you mean 'sigma'?)",
    ),
    (
        "args = { sigma = 0.5 }",
        "args = { y = [1.0] }",
        "['y'] are given both in 'model.args' and in 'data.columns'",
    ),
    (
        'name = "model.py:regression"',
        'name = "model.py:regresion"',
        "'model.py' has no function 'regresion' (did you mean 'regression'?)",
    ),
    ('name = "model.py:regression"', 'name = "nofile.py:regression"', "names the file"),
    (
        'name = "model.py:regression"',
        'name = "eight_school"',
        "'eight_school' is not in the zoo (did you mean 'eight_schools'?)",
    ),
    ('name = "model.py:regression"', 'nam = "x"', "unknown key 'model.nam' (did you mean 'name'?)"),
    (
        '[method]\n    name = "smc"',
        '[metod]\n    name = "smc"',
        "unknown key 'metod' (did you mean 'method'?)",
    ),
    ('out = "out"', 'out = "out"\n    [report]\n    plots = "yes"', "'report.plots' must be true"),
    ("seed = 3", "seed = 3 3", "not valid TOML"),
    (
        'out = "out"',
        'out = "out"\n    [calibrate]\n    method = "amortized_vi"',
        "'calibrate.method' 'amortized_vi' cannot be calibrated here",
    ),
    ('name = "smc"', 'name = "npe"\n    num_simulation = 10', "has no setting 'method.num_simul"),
    (
        'name = "smc"\n    num_particles = 400',
        'name = "npe"\n    [calibrate]\n    settings = { num_steps = 3 }',
        "'calibrate.settings' does not apply to 'npe'",
    ),
    ('out = "out"', 'out = "out"\n    [compare]\n    models = []', "'compare.models' must list"),
    (
        'out = "out"',
        'out = "out"\n    [compare]\n    model = ["model.py:regression"]',
        "unknown key 'compare.model' (did you mean 'models'?)",
    ),
    (
        'out = "out"',
        'out = "out"\n    [compare]\n    models = ["model.py:regresion"]',
        "'compare.models' entry 'model.py:regresion': 'model.name': 'model.py' has no function",
    ),
    (
        'out = "out"',
        'out = "out"\n    [compare]\n    models = [{ name = "model.py:regression", arg = {} }]',
        "unknown key 'compare.models[0].arg' (did you mean 'args'?)",
    ),
]


@pytest.mark.parametrize("old,new,message", BAD, ids=[b[2][:40] for b in BAD])
def test_a_bad_job_file_gets_one_sentence_naming_the_key_and_the_file(project, old, new, message):
    text = textwrap.dedent(GOOD)
    old, new = textwrap.dedent(old), textwrap.dedent(new).replace("\n    ", "\n")
    assert old.replace("\n    ", "\n") in text
    path = write_job(project, text.replace(old.replace("\n    ", "\n"), new))
    with pytest.raises(JobError) as info:
        prepare(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_calibrate_settings_reach_a_learned_likelihoods_draws(project):
    """nle and nre estimators draw by a runner, so ``[calibrate] settings`` (the runner and its
    own) are a valid job file for them (npe's are refused, BAD above)."""
    text = textwrap.dedent(GOOD).replace('name = "smc"\nnum_particles = 400', 'name = "nle"')
    text += '[calibrate]\nsettings = { method = "smc", num_particles = 500 }\n'
    assert prepare(write_job(project, text)).spec.calibrate["settings"]["method"] == "smc"


def test_compare_fits_every_model_and_ranks_them_by_loo_in_the_report(project):
    """The data were simulated with noise sd 0.5; the same regression with sd 2 predicts them
    worse. The job fits both with its method and seed, writes the second's report under
    compare/, and the main report ranks the models (ArviZ's table, also in compare.csv)."""
    text = (
        textwrap.dedent(GOOD)
        .replace(
            'name = "smc"\nnum_particles = 400', 'name = "mcmc"\nnum_draws = 300\nnum_warmup = 300'
        )
        .replace(
            'out = "out"',
            'out = "out"\n[report]\nplots = false\n[compare]\n'
            'models = [{ name = "model.py:regression", args = { sigma = 2.0 } }]',
        )
    )
    result = pi.run(write_job(project, text), progress=False)
    table = result.comparison
    assert list(table.index) == ["regression", "regression-2"]
    assert table.loc["regression-2", "elpd_diff"] > 2 * table.loc["regression-2", "dse"]
    out = project / "out"
    assert (out / "compare.csv").stat().st_size > 0
    assert "Model comparison" in (out / "report.html").read_text()
    assert "regression-2" in (out / "report.md").read_text()
    other = out / "compare" / "regression-2"
    assert "elpd_loo" in (other / "report.html").read_text()  # its own report and LOO table
    assert pi.Posterior.load(other / "posterior.npz").num_draws == 300


def test_every_problem_is_reported_at_once(project):
    text = (
        textwrap.dedent(GOOD)
        .replace("seed = 3", "sede = 3")
        .replace("num_particles = 400", "num_particle = 400")
    )
    with pytest.raises(JobError) as info:
        prepare(write_job(project, text))
    assert "'sede'" in str(info.value) and "'method.num_particle'" in str(info.value)


def test_a_job_needs_a_model_and_a_method(tmp_path):
    with pytest.raises(JobError, match="'model' is missing") as info:
        prepare({"method": "smc"})
    assert "'method'" not in str(info.value).split("'model' is missing")[1]
    with pytest.raises(JobError, match="'method' is missing"):
        prepare({"model": "eight_schools"})
    with pytest.raises(JobError, match="does not exist"):
        prepare(tmp_path / "nope.toml")


def test_a_byte_order_mark_is_read_and_another_encoding_is_named(project):
    path = project / "job.toml"
    path.write_bytes(b"\xef\xbb\xbf" + textwrap.dedent(GOOD).encode())
    assert prepare(path).arguments["x"].shape == (40, 2)
    path.write_bytes(textwrap.dedent(GOOD).replace("out", "r\u00e9sultats").encode("latin-1"))
    with pytest.raises(JobError, match=r"job.toml: not UTF-8 text \(byte 0xe9 on line 3\)"):
        prepare(path)


@pytest.mark.parametrize(
    "cell, message",
    [
        ("", r"column 'a' has 1 empty, NaN or infinite cells \(the first in row 7\)"),
        ("n/a?", r"column 'a' is not numeric \(row 7 holds 'n/a\?'\)"),
    ],
)
def test_a_bad_csv_cell_is_named_by_file_column_and_row(project, cell, message):
    lines = (project / "data.csv").read_text().splitlines()
    fields = lines[7].split(",")  # data row 7 (line 1 is the header)
    fields[2] = cell
    lines[7] = ",".join(fields)
    (project / "data.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(JobError, match=message) as info:
        prepare(write_job(project, GOOD))
    assert "data.csv" in str(info.value)


def test_a_report_folder_that_cannot_be_written_is_named_before_the_run(project):
    (project / "blocker").write_text("a file where the report folder should go")
    text = GOOD.replace('out = "out"', 'out = "blocker/report"')
    with pytest.raises(JobError, match=r"report folder .*blocker/report' cannot be written"):
        prepare(write_job(project, text))


def test_a_damaged_npz_data_file_is_named(project):
    (project / "data.npz").write_bytes(b"PK\x03\x04 not really a zip")
    text = GOOD.replace('file = "data.csv"', 'file = "data.npz"').replace(
        'columns = { x = ["a", "b"], y = "label" }', ""
    )
    with pytest.raises(pi.DataError, match=r"data.npz' is not a readable NPZ data file"):
        prepare(write_job(project, text))


def test_columns_are_stacked_in_the_jobs_order_and_npz_arrays_go_by_name(project):
    prepared = prepare(write_job(project, GOOD))
    x = prepared.arguments["x"]
    table = np.loadtxt(project / "data.csv", delimiter=",", skiprows=1)
    np.testing.assert_allclose(x, table[:, [2, 1]], rtol=1e-6)
    assert x.dtype == np.float32 and prepared.arguments["sigma"] == 0.5
    text = GOOD.replace('file = "data.csv"', 'file = "data.npz"').replace(
        'columns = { x = ["a", "b"], y = "label" }', ""
    )
    prepared = prepare(write_job(project, text))
    assert prepared.arguments["x"].shape == (40, 2) and prepared.arguments["y"].shape == (40,)


def test_parquet_data_reads_like_csv(project):
    import pandas as pd  # a core dependency; pyarrow is in the test extra: fail, never skip

    pd.read_csv(project / "data.csv").to_parquet(project / "data.parquet")
    prepared = prepare(write_job(project, GOOD.replace("data.csv", "data.parquet")))
    np.testing.assert_array_equal(
        prepared.arguments["x"], prepare(write_job(project, GOOD, "csv.toml")).arguments["x"]
    )


def exact_posterior(project, sigma=0.5, prior_sd=1.0):
    table = np.loadtxt(project / "data.csv", delimiter=",", skiprows=1)
    x, y = table[:, [2, 1]], table[:, 0]
    precision = np.eye(2) / prior_sd**2 + x.T @ x / sigma**2
    cov = np.linalg.inv(precision)
    return cov @ x.T @ y / sigma**2, np.sqrt(np.diag(cov))


def _weighted_moments(post):
    """Mean and sd of every coordinate of ``w`` under the particles' weights."""
    w = post.draws["w"].reshape(-1, post.draws["w"].shape[-1])
    p = np.exp(post.log_weights.ravel() - post.log_weights.max())
    p /= p.sum()
    m = p @ w
    return m, np.sqrt(p @ (w - m) ** 2)


def test_a_users_model_and_csv_give_the_exact_posterior(project):
    result = pi.run(write_job(project, GOOD), progress=False)
    mean, sd = exact_posterior(project)
    job_mean, job_sd = _weighted_moments(result.posterior)
    # SMC particles are correlated through resampling, so no single run knows its own error. The
    # error is measured instead: 12 more runs of the same target and settings (other seeds) give
    # the spread of a run's mean and sd, and the job's run must lie within a two-sided 0.001
    # Student-t prediction interval of a new run (11 degrees of freedom) around the exact values.
    prepared = prepare(write_job(project, GOOD))
    target = pi.compile(prepared.model, data=prepared.data, **prepared.arguments)
    runs = [_weighted_moments(pi.smc(target, key=100 + s, num_particles=400)) for s in range(12)]
    limit = scipy.stats.t.ppf(0.9995, len(runs) - 1) * np.sqrt(1 + 1 / len(runs))
    for got, exact, spread in [
        (job_mean, mean, np.std([r[0] for r in runs], axis=0, ddof=1)),
        (job_sd, sd, np.std([r[1] for r in runs], axis=0, ddof=1)),
    ]:
        np.testing.assert_array_less(np.abs(got - exact), limit * spread)
    # and the 12 runs' average is unbiased within its own standard error (t, two-sided 0.001)
    means = np.array([r[0] for r in runs])
    np.testing.assert_array_less(
        np.abs(means.mean(0) - mean),
        scipy.stats.t.ppf(0.9995, len(runs) - 1) * means.std(0, ddof=1) / np.sqrt(len(runs)),
    )
    out = project / "out"
    for name in [
        "report.html",
        "posterior.npz",
        "posterior.nc",
        "summary.csv",
        "job.toml",
        "posterior.png",
        "pair.png",
        "method.png",
        "diagnostics.txt",
    ]:
        assert (out / name).stat().st_size > 0, name
    assert not [p for p in os.listdir(out) if p.startswith(".tmp")]


@pytest.mark.slow  # 30-40 s; the default tier stays under 15 minutes
def test_a_second_run_resumes_from_the_checkpoint_with_identical_draws(project, monkeypatch):
    """Interrupt after the first chunk (programmatically), resume, compare bit for bit."""
    import probinfer.checkpoint as checkpoint

    text = GOOD.replace(
        'name = "smc"\n    num_particles = 400',
        'name = "mcmc"\n    '
        "num_chains = 2\n    num_draws = 300\n    num_warmup = 200\n    "
        "checkpoint_every = 100",
    )
    whole = pi.run(write_job(project, text.replace('out = "out"', 'out = "whole"')), progress=False)
    saves, real_save = [], checkpoint.save

    def crash_after_two_saves(*args, **kwargs):
        real_save(*args, **kwargs)
        saves.append(1)
        if len(saves) == 2:
            raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(checkpoint, "save", crash_after_two_saves)
    path = write_job(project, text)
    with pytest.raises(KeyboardInterrupt):
        pi.run(path, progress=False)
    monkeypatch.setattr(checkpoint, "save", real_save)
    assert not (project / "out" / "posterior.npz").exists()
    resumed = pi.run(path, progress=False)
    assert resumed.resumed
    for site in whole.posterior.draws:
        np.testing.assert_array_equal(resumed.posterior.draws[site], whole.posterior.draws[site])
    again = pi.run(path, progress=False, fresh=True)
    assert not again.resumed


def _cli(args, cwd, env=None, **kwargs):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", **(env or {})}
    kwargs = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, **kwargs}
    return subprocess.Popen(
        [sys.executable, "-m", "probinfer.cli", *args], cwd=cwd, env=env, text=True, **kwargs
    )


RESUME_JOBS = {
    "mcmc": 'name = "mcmc"\n    num_chains = 2\n    num_draws = 3000\n    num_warmup = 300\n    '
    "checkpoint_every = 100",
    "smc": 'name = "smc"\n    num_particles = 2000\n    kernel = "rwm"\n    '
    "num_mcmc_steps = 40\n    checkpoint_every = 1",
    "sgmcmc": 'name = "sgmcmc"\n    batch_size = 8\n    num_steps = 40000\n    '
    "checkpoint_every = 1000",
}


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(RESUME_JOBS))
def test_sigkill_mid_run_then_resume_gives_the_uninterrupted_draws(project, method):
    text = GOOD.replace('name = "smc"\n    num_particles = 400', RESUME_JOBS[method])
    text = text.replace("[model]", '[model]\n    data = ["x", "y"]')
    # no plots: the draws are what is compared
    path = write_job(project, text + "    [report]\n    plots = false\n")
    with _cli(["run", str(path), "--out", str(project / "whole")], project) as whole:
        printed = whole.communicate(timeout=600)[0]
    assert whole.returncode == 0, printed
    checkpoint = project / "out" / "checkpoints" / f"{method}.npz"
    with _cli(["run", str(path)], project, stdout=subprocess.DEVNULL) as killed:
        deadline = time.time() + 300
        while not checkpoint.exists() and time.time() < deadline and killed.poll() is None:
            time.sleep(0.05)
        killed.send_signal(signal.SIGKILL)
        killed.wait()
    assert checkpoint.exists() and not (project / "out" / "posterior.npz").exists(), (
        "the run finished before it could be killed; make it longer"
    )
    with _cli(["run", str(path)], project) as resumed:
        printed = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0 and "resuming from its checkpoint" in printed, printed
    a = pi.Posterior.load(project / "whole" / "posterior.npz")
    b = pi.Posterior.load(project / "out" / "posterior.npz")
    for site in a.draws:
        np.testing.assert_array_equal(a.draws[site], b.draws[site])


ATOMIC = """
import os, signal, sys
from probinfer._utils import atomic_path
with atomic_path(sys.argv[1]) as tmp, open(tmp, "w") as fh:
    fh.write("half of a new report")
    fh.flush()
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_write_killed_half_way_leaves_the_previous_file_intact(tmp_path):
    report = tmp_path / "report.html"
    report.write_text("the previous report")
    code = subprocess.run([sys.executable, "-c", ATOMIC, str(report)]).returncode
    assert code == -signal.SIGKILL
    assert report.read_text() == "the previous report"
    # The next job run on the folder sweeps the dead writer's temporary file away.
    from probinfer.jobs.execute import sweep_temporary_files

    assert [p for p in os.listdir(tmp_path) if p.startswith(".tmp")]
    sweep_temporary_files(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["report.html"]


def test_probinfer_run_job_file_end_to_end(project):
    text = GOOD.replace("num_particles = 400", "num_particles = 300")
    path = write_job(project, text)
    with _cli(["run", str(path), "--out", "cli-out"], project) as process:
        printed = process.communicate(timeout=600)[0]
    assert process.returncode == 0, printed
    assert "log evidence" in printed and "report written to" in printed
    check_report_folder(project / "cli-out")


def check_report_folder(folder):
    """The PNGs are valid images; report.html embeds them and references no other file."""
    import re

    import matplotlib.image

    pngs = [p for p in os.listdir(folder) if p.endswith(".png")]
    assert "posterior.png" in pngs
    for name in pngs:
        assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert matplotlib.image.imread(folder / name).ndim == 3, name
    page = (folder / "report.html").read_text()
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert len(sources) == len(pngs) and all(
        s.startswith("data:image/png;base64,") for s in sources
    )
    assert pi.Posterior.load(folder / "posterior.npz").num_draws > 0


DISTRIBUTED_JOB = """
    model = "normal_normal"
    seed = 4
    [method]
    name = "smc"
    num_particles = 512
    [calibrate]
    num_sims = 40
    [report]
    plots = false
"""


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_share_one_smc_run_and_one_calibrate_run(tmp_path):
    """Two CPU processes joined through a localhost coordinator (JAX's multi-controller runtime)
    run one job — one SMC run with its particles split over the two processes and one calibrate
    run with its simulations split — and process 0 alone writes the report. Its answer is compared
    with one process on two simulated devices (the same sharding) as an independent run: within
    BOUND of the spread of ten independent runs (rounding may flip an MH decision on another CPU).
    """
    path = write_job(tmp_path, DISTRIBUTED_JOB)
    port = _free_port()
    logs = [open(tmp_path / f"p{i}.log", "w") for i in range(2)]
    flags = ["--coordinator", f"localhost:{port}", "--num-processes", "2"]
    try:
        processes = [
            _cli(
                ["run", str(path), "--out", "two", *flags, "--process-id", str(i)],
                tmp_path,
                stdout=logs[i],
            )
            for i in range(2)
        ]
        codes = [p.wait(timeout=900) for p in processes]
    finally:
        for log in logs:
            log.close()
    printed = [(tmp_path / f"p{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], printed
    assert "2 processes" in printed[0] and "report written" in printed[0]
    assert "report written" not in printed[1]  # one writer
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    with _cli(["run", str(path), "--out", "one"], tmp_path, env=env) as one:
        text = one.communicate(timeout=900)[0]
    assert one.returncode == 0 and "2 device(s)" in text, text
    two = pi.Posterior.load(tmp_path / "two" / "posterior.npz")
    one = pi.Posterior.load(tmp_path / "one" / "posterior.npz")
    assert two.settings["devices"] == one.settings["devices"] == 2
    first = [p.diagnostics["temperatures"][1] for p in (two, one)]
    assert first[0] == pytest.approx(first[1], rel=1e-4)  # before any MH decision: float-close
    example = pi.models.get("normal_normal")
    runs = [pi.smc(example.compile(), key=s, num_particles=512, progress=False) for s in range(10)]
    log_z_sd = np.std([r.log_evidence for r in runs], ddof=1)
    mean_sd = np.std([r.mean()["mu"] for r in runs], ddof=1)
    assert abs(two.log_evidence - one.log_evidence) < BOUND * log_z_sd
    assert abs(two.mean()["mu"] - one.mean()["mu"]) < BOUND * mean_sd
    assert abs(two.log_evidence - example.exact["log_evidence"]) < BOUND / np.sqrt(2) * log_z_sd
    for folder in ("two", "one"):
        verdict = (tmp_path / folder / "calibration.txt").read_text()
        assert verdict.startswith("smc on 40 simulated data sets (1 parameters,"), verdict
        # A simulation paired with another one's posterior (a wrong gather) puts the ranks far
        # from uniform; a calibrated method gets p < 0.001 once in a thousand runs.
        min_p = float(verdict.split("min p = ")[1].split(")")[0])
        assert min_p > 1e-3, verdict


# Two runs that rounding lets diverge differ like independent runs: their difference has sd
# √2 · s (s from ten seeds); four of those, inflated by 1.5 for the uncertainty of s (as in
# tests/inference/test_smc.py).
BOUND = 4 * np.sqrt(2) * 1.5
