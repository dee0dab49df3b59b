"""ARM (LiteRT) option keep_int8: in an int4 build, the named layers get int8 weights per channel
(activations quantized at run time, as in the int4 layers), through ai-edge-quantizer for
litert-torch graphs and through the loop emitter for LSTM / GRU."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch

from edgecomp.targets import TargetError, get_profile
from edgecomp.targets.tflite.target import TfliteTarget
from edgecomp_runtime.engines.litert import LiteRtEngine
from helpers.testing import assert_close, sine_windows, tiny_model, tiny_spec

pytestmark = pytest.mark.skipif(
    not TfliteTarget.is_available(), reason=TfliteTarget.missing_reason()
)
PROFILE = get_profile("arm64-gateway")


def _emit(arch: str, out: Path, precision: str = "int4", **options: Any) -> tuple[Any, Any, bytes]:
    model = tiny_model(arch)
    profile = dataclasses.replace(PROFILE, options={**PROFILE.options, **options})
    result = TfliteTarget().emit(model, profile, out, precision=precision)
    return model, result, (out / result.model_file).read_bytes()


def _check_runs(model: Any, result: Any, data: bytes) -> None:
    spec = tiny_spec(model.spec.arch)
    x = sine_windows(16, spec.input_len, spec.horizon, spec.n_features, 2, 5).x
    manifest = {"model_file": result.model_file, "io": result.io, "recipe": {"lowering": {}}}
    with torch.no_grad():
        expected = model.module(torch.from_numpy(x)).numpy()
    assert_close(expected, LiteRtEngine(data, manifest, threads=1).run(x), dtype="int4")


def test_tcn_int4_keeps_named_layers_int8_by_pattern_and_edge(tmp_path):
    from edgecomp.targets.tflite.graph import Graph

    # setup / execute: a plain int4 TCN and one with block 0 and the output layer int8
    _, plain, plain_data = _emit("tcn", tmp_path / "plain")
    model, result, data = _emit("tcn", tmp_path / "mixed", keep_int8=["blocks.0.*", "output"])
    # assert: those layers' weights are stored int8 (dynamic), the rest int4; the records and
    # the manifest say so; the file is larger than plain int4 by the int8 weights; it runs
    int8 = {"blocks.0.conv1", "blocks.0.conv2", "blocks.0.skip", "head"}
    by_name = {la["name"]: la for la in result.layers}
    assert set(by_name) == {la["name"] for la in plain.layers}
    for name, layer in by_name.items():
        want = ("int8", "dynamic") if name in int8 else ("int4", "dynamic")
        assert (layer["precision"], layer["method"]) == want, name
    assert "keep_int8: 'blocks.0.*'" in by_name["blocks.0.skip"]["reason"]
    assert "keep_int8: 'output'" in by_name["head"]["reason"]
    quantization = result.lowering["quantization"]
    assert quantization["keep_int8"] == ["blocks.0.*", "output"]
    assert quantization["int8_layers"] == sorted(int8)
    assert quantization["int4_groups"]["channel"] == len(by_name) - len(int8)
    graph = Graph(data)
    weights = sorted(graph.weight(op)[0] for op in graph.ops if op.op_type == "CONV_2D")
    assert weights.count("INT8") == 3 and weights.count("INT4") == 2
    assert len(data) > len(plain_data)
    _check_runs(model, result, data)


@pytest.mark.parametrize("arch", ["lstm", "gru"])
def test_loop_int4_keeps_named_layers_int8_and_keep_float_wins(tmp_path, arch):
    from edgecomp.targets.tflite.loop import fc_weights

    # setup / execute: a 1-layer recurrent model: rnn[0] (W_ih), rnn[1] (W_hh), head;
    # head is named by both options
    options = {"keep_int8": ["rnn[0]", "head"], "keep_float": ["head"]}
    model, result, data = _emit(arch, tmp_path, **options)
    # assert: W_ih int8, W_hh int4, head float; records and manifest agree; it runs
    assert fc_weights(data) == [("INT8", 0), ("INT4", 0), ("FLOAT32", 0)]
    by_name = {la["name"]: la for la in result.layers}
    assert (by_name["rnn[0]"]["precision"], by_name["rnn[0]"]["method"]) == ("int8", "dynamic")
    assert "keep_int8: 'rnn[0]'" in by_name["rnn[0]"]["reason"]
    assert by_name["rnn[1]"]["precision"] == "int4"
    assert by_name["head"]["precision"] == "fp32" and "keep_float" in by_name["head"]["reason"]
    assert result.lowering["quantization"]["int8_layers"] == ["rnn[0]"]
    _check_runs(model, result, data)


@pytest.mark.parametrize("arch", ["tcn", "lstm"])
def test_a_keep_int8_entry_matching_no_layer_is_refused_naming_option_and_layers(tmp_path, arch):
    with pytest.raises(TargetError, match=r"keep_int8 entry 'nope\*' matches no layer.*head"):
        _emit(arch, tmp_path, keep_int8=["nope*"])
    assert not any(tmp_path.rglob("*.tflite"))


@pytest.mark.parametrize(
    ("precision", "value", "match"),
    [
        ("int8-dynamic", ["head"], r"'keep_int8' \['head'\] is for precision int4 only"),
        ("int4", "head", "'keep_int8'"),
        ("int4", [""], "'keep_int8' must be a list"),
    ],
)
def test_bad_keep_int8_is_refused_before_anything_is_written(tmp_path, precision, value, match):
    with pytest.raises(TargetError, match=match):
        _emit("tcn", tmp_path, precision=precision, keep_int8=value)
    assert not any(tmp_path.iterdir())


def test_keep_float_wins_and_int8_settings_refuse_other_precisions():
    from edgecomp.targets.tflite.graph import Layer, Op
    from edgecomp.targets.tflite.quantize import QuantSettings

    settings = QuantSettings.from_options({"keep_int8": ["head"]})
    layers = [Layer("head", Op(0, "FULLY_CONNECTED", "head;", (0, 1), (2,)))]
    assert "keep_int8: 'head'" in settings.int8(None, layers, {}, "int4")["head"]
    assert settings.int8(None, layers, {"head": "kept in float"}, "int4") == {}
    with pytest.raises(TargetError, match="'keep_int8' is for precision int4 only"):
        settings.int8(None, layers, {}, "int8")
