"""The x86 target's ``native`` lowering (targets/onnx/native.py): LSTM/GRU forecasters packed for
the runtime's native recurrent engine, measured among the candidates, with ONNX Runtime on the
same artifact's ONNX file as the recorded fallback."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import torch

import edgecomp_runtime as ecr
from edgecomp.checkpoint import load_checkpoint
from edgecomp.frontend import reference_predict
from edgecomp.models import GraphForecaster, GRUForecaster, LSTMForecaster, TCNForecaster
from edgecomp.passes.prune_rnn import prune_recurrent_state, recurrent_scores
from edgecomp.pipeline import BuildConfig
from edgecomp.spec import Model
from edgecomp.targets import TargetError, get_profile, get_target
from edgecomp.targets.onnx import OnnxTarget
from edgecomp.targets.onnx import candidates as cand
from edgecomp.targets.onnx import native as lowering
from edgecomp.workflow import build_artifact, dataset_for
from edgecomp_runtime import engines
from edgecomp_runtime import native as kernel
from helpers.testing import sine_windows, tiny_spec

pytestmark = [
    pytest.mark.target,
    pytest.mark.skipif(not OnnxTarget.is_available(), reason=OnnxTarget.missing_reason()),
]
BUILT = kernel.available()
needs_kernel = pytest.mark.skipif(not BUILT, reason=f"native kernel: {kernel.unavailable_reason()}")
PROFILE = get_profile("x86-64-avx2")
INT8_ATOL = 0.1  # scaled units (helpers.testing.TOLERANCES["int8"])


def _tiny(arch: str, hidden: int = 12, layers: int = 2) -> Model:
    spec = dataclasses.replace(
        tiny_spec(arch, input_len=12), hparams={"hidden": hidden, "layers": layers}
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        from edgecomp.models import build_model

        return Model(module=build_model(spec).eval(), spec=spec)


def _windows(spec) -> np.ndarray:
    return sine_windows(80, spec.input_len, spec.horizon, spec.n_features, 2, 0).x


def _emit(model: Model, tmp_path, precision: str = "int8", **options):
    profile = dataclasses.replace(PROFILE, options={**PROFILE.options, **options})
    return get_target("onnx")().emit(
        model, profile, tmp_path, precision=precision, calibration=_windows(model.spec)
    )


def _build(checkpoint, traffic_path, tmp_path, **options):
    config = BuildConfig(precision="int8", options=options)
    return build_artifact(str(checkpoint), traffic_path, config, tmp_path / "a.edgepkg")


def _test_windows(checkpoint, traffic_path):
    model = load_checkpoint(checkpoint)
    dataset = dataset_for(model.spec, traffic_path)
    return model, dataset.test.x[:200]


def test_the_native_lowering_is_offered_for_lstm_and_gru_only():
    # assert: fp32 and int8 LSTM/GRU where the kernel runs; never a TCN, a graph model, int4
    for cls in (LSTMForecaster, GRUForecaster):
        assert lowering.applies(cls, "int8") and lowering.applies(cls, "fp32")
        assert not lowering.applies(cls, "int4")
        assert ("native" in cand.applicable_lowerings(cls, "int8")) is BUILT
        assert OnnxTarget.option_applies("lowering", "native", cls, "int8") is BUILT
        assert "native" not in cand.applicable_lowerings(cls, "int4")
    for cls in (TCNForecaster, GraphForecaster):
        assert not lowering.applies(cls, "int8")
        assert "native" not in cand.applicable_lowerings(cls, "int8")
        assert not OnnxTarget.option_applies("lowering", "native", cls, "int8")


def test_edgecomp_tune_offers_native_where_it_applies():
    from edgecomp.models import MODELS
    from edgecomp.tune.space import default_space

    # execute
    space = {
        arch: default_space(PROFILE, students=False, model_type=MODELS[arch])["lowering"]
        for arch in ("lstm", "gru", "tcn", "stgnn")
    }
    # assert
    assert ("native" in space["lstm"]) is BUILT and ("native" in space["gru"]) is BUILT
    assert "native" not in space["tcn"] and "native" not in space["stgnn"]


def test_the_native_engine_pairs_only_with_the_native_lowering():
    # setup
    options = get_target("onnx").parse_options(PROFILE)
    engines_here = ["onnx", "openvino", "native"]
    lowerings = ["default", "scan", "native"]
    # execute
    found = cand.candidates(options, engines_here, lowerings)
    forced = cand.candidates(dataclasses.replace(options, engine="native"), engines_here, lowerings)
    # assert
    pairs = {(c.lowering, c.engine) for c in found}
    assert ("native", "native") in pairs
    assert all((lo == "native") == (en == "native") for lo, en in pairs)
    assert {(c.lowering, c.engine) for c in forced} == {("native", "native")}


@pytest.mark.skipif(BUILT, reason="the planted-unavailable tests below cover a built host too")
def test_without_the_kernel_a_named_native_lowering_is_refused(tmp_path):
    with pytest.raises(TargetError, match="'native', which cannot run here"):
        _emit(_tiny("lstm"), tmp_path, lowering="native")


def test_a_tcn_asked_for_the_native_lowering_is_refused(
    tmp_path, traffic_path, traffic_checkpoints
):
    expected = "(not applicable to tcn at int8|'native', which cannot run here)"
    with pytest.raises(TargetError, match=expected):
        _build(traffic_checkpoints["tcn"], traffic_path, tmp_path, lowering="native")


@needs_kernel
@pytest.mark.parametrize("arch", ["lstm", "gru"])
def test_a_native_build_loads_and_forecasts_like_torch(
    arch, tmp_path, traffic_path, traffic_checkpoints
):
    # execute: the native lowering asked for by name
    result = _build(traffic_checkpoints[arch], traffic_path, tmp_path, lowering="native")
    model = ecr.load(result.path)
    # assert: the manifest names the engine, its file, and ONNX Runtime as the checked fallback
    recorded = model.manifest["recipe"]["lowering"]
    assert model.backend == "native" and recorded["engine"] == "native"
    assert recorded["candidate_lowering"] == "native"
    assert recorded["engine_files"] == {"native": "model.native"}
    assert recorded["equivalent_engines"] == ["onnx"]
    (onnx_file,) = recorded["candidates"]["model_file_parity"]
    assert onnx_file["engine"] == "onnx" and onnx_file["passed"]
    files = ecr.read_artifact(result.path)[1]
    assert {"model.onnx", "model.native"} <= set(files)
    header = kernel.describe(files["model.native"])
    assert header["cell"] == arch
    # the layers are int8, but those the build kept float to pass parity (the record names them)
    planned = [*header["layers"], header["head"]]
    records = {r["name"]: r["native"] for r in model.manifest["layers"]}
    assert (
        records
        == recorded["native"]["layers"]
        == {name: layer["precision"] for name, layer in zip(["rnn", "head"], planned, strict=True)}
    )
    fitted = recorded["native"].get("parity_fit", {}).get("kept_float", [])
    assert sorted(fitted) == sorted(n for n, p in records.items() if p == "fp32")
    assert "int8" in records.values()
    # assert: the forecast matches torch within the int8 tolerance, and within the build's limit
    source, x = _test_windows(traffic_checkpoints[arch], traffic_path)
    expected = reference_predict(source, x)
    got = model.run_scaled(x)
    assert np.abs(got - expected).max() <= INT8_ATOL
    assert (
        0
        < recorded["parity"]["max_abs_diff"]
        <= recorded["candidates"]["measured"][0]["parity_limit"]
    )


@needs_kernel
def test_an_auto_build_measures_native_and_records_the_alternatives(
    tmp_path, traffic_path, traffic_checkpoints
):
    # execute: every candidate
    result = _build(traffic_checkpoints["lstm"], traffic_path, tmp_path)
    # assert: native measured among the others; the lowest score among those passing won
    recorded = result.manifest["recipe"]["lowering"]
    measured = [m for m in recorded["candidates"]["measured"] if m["latency_ms"]]
    assert {"default", "native"} <= {m["lowering"] for m in measured}
    assert all(m["passed"] for m in measured if m["lowering"] == "native")
    # the native engine's recorded version is the runtime's, whose kernel ran (not numpy's)
    from importlib.metadata import version

    natives = {m["engine_version"] for m in measured if m["engine"] == "native"}
    assert natives == {version("edgecomp-runtime")}
    best = min(measured, key=lambda m: m["latency_ms"]["b1"] * m["latency_ms"]["b64"])
    if "batch_routing" not in recorded:  # else a pair of engines won (test_candidates.py)
        assert recorded["candidate_lowering"] == best["lowering"]
        assert recorded["engine"] == best["engine"]
    if recorded["engine"] == "native":
        assert "onnx" in recorded["equivalent_engines"]
        assert recorded["engine_files"] == {"native": "model.native"}
    else:
        assert "engine_files" not in recorded and "native" not in recorded["equivalent_engines"]


@needs_kernel
def test_without_the_kernel_at_load_onnxruntime_runs_it_with_one_warning(
    tmp_path, traffic_path, traffic_checkpoints, monkeypatch
):
    # setup: a native build, then a runtime whose kernel was not built (planted)
    result = _build(traffic_checkpoints["gru"], traffic_path, tmp_path, lowering="native")
    _, x = _test_windows(traffic_checkpoints["gru"], traffic_path)
    on_native = ecr.load(result.path).run_scaled(x)
    monkeypatch.setattr(kernel, "_KERNEL", None)
    monkeypatch.setattr(kernel, "_WHY", "planted: no C compiler at install")
    monkeypatch.setattr(engines, "_WARNED", set())
    # execute
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = ecr.load(result.path)
        on_ort = model.run_scaled(x)
        ecr.load(result.path)
    # assert: one warning naming both engines; the same forecasts within the int8 tolerance
    said = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(said) == 1 and "'native'" in str(said[0].message)
    assert "planted" in str(said[0].message) and "'onnx'" in str(said[0].message)
    assert model.backend == "onnx"
    assert np.abs(on_ort - on_native).max() <= INT8_ATOL


def test_a_build_host_without_the_kernel_skips_native_and_says_why(tmp_path, monkeypatch):
    # setup: the kernel unavailable on the build host (planted)
    monkeypatch.setattr(kernel, "_KERNEL", None)
    monkeypatch.setattr(kernel, "_WHY", "planted: not built")
    # execute
    result = _emit(_tiny("lstm"), tmp_path)
    # assert: not measured, and the record says why; a named request is refused
    recorded = result.lowering["candidates"]
    assert "native" not in {m["lowering"] for m in recorded["measured"]}
    (skipped,) = recorded["skipped"]
    assert skipped["lowering"] == "native" and "planted: not built" in skipped["reason"]
    assert result.lowering["engine"] != "native" and "model.native" not in result.files
    with pytest.raises(TargetError, match="'native', which cannot run here: planted"):
        _emit(_tiny("lstm"), tmp_path, lowering="native")


@needs_kernel
@pytest.mark.parametrize("arch", ["lstm", "gru"])
def test_a_mixed_plan_keeps_its_float_layers_float(arch, tmp_path):
    # setup
    model = _tiny(arch)
    # execute: the ladder's mixed rung keeps layers float through keep_float
    result = _emit(model, tmp_path, lowering="native", keep_float=["rnn.l1", "output"])
    # assert: the file, the layer records and the recipe say rnn.l1 and the head are float
    header = kernel.describe((tmp_path / "model.native").read_bytes())
    assert [layer["precision"] for layer in header["layers"]] == ["int8", "fp32"]
    assert header["head"]["precision"] == "fp32"
    precisions = {r["name"]: r["native"] for r in result.layers}
    assert precisions == {"rnn.l0": "int8", "rnn.l1": "fp32", "head": "fp32"}
    kept = {r["name"]: r.get("native_reason", "") for r in result.layers}
    assert "keep_float" in kept["rnn.l1"] and "output" in kept["head"] and not kept["rnn.l0"]
    assert result.lowering["native"]["layers"] == precisions
    # assert: closer to torch than the all-int8 file on the same windows
    all_int8 = _emit(model, tmp_path / "all", lowering="native")
    assert all_int8.lowering["native"]["layers"]["rnn.l1"] == "int8"
    x = _windows(model.spec)
    expected = reference_predict(model, x)
    mixed_diff = np.abs(_run(tmp_path, x) - expected).max()
    all_diff = np.abs(_run(tmp_path / "all", x) - expected).max()
    assert mixed_diff < all_diff


@needs_kernel
def test_a_pruned_lstm_is_packed_at_its_pruned_width(tmp_path):
    # setup: keep 5 of 12 hidden units per layer (edgecomp.passes.prune_rnn)
    model = _tiny("lstm")
    state, _ = prune_recurrent_state(model.module, recurrent_scores(model.module, "l2"), 5)
    spec = dataclasses.replace(model.spec, hparams={"hidden": 5, "layers": 2})
    from edgecomp.models import build_model

    pruned = build_model(spec).eval()
    pruned.load_state_dict(state)
    # execute
    result = _emit(Model(module=pruned, spec=spec), tmp_path, lowering="native")
    # assert
    header = kernel.describe((tmp_path / "model.native").read_bytes())
    assert [layer["hidden"] for layer in header["layers"]] == [5, 5]
    assert result.lowering["engine"] == "native"
    x = _windows(spec)
    assert np.abs(_run(tmp_path, x) - reference_predict(Model(pruned, spec), x)).max() <= INT8_ATOL


def _run(folder, x: np.ndarray) -> np.ndarray:
    from edgecomp_runtime.engines.native import NativeEngine

    return NativeEngine((folder / "model.native").read_bytes(), {}, threads=1).run(x)


@needs_kernel
def test_layers_the_parity_limit_needs_float_are_made_float_and_recorded(tmp_path, monkeypatch):
    # setup: a parity limit no int8 map meets (the fp32 tolerance: slack ~0)
    monkeypatch.setattr(cand, "PARITY_SLACK", 1e-9)
    model = _tiny("gru")
    # execute
    result = _emit(model, tmp_path, lowering="native")
    # assert: first the window's input projection, then every layer went float, each recorded
    fit = result.lowering["native"]["parity_fit"]
    assert fit["input_projection"] == "fp32" and fit["planned_max_abs_diff"] > fit["limit"]
    assert sorted(fit["kept_float"]) == ["head", "rnn.l0", "rnn.l1"]
    assert fit["max_abs_diff"] <= fit["limit"] == pytest.approx(1e-4)
    header = kernel.describe((tmp_path / "model.native").read_bytes())
    assert {layer["precision"] for layer in [*header["layers"], header["head"]]} == {"fp32"}
    assert all("parity" in r["native_reason"] for r in result.layers if "native" in r)
    assert result.lowering["parity"]["max_abs_diff"] <= 1e-4


@needs_kernel
def test_the_onnx_fallback_file_of_a_native_artifact_is_checked_at_load(
    tmp_path, traffic_path, traffic_checkpoints
):
    # setup: a native build, then its ONNX file (the recorded fallback) replaced by garbage
    from edgecomp_runtime.model import _check_model_file

    result = _build(traffic_checkpoints["lstm"], traffic_path, tmp_path, lowering="native")
    manifest, files = ecr.read_artifact(result.path)
    # assert: the intact file passes the ONNX checks although the native engine runs the artifact
    _check_model_file(files["model.onnx"], manifest, "native")
    # execute + assert: a broken one is refused, naming the file, before any engine runs
    with pytest.raises(ecr.ArtifactError, match="model.onnx"):
        _check_model_file(b"\x08\x07garbage", manifest, "native")
