"""The native lowering across model shapes: each packed file agrees with the model's spec and io,
forecasts as torch does, loads as its artifact's (the runtime's spec check), and a checkpoint
with non-finite weights is refused at build naming the layer."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnxruntime as ort
import pytest
import torch

from edgecomp.frontend import reference_predict
from edgecomp.spec import Model
from edgecomp.targets import TargetError, get_profile, get_target
from edgecomp.targets.onnx import OnnxTarget
from edgecomp_runtime import native as kernel
from edgecomp_runtime.engines.native import NativeEngine
from edgecomp_runtime.errors import ArtifactError
from helpers.testing import sine_windows, tiny_spec

pytestmark = [
    pytest.mark.target,
    pytest.mark.skipif(not OnnxTarget.is_available(), reason=OnnxTarget.missing_reason()),
    pytest.mark.skipif(not kernel.available(), reason=f"{kernel.unavailable_reason()}"),
]
PROFILE = get_profile("x86-64-avx2")
ATOL = {"fp32": 1e-4, "int8": 0.1}  # scaled units (helpers.testing.TOLERANCES)


def _model(arch="lstm", *, hidden=4, layers=1, residual=True, targets=None, **shape) -> Model:
    spec = tiny_spec(arch, input_len=shape.pop("input_len", 6), **shape)
    if targets is not None:
        spec = dataclasses.replace(spec, targets=[spec.features[i] for i in targets])
    spec = dataclasses.replace(
        spec, hparams={"hidden": hidden, "layers": layers, "residual": residual}
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        from edgecomp.models import build_model

        return Model(module=build_model(spec).eval(), spec=spec)


def _emit(model: Model, folder, precision: str, **options):
    profile = dataclasses.replace(PROFILE, options={**PROFILE.options, **options})
    spec = model.spec
    x = sine_windows(60, spec.input_len, spec.horizon, spec.n_features, len(spec.targets), 0).x
    return get_target("onnx")().emit(model, profile, folder, precision=precision, calibration=x)


SHAPES = {
    "hidden1": {"hidden": 1},
    "layers3": {"layers": 3, "hidden": 5},
    "one_feature": {"n_features": 1, "n_targets": 1},
    "horizon1": {"horizon": 1},
    "many_targets": {"n_features": 9, "n_targets": 9, "horizon": 4},
    "no_residual": {"residual": False},
    "targets_3_0_2": {"n_features": 5, "targets": [3, 0, 2]},
}


@pytest.mark.parametrize("arch", ["lstm", "gru"])
@pytest.mark.parametrize("precision", ["fp32", "int8"])
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_a_forced_native_build_of_each_shape_agrees_with_spec_onnx_and_torch(
    arch, precision, shape, tmp_path
):
    # setup
    model = _model(arch, **SHAPES[shape])
    spec, module = model.spec, model.module
    # execute: the native lowering asked for by name
    result = _emit(model, tmp_path, precision, lowering="native")
    data = (tmp_path / "model.native").read_bytes()
    header = kernel.describe(data)
    # assert: the file's shapes are the spec's and the module's
    assert result.lowering["engine"] == "native"
    assert header["cell"] == arch and len(header["layers"]) == module.rnn.num_layers
    assert [layer["hidden"] for layer in header["layers"]] == [module.rnn.hidden_size] * len(
        header["layers"]
    )
    assert (header["input_len"], header["n_features"]) == (spec.input_len, spec.n_features)
    assert (header["horizon"], header["n_targets"]) == (spec.horizon, len(spec.targets))
    assert header["target_index"] == spec.target_index
    assert header["residual"] is module.residual
    # assert: the runtime's check against the artifact's spec passes, and the forecast is torch's
    # and the ONNX file's (the recorded fallback) within the precision's tolerance
    engine = NativeEngine(data, {"spec": spec.to_dict()}, threads=1)
    x = sine_windows(40, spec.input_len, spec.horizon, spec.n_features, len(spec.targets), 1).x
    got = engine.run(x)
    assert got.shape == (len(x), spec.horizon, len(spec.targets))
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    on_ort = session.run(None, {session.get_inputs()[0].name: x})[0]
    assert np.abs(got - reference_predict(model, x)).max() <= ATOL[precision]
    assert np.abs(got - on_ort).max() <= ATOL[precision]


@pytest.mark.parametrize("arch", ["lstm", "gru"])
def test_an_auto_build_of_an_odd_shape_measures_native_and_records_a_passing_choice(arch, tmp_path):
    # setup: non-contiguous targets, no residual, three layers
    model = _model(arch, layers=3, hidden=3, n_features=5, targets=[4, 1], residual=False)
    # execute: every candidate
    result = _emit(model, tmp_path, "int8")
    # assert: native measured and passing; if chosen, its file is this model's
    measured = [m for m in result.lowering["candidates"]["measured"] if m["lowering"] == "native"]
    assert measured and all(m["passed"] for m in measured)
    if result.lowering["engine"] == "native":
        data = (tmp_path / "model.native").read_bytes()
        NativeEngine(data, {"spec": model.spec.to_dict()}, threads=1)  # raises if it disagrees
        assert kernel.describe(data)["target_index"] == [4, 1]


def test_a_native_file_of_another_spec_is_refused_by_the_engine(tmp_path):
    # setup: a model built for targets [3, 0, 2] with the residual, checked against [3, 0, 1]
    model = _model("gru", n_features=5, targets=[3, 0, 2])
    _emit(model, tmp_path, "fp32", lowering="native")
    other = dataclasses.replace(model.spec, targets=["f3", "f0", "f1"]).to_dict()
    # assert
    with pytest.raises(ArtifactError, match=r"model.native: target_index \[3, 0, 2\]"):
        NativeEngine((tmp_path / "model.native").read_bytes(), {"spec": other}, threads=1)


@pytest.mark.parametrize("where", ["weight_hh_l1", "bias_ih_l0", "head"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_by_the_native_lowering_naming_the_layer(
    where, value, tmp_path
):
    # setup: one non-finite weight in a 2-layer LSTM
    model = _model("lstm", layers=2)
    module = model.module
    with torch.no_grad():
        tensor = module.head.weight if where == "head" else getattr(module.rnn, where)
        tensor.view(-1)[0] = value
    # execute + assert: refused at build (fp32: the ONNX candidates fail parity, the native
    # lowering names the manifest's layer); nothing packed
    name = "head" if where == "head" else f"rnn.l{where[-1]}"
    with pytest.raises(TargetError, match=f"native: layer {name} \\(.*\\) holds NaN or infinite"):
        _emit(model, tmp_path, "fp32", lowering="native")
    assert not (tmp_path / "model.native").exists()
    # int8: refused too (the ONNX quantizer may refuse first), nothing packed
    with pytest.raises(TargetError):
        _emit(model, tmp_path / "int8", "int8", lowering="native")
    assert not (tmp_path / "int8" / "model.native").exists()


@pytest.mark.parametrize("arch", ["lstm", "gru"])
@pytest.mark.parametrize("precision", ["fp32", "int8"])
@pytest.mark.parametrize("isa", [None, "avx2"], ids=["dispatch", "avx2"])
def test_edge_inputs_forecast_close_to_the_onnx_fallback(arch, precision, isa, tmp_path):
    # setup: a built 2-layer model; windows of -0.0, subnormal, tiny, large and +-1e30 values
    model = _model(arch, layers=2, hidden=8)
    _emit(model, tmp_path, precision, lowering="native")
    runner = kernel.Kernel((tmp_path / "model.native").read_bytes(), isa=isa)
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    spec = model.spec
    for value in (-0.0, 1e-45, 1e-37, 1e4, 1e30, -1e30):
        x = np.zeros((2, spec.input_len, spec.n_features), np.float32)
        x[:, :, 1], x[1, :, 0] = value, -value
        # execute
        got = runner.run(x)
        expected = session.run(None, {session.get_inputs()[0].name: x})[0]
        # assert: finite, and within the precision's tolerance relative to the forecast's size
        assert np.isfinite(got).all(), value
        relative = np.abs(got - expected) / np.maximum(1, np.abs(expected))
        assert relative.max() <= ATOL[precision] / 10, (value, relative.max())


@pytest.mark.parametrize("arch", ["lstm", "gru"])
def test_a_pruned_model_packs_at_its_pruned_width_and_passes_the_spec_check(arch, tmp_path):
    # setup: keep 3 of 8 hidden units per layer of a 2-layer model (edgecomp.passes.prune_rnn)
    from edgecomp.models import build_model
    from edgecomp.passes.prune_rnn import prune_recurrent_state, recurrent_scores

    model = _model(arch, layers=2, hidden=8, n_features=5, targets=[4, 2])
    state, _ = prune_recurrent_state(model.module, recurrent_scores(model.module, "l2"), 3)
    spec = dataclasses.replace(model.spec, hparams={**model.spec.hparams, "hidden": 3})
    pruned = build_model(spec).eval()
    pruned.load_state_dict(state)
    pruned_model = Model(module=pruned, spec=spec)
    # execute
    _emit(pruned_model, tmp_path, "int8", lowering="native")
    data = (tmp_path / "model.native").read_bytes()
    # assert
    assert [layer["hidden"] for layer in kernel.describe(data)["layers"]] == [3, 3]
    engine = NativeEngine(data, {"spec": spec.to_dict()}, threads=1)
    x = sine_windows(30, spec.input_len, spec.horizon, 5, 2, 2).x
    assert np.abs(engine.run(x) - reference_predict(pruned_model, x)).max() <= ATOL["int8"]
