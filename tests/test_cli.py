"""The ``probinfer`` command writes a complete report."""

import os

from probinfer import cli
from probinfer.cli import main


def test_run_writes_summary_netcdf_and_plots(tmp_path, capsys):
    out = tmp_path / "report"
    code = main(
        [
            "run",
            "normal_normal",
            "--draws",
            "200",
            "--warmup",
            "200",
            "--chains",
            "2",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "mu" in printed and "r_hat" in printed
    for name in [
        "summary.txt",
        "summary.csv",
        "posterior.nc",
        "posterior.npz",
        "trace.png",
        "posterior.png",
        "report.md",
        "report.html",
        "rank.png",
        "ppc.png",
        "diagnostics.txt",
    ]:
        assert (out / name).stat().st_size > 0, name
    import arviz as az

    idata = az.from_netcdf(os.fspath(out / "posterior.nc"))
    assert idata.posterior["mu"].shape == (2, 200)
    assert not [p for p in os.listdir(out) if p.startswith(".tmp")]


def test_models_lists_the_zoo(capsys):
    assert main(["models"]) == 0
    assert "eight_schools" in capsys.readouterr().out


def test_unknown_model_is_reported(capsys):
    assert main(["run", "nope"]) == 2
    assert "'nope' is not in the zoo" in capsys.readouterr().err


def test_calibrate_prints_the_verdict_and_writes_the_figure(tmp_path, capsys):
    out = tmp_path / "calibration"
    args = ["calibrate", "normal_normal", "--sims", "20", "--samples", "40", "--warmup", "100"]
    assert main([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "hmc on 20 simulated data sets" in printed and "SBC over 20 simulations" in printed
    assert (out / "calibration.png").stat().st_size > 0
    assert (out / "calibration.txt").read_text().startswith("hmc on 20")


def test_run_uses_any_registered_runner_with_its_settings(tmp_path, capsys):
    out = tmp_path / "smc"
    args = ["run", "normal_normal", "--method", "smc", "--set", "num_particles=300"]
    assert main([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "method: smc (num_particles=300)" in printed and "log evidence" in printed
    assert (out / "posterior.npz").stat().st_size > 0


def test_bad_method_and_settings_get_one_sentence(capsys):
    assert main(["run", "normal_normal", "--method", "smcc"]) == 2
    assert "did you mean 'smc'" in capsys.readouterr().err
    assert main(["run", "normal_normal", "--method", "smc", "--set", "num_chain=2"]) == 2
    assert "has no setting 'method.num_chain'" in capsys.readouterr().err
    assert main(["run", "normal_normal", "--method", "smc", "--chains", "2"]) == 2
    assert "--chains does not apply" in capsys.readouterr().err


def test_the_demo_takes_the_setting_its_divergence_warning_recommends():
    # `probinfer` alone: eight schools with NUTS at target_accept 0.95 (clean on seeds 0-9);
    # any other model, or a user's own target_accept, keeps what the user asked for.
    parser = cli._parser()
    demo = cli._job_from_flags(parser.parse_args(["run"]))
    assert demo["method"] == {"name": "mcmc", "target_accept": 0.95}
    other = cli._job_from_flags(parser.parse_args(["run", "normal_normal"]))
    assert other["method"] == {"name": "mcmc"}
    own = cli._job_from_flags(parser.parse_args(["run", "--set", "target_accept=0.9"]))
    assert own["method"]["target_accept"] == 0.9
