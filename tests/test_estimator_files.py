"""One estimator file format (probinfer.nn.estimator): old files keep loading and predict what they
did, every kind round-trips through ``pi.load``, and every bad file — truncated, empty, foreign,
of another kind, of another model, of a newer version — is one sentence naming the file.

The old files are ``tests/data/formats/v0/`` (written by the formats before this one; how:
``tests/data/formats/make_fixtures.py``, which also holds their models and fixed inputs)."""

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import flax.serialization
import numpy as np
import pytest

import probinfer as pi
from probinfer import DataError
from probinfer.inference.amortized import AmortizedPosterior
from probinfer.inference.dt import DT
from probinfer.inference.pfn import PFN
from probinfer.nn import estimator

FORMATS = Path(__file__).parent / "data" / "formats"
V0 = FORMATS / "v0"
KINDS = ("npe", "pfn", "dt")


def _fixtures_module():
    spec = importlib.util.spec_from_file_location("make_fixtures", FORMATS / "make_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


mf = _fixtures_module()
EXPECTED = json.loads((V0 / "expected.json").read_text())
MODEL = {
    "npe": {"model": mf.normal_model, "model_kwargs": mf.NPE_DATA},
    "pfn": {},
    "dt": {"model": mf.line, "model_kwargs": mf.DT_EXAMPLE},
}
OUTPUTS = {"npe": mf.npe_outputs, "pfn": mf.pfn_outputs, "dt": mf.dt_outputs}
FAMILY_LOAD = {
    "npe": lambda path, model=None, **kw: pi.AmortizedPosterior.load(path, model, **kw),
    "pfn": lambda path, **kw: pi.pfn.load(path, **kw),
    "dt": lambda path, model=None, **kw: pi.dt.load(path, model, **kw),
}
TYPES = {"npe": AmortizedPosterior, "pfn": PFN, "dt": DT}


@pytest.fixture(scope="module")
def old():
    """The v0 files, read through pi.load: ``{kind: estimator}``."""
    return {kind: pi.load(V0 / f"{kind}.msgpack", **MODEL[kind]) for kind in KINDS}


@pytest.fixture(scope="module")
def saved(old, tmp_path_factory):
    """Each old estimator saved again, in the current format: ``{kind: path}``."""
    folder = tmp_path_factory.mktemp("estimators")
    return {kind: Path(old[kind].save(folder / f"{kind}.msgpack")) for kind in KINDS}


def _assert_same(outputs, expected, exact=True):
    for name, value in expected.items():
        got, want = np.asarray(outputs[name], np.float32), np.asarray(value, np.float32)
        if exact:
            np.testing.assert_array_equal(got, want, err_msg=name)
        else:
            # The weights are read back bit for bit; the tolerance only covers another XLA build
            # re-associating float32 sums (on the machine that wrote them they are equal).
            np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-6, err_msg=name)


@pytest.mark.parametrize("kind", KINDS)
def test_old_files_load_and_predict_what_they_did(old, kind):
    header, _ = estimator.read(V0 / f"{kind}.msgpack")
    assert header["kind"] == kind and header["version"] == 0
    assert isinstance(old[kind], TYPES[kind]) and isinstance(old[kind], estimator.Estimator)
    _assert_same(OUTPUTS[kind](old[kind]), EXPECTED[kind], exact=False)
    again = FAMILY_LOAD[kind](V0 / f"{kind}.msgpack", **MODEL[kind])  # the family's own load
    _assert_same(OUTPUTS[kind](again), OUTPUTS[kind](old[kind]))


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_round_trips_through_pi_load(old, saved, kind):
    header, arrays = estimator.read(saved[kind])
    assert header["format"] == estimator.FORMAT and header["version"] == estimator.VERSION
    assert header["kind"] == kind and header["probinfer"] == pi.__version__
    assert "params" in arrays and isinstance(header["meta"], dict)
    if kind == "pfn":
        assert header["sites"] is None
    else:
        assert header["sites"] == estimator.site_shapes(old[kind].target)
    again = pi.load(saved[kind], **MODEL[kind])
    assert type(again) is type(old[kind]) and again.settings == old[kind].settings
    _assert_same(OUTPUTS[kind](again), OUTPUTS[kind](old[kind]))
    np.testing.assert_array_equal(
        np.asarray(again.diagnostics.get("loss", [])),
        np.asarray(old[kind].diagnostics.get("loss", [])),
    )
    family = FAMILY_LOAD[kind](saved[kind], **MODEL[kind])
    _assert_same(OUTPUTS[kind](family), OUTPUTS[kind](old[kind]))


