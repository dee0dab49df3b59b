"""int4 (x86 ONNX) on weights float16 scales cannot hold: a weight past 7 x 65504 (or a bias past
65504, stored float16) would become an infinite scale and NaN weights in the written file. The
scale search skips such scales, and where none is left the build stops with a TargetError naming
the layer, before anything is written."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from edgecomp.models import build_model
from edgecomp.spec import Model
from edgecomp.targets import TargetError, get_profile
from edgecomp.targets.onnx import OnnxTarget
from helpers.testing import TINY_HPARAMS, tiny_spec

onnx = pytest.importorskip("onnx", reason=OnnxTarget.missing_reason())
pytestmark = pytest.mark.skipif(not OnnxTarget.is_available(), reason=OnnxTarget.missing_reason())

FLOAT16_MAX = float(np.finfo(np.float16).max)


def test_a_peak_past_float16_at_full_scale_gets_a_clipped_finite_scale():
    from edgecomp.targets.onnx.int4 import search_scales

    # setup: 5e5 / 7 is past float16; half of it is not
    blocks = np.array([[5e5, 0.1, -0.3, 2.0], [1.0, -0.5, 0.25, 0.0]], np.float32)
    # execute
    q, scales = search_scales(blocks)
    # assert: finite scales, dequantized weights finite and the large one kept large
    expanded = q.astype(np.float32) * scales.astype(np.float32)[:, None]
    assert np.isfinite(scales).all() and np.isfinite(expanded).all()
    assert expanded[0, 0] > 2e5


def test_a_peak_no_float16_scale_holds_is_refused():
    from edgecomp.targets.onnx.int4 import search_scales

    # execute / assert: 1e6 / 7 x 0.5 is still past float16's largest
    with pytest.raises(ValueError, match="float16's largest"):
        search_scales(np.array([[1e6, 0.5]], np.float32))
    with pytest.raises(ValueError, match="float16's largest"):  # option int4_rounding max
        search_scales(np.array([[5e5, 0.5]], np.float32), ratios=(1.0,))


def test_matmulnbits_names_the_layer_whose_weight_no_scale_holds():
    from onnx import TensorProto, helper, numpy_helper

    from edgecomp.targets.onnx.int4 import quantize_int4_graph

    # setup
    weight = np.ones((32, 4), np.float32)
    weight[3, 1] = 2e6
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="/head/MatMul")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [numpy_helper.from_array(weight, "w")],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    # execute / assert
    with pytest.raises(TargetError, match=r"int4 layer '/head/MatMul'.*keep_float"):
        quantize_int4_graph(proto, set(), 32)


def _model(arch: str, scale: dict[str, float]) -> Model:
    hparams = {**TINY_HPARAMS[arch], "hidden": 16} if arch != "tcn" else TINY_HPARAMS[arch]
    spec = dataclasses.replace(tiny_spec(arch), hparams=hparams)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = build_model(spec).eval()
    with torch.no_grad():
        for name, factor in scale.items():
            module.get_parameter(name).view(-1)[0] = factor
    return Model(module=module, spec=spec)


@pytest.mark.parametrize(
    ("arch", "parameter", "value", "named"),
    [
        ("tcn", "blocks.0.conv1.weight", 2e6, "int4 layer"),
        ("gru", "rnn.weight_hh_l0", 2e6, "int4 layer"),
        ("lstm", "rnn.bias_ih_l0", 1e5, "past float16's range"),
    ],
)
def test_an_int4_build_stops_naming_the_layer_and_writes_nothing(
    tmp_path, arch, parameter, value, named
):
    # setup: one weight (or bias) past what float16 holds
    model = _model(arch, {parameter: value})
    out = tmp_path / "out"
    out.mkdir()
    # execute / assert
    with pytest.raises(TargetError, match=f"{named}.*keep_float") as caught:
        OnnxTarget().emit(model, get_profile("x86-64-avx2"), out, precision="int4")
    assert "onnx: int4" in str(caught.value)
    assert not any(path.suffix == ".onnx" for path in out.rglob("*"))
