"""x86 ONNX int4 with option keep_int8: the named layers quantized as the int8 build does (int8
weights, int8 compute where ONNX Runtime has the kernel), every other layer int4; the option's
bad uses refused naming it; int4 files name layer nodes after their layer and carry no attribute
that only restates the ONNX default."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from edgecomp.models import build_model
from edgecomp.spec import Model
from edgecomp.targets import TargetError, get_profile
from edgecomp.targets.onnx import OnnxTarget
from helpers.testing import sine_windows, tiny_spec

onnx = pytest.importorskip("onnx", reason=OnnxTarget.missing_reason())
ort = pytest.importorskip("onnxruntime", reason=OnnxTarget.missing_reason())
pytestmark = pytest.mark.skipif(not OnnxTarget.is_available(), reason=OnnxTarget.missing_reason())

PROFILE = get_profile("x86-64-avx2")


def _model(arch: str) -> Model:
    spec = tiny_spec(arch)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return Model(module=build_model(spec).eval(), spec=spec)


def _emit(model: Model, tmp_path, precision: str = "int4", **options):
    profile = dataclasses.replace(PROFILE, options={**PROFILE.options, **options})
    windows = sine_windows(64, model.spec.input_len, 3, model.spec.n_features, 2).x
    result = OnnxTarget().emit(model, profile, tmp_path, precision=precision, calibration=windows)
    return result, onnx.load(str(tmp_path / result.model_file))


@pytest.mark.parametrize(
    ("arch", "layer", "method"), [("tcn", "head", "static-qdq"), ("lstm", "head", "dynamic")]
)
def test_keep_int8_layer_computes_int8_and_the_rest_int4(tmp_path, arch, layer, method):
    # execute
    result, proto = _emit(_model(arch), tmp_path, keep_int8=[layer])
    # assert: the layer is int8 (as the int8 build makes it), every other one int4, none float
    records = {r["name"]: r for r in result.layers}
    assert records[layer]["precision"] == "int8" and records[layer]["method"] == method
    assert "option keep_int8: 'head'" in records[layer]["reason"]
    assert {r["precision"] for n, r in records.items() if n != layer} == {"int4"}
    assert result.lowering["quantization"]["keep_int8"]["layers"] == [layer]
    int8 = [i for i in proto.graph.initializer if i.data_type == onnx.TensorProto.INT8]
    assert int8 and all(i.name.startswith(layer) for i in int8)


def test_keep_float_wins_over_keep_int8(tmp_path):
    # execute
    result, _ = _emit(_model("tcn"), tmp_path, keep_int8=["head"], keep_float=["head"])
    # assert
    assert {r["name"]: r["precision"] for r in result.layers}["head"] == "fp32"
    assert "keep_int8" not in result.lowering["quantization"]


@pytest.mark.parametrize(
    ("precision", "options", "message"),
    [
        ("int8", {"keep_int8": ["head"]}, "option 'keep_int8' \\['head'\\] is for precision int4"),
        ("fp32", {"keep_int8": ["head"]}, "option 'keep_int8' .* got precision 'fp32'"),
        ("int4", {"keep_int8": ["nope"]}, "option 'keep_int8' entry 'nope' .* matches no layer"),
        ("int4", {"keep_int8": "head"}, "option 'keep_int8' must be a list"),
    ],
)
def test_bad_keep_int8_is_refused_naming_the_option(tmp_path, precision, options, message):
    with pytest.raises(TargetError, match=message):
        _emit(_model("tcn"), tmp_path, precision=precision, **options)


def test_int4_layer_nodes_are_named_after_their_layer(tmp_path):
    # execute
    result, proto = _emit(_model("tcn"), tmp_path)
    # assert: the records name the nodes, which carry the layer's name and nothing longer;
    # every other node is unnamed
    nodes = {n.name: n for n in proto.graph.node if n.name}
    assert {r["node"] for r in result.layers} == set(nodes)
    for record in result.layers:
        assert record["node"] == record["name"]
        assert nodes[record["node"]].op_type in ("Conv", "MatMulNBits")


def test_shrink_drops_attributes_that_restate_the_default(tmp_path):
    from edgecomp.targets.onnx.compact import shrink
    from edgecomp.targets.onnx.export import export_model

    # setup
    model = _model("tcn")
    exported = export_model(model.module, model.spec.input_len, model.spec.n_features, opset=17)
    before = onnx.ModelProto()
    before.CopyFrom(exported)
    x = sine_windows(8, model.spec.input_len, 3, model.spec.n_features, 2).x
    # execute
    after = shrink(exported)
    # assert: no Conv keeps group=1 or unit strides; fewer bytes; the same outputs
    for node in after.graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Conv":
            assert attrs.get("group", 2) != 1 and set(attrs.get("strides", [2])) != {1}
            assert "kernel_shape" in attrs
    assert len(after.SerializeToString()) < len(before.SerializeToString())

    def run(proto):
        session = ort.InferenceSession(
            proto.SerializeToString(), providers=["CPUExecutionProvider"]
        )
        return session.run(None, {session.get_inputs()[0].name: x})[0]

    np.testing.assert_array_equal(run(after), run(before))