def test_the_shipped_pfn_is_in_the_current_format():
    from importlib import resources

    path = resources.files("probinfer.inference.pfn") / "weights" / "gp-rbf-1d.msgpack"
    with resources.as_file(path) as path:
        header, _ = estimator.read(path, "pfn")
    assert header["version"] == estimator.VERSION and header["sites"] is None


def test_dt_posterior_is_a_posterior_and_mixture_the_mixture(old):
    dt = old["dt"]
    post = dt.posterior(mf.dt_prior(), mf.DT_X, key=0, n=50)
    assert isinstance(post, pi.Posterior) and post.method == "dt"
    assert post.draws["theta"].shape == (1, 50, 2)
    assert isinstance(dt.mixture(mf.dt_prior(), mf.DT_X), pi.dt.Mixture)


# -- bad files: one sentence naming the file ------------------------------------------------------


def _one_sentence(error, path, pattern):
    message = str(error.value)
    assert f"'{os.fspath(path)}'" in message, message
    assert "\n" not in message and message.endswith("."), message
    assert re.search(pattern, message), message


def _write(path, data):
    path.write_bytes(data)
    return path


def _newer(saved, tmp_path):
    payload = flax.serialization.msgpack_restore(saved["dt"].read_bytes())
    payload["version"] = estimator.VERSION + 1
    payload["probinfer"] = "9.0.0"
    return _write(tmp_path / "newer.msgpack", flax.serialization.msgpack_serialize(payload))


BAD = {
    # case: (make the file from (saved, tmp_path), load it, the message's pattern)
    "truncated new file": (
        lambda s, t: _write(
            t / "half.msgpack", s["npe"].read_bytes()[: s["npe"].stat().st_size // 2]
        ),
        lambda p: pi.load(p, **MODEL["npe"]),
        r"is not a readable probinfer estimator file: it is truncated, damaged",
    ),
    "truncated old file": (
        lambda s, t: _write(t / "half-v0.msgpack", (V0 / "pfn.msgpack").read_bytes()[:2000]),
        lambda p: pi.pfn.load(p),
        r"is not a readable probinfer estimator file",
    ),
    "zero bytes": (
        lambda s, t: _write(t / "empty.msgpack", b""),
        lambda p: pi.dt.load(p, **MODEL["dt"]),
        r"is not a readable probinfer estimator file",
    ),
    "text": (
        lambda s, t: _write(t / "notes.msgpack", b"these are my notes\nnot weights\n"),
        lambda p: pi.AmortizedPosterior.load(p, **MODEL["npe"]),
        r"is not a (readable )?probinfer estimator file",
    ),
    "foreign msgpack map": (
        lambda s, t: _write(t / "other.msgpack", flax.serialization.msgpack_serialize({"a": 1})),
        lambda p: pi.load(p),
        r"is not a probinfer estimator file: it has no 'probinfer.estimator' header",
    ),
    "pfn file to dt.load": (
        lambda s, t: s["pfn"],
        lambda p: pi.dt.load(p, **MODEL["dt"]),
        r"holds an estimator of kind pfn, not dt; load it with pi\.load",
    ),
    "old pfn file to dt.load": (
        lambda s, t: V0 / "pfn.msgpack",
        lambda p: pi.dt.load(p, **MODEL["dt"]),
        r"holds an estimator of kind pfn, not dt",
    ),
    "old dt file to pfn.load": (
        lambda s, t: V0 / "dt.msgpack",
        lambda p: pi.pfn.load(p),
        r"holds an estimator of kind dt, not pfn",
    ),
    "npe file for another model": (
        lambda s, t: s["npe"],
        lambda p: pi.load(p, mf.wide_model, model_kwargs=mf.NPE_DATA),
        r"was trained on a model with latent sites .*: latent site 'mu' is \(2,\) in the model "
        r"but \(\) in the file",
    ),
    "old npe file for another model": (
        lambda s, t: V0 / "npe.msgpack",
        lambda p: pi.AmortizedPosterior.load(p, mf.wide_model, model_kwargs=mf.NPE_DATA),
        r"latent site 'mu' is \(2,\) in the model but \(\) in the file",
    ),
    "newer version": (
        _newer,
        lambda p: pi.load(p, **MODEL["dt"]),
        r"written by probinfer 9\.0\.0 in estimator format version 2.*upgrade probinfer",
    ),
    "no such file": (
        lambda s, t: t / "nothing-here.msgpack",
        lambda p: pi.dt.load(p, **MODEL["dt"]),
        r"no saved dt estimator at",
    ),
    "npe without its model": (
        lambda s, t: s["npe"],
        lambda p: pi.load(p),
        r"holds an NPE estimator: pass the model it was trained on",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_file_is_one_sentence_naming_it(saved, tmp_path, case):
    make, load, pattern = BAD[case]
    path = make(saved, tmp_path)
    with pytest.raises(DataError) as error:
        load(path)
    _one_sentence(error, path, pattern)


# -- the estimators that joined the format later: flow_vi's flow, amortized_vi's encoder ---------

V1 = FORMATS / "v1"
EXPECTED_V1 = json.loads((V1 / "expected.json").read_text())
V1_MODEL = {
    "flow_vi": lambda: pi.compile(mf.normal_model, **mf.FLOW_DATA),
    "amortized_vi": lambda: pi.compile(mf.rows_model, mf.ROWS, data=("x",)),
}
V1_OUTPUTS = {"flow_vi": mf.flow_outputs, "amortized_vi": mf.encoder_outputs}


@pytest.mark.parametrize("kind", sorted(V1_MODEL))
def test_v1_files_load_predict_what_they_did_and_round_trip(kind, tmp_path):
    from probinfer.inference.amortized import FittedEncoder
    from probinfer.inference.flows import FittedFlow

    fitted = pi.load(V1 / f"{kind}.msgpack", V1_MODEL[kind]())
    assert isinstance(fitted, {"flow_vi": FittedFlow, "amortized_vi": FittedEncoder}[kind])
    _assert_same(V1_OUTPUTS[kind](fitted), EXPECTED_V1[kind], exact=False)
    again = pi.load(fitted.save(tmp_path / f"{kind}.msgpack"), V1_MODEL[kind]())
    _assert_same(V1_OUTPUTS[kind](again), V1_OUTPUTS[kind](fitted))
    assert again.settings == fitted.settings
    post = fitted.posterior(None if kind == "flow_vi" else mf.ROWS[:2], key=0, n=7)
    assert isinstance(post, pi.Posterior) and post.draws[fitted_site(kind)].shape[:2] == (1, 7)


def fitted_site(kind):
    return {"flow_vi": "mu", "amortized_vi": "z"}[kind]


BAD_V1 = {
    "flow fitted to other data": (
        lambda t: V1 / "flow_vi.msgpack",
        lambda p: pi.load(p, mf.normal_model, model_kwargs=mf.NPE_DATA),
        r"holds a flow fitted to other data than 'normal_model' is compiled with",
    ),
    "flow without its model": (
        lambda t: V1 / "flow_vi.msgpack",
        lambda p: pi.load(p),
        r"holds a flow fitted by flow_vi: pass the model it was fitted to",
    ),
    "truncated encoder": (
        lambda t: _write(t / "enc.msgpack", (V1 / "amortized_vi.msgpack").read_bytes()[:700]),
        lambda p: pi.load(p, V1_MODEL["amortized_vi"]()),
        r"is not a readable probinfer estimator file",
    ),
    "encoder for another model": (
        lambda t: V1 / "amortized_vi.msgpack",
        lambda p: pi.load(p, mf.rows_model, model_args=(mf.ROWS[:5],), data=("x",)),
        r"latent site 'z' is \(5,\) in the model but \(8,\) in the file",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_V1))
def test_a_bad_flow_or_encoder_file_is_one_sentence_naming_it(tmp_path, case):
    make, load, pattern = BAD_V1[case]
    path = make(tmp_path)
    with pytest.raises(DataError) as error:
        load(path)
    _one_sentence(error, path, pattern)


def test_a_fitted_flow_answers_for_its_own_data_only():
    fitted = pi.load(V1 / "flow_vi.msgpack", V1_MODEL["flow_vi"]())
    with pytest.raises(DataError, match="answers for that data set only; pass no x"):
        fitted.sample(0, mf.NPE_DATA, 3)


def test_import_probinfer_is_enough_for_pi_load():
    """In a fresh interpreter, with no family imported by hand, pi.load reads every kind, and
    the core's read recognises an old file (it imports the families that register them)."""
    script = f"""
import importlib.util, sys
spec = importlib.util.spec_from_file_location("mf", {str(FORMATS / "make_fixtures.py")!r})
mf = importlib.util.module_from_spec(spec); spec.loader.exec_module(mf)
from probinfer.nn import estimator
assert estimator.read({str(V0 / "pfn.msgpack")!r})[0]["kind"] == "pfn"
import probinfer as pi
kinds = [
    type(pi.load({str(V0 / "npe.msgpack")!r}, mf.normal_model, model_kwargs=mf.NPE_DATA)).__name__,
    type(pi.load({str(V0 / "pfn.msgpack")!r})).__name__,
    type(pi.load({str(V0 / "dt.msgpack")!r}, mf.line, model_kwargs=mf.DT_EXAMPLE)).__name__,
]
print(kinds)
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600, check=False
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "['AmortizedPosterior', 'PFN', 'DT']" in out.stdout
