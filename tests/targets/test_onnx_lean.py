"""The lean recurrent export (targets/onnx/export.py ``lean_recurrent``): fewer ops around the
fused LSTM/GRU nodes, the same forecasts as torch, at every precision and on every engine."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from edgecomp.models import GRUForecaster, LSTMForecaster, TCNForecaster
from edgecomp.targets.onnx.export import export_model, lean_recurrent
from helpers.testing import run_onnx

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.target

FEATURES, LENGTH, HORIZON = 5, 12, 3
CASES = list(  # (class, layers, residual, targets): evenly spaced, all, one, uneven
    itertools.product(
        (LSTMForecaster, GRUForecaster), (1, 2), (True, False), ([1, 3], None, [2], [4, 0])
    )
)


def _module(cls, layers, residual, targets):
    torch.manual_seed(0)
    n_targets = len(targets) if targets else FEATURES
    module = cls(FEATURES, n_targets, LENGTH, HORIZON, hidden=8, layers=layers,
                 residual=residual, target_index=targets)  # fmt: skip
    return module.eval()


def _windows(batch: int) -> np.ndarray:
    return np.random.default_rng(batch).standard_normal((batch, LENGTH, FEATURES), np.float32)


def _ops(proto) -> list[str]:
    return [node.op_type for node in proto.graph.node]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0].__name__}-{c[1]}-{c[2]}-{c[3]}")
def test_lean_export_equals_torch_with_fewer_ops(case):
    cls, layers, residual, targets = case
    module = _module(*case)
    plain = export_model(module, LENGTH, FEATURES, opset=17, lean=False)
    lean = export_model(module, LENGTH, FEATURES, opset=17)
    for batch in (1, 3):
        x = _windows(batch)
        with torch.no_grad():
            expected = module(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(run_onnx(lean, x), expected, atol=1e-5, rtol=0)
        np.testing.assert_allclose(run_onnx(plain, x), expected, atol=1e-5, rtol=0)
    ops = _ops(lean)
    # the input's Transpose to time-major stays (ONNX Runtime has no layout=1 kernel)
    assert ops.count("Transpose") == 1 and ops[0] == "Transpose"
    uneven = residual and targets == [4, 0]
    assert ops.count("Gather") == (1 if uneven else 0)
    assert ops.count("Squeeze") == layers  # between layers, and Y_h -> the head
    assert len(ops) < len(_ops(plain))


@pytest.mark.parametrize("cls", [LSTMForecaster, GRUForecaster])
def test_the_last_layer_writes_only_y_h_and_the_head_reads_it(cls):
    proto = export_model(_module(cls, 2, True, None), LENGTH, FEATURES, opset=17)
    rnns = [node for node in proto.graph.node if node.op_type == cls.rnn_type.__name__]
    readers = {t: node for node in proto.graph.node for t in node.input}
    assert [list(node.output) for node in rnns][1][0] == ""  # Y of the last layer: unwritten
    assert len(rnns[0].output) == 1  # Y only: its Y_h (and LSTM Y_c) nobody reads
    squeeze = readers[rnns[1].output[1]]
    assert squeeze.op_type == "Squeeze" and readers[squeeze.output[0]].op_type == "Gemm"
    assert rnns[0].name.endswith(cls.rnn_type.__name__)  # names the layer records use stay


class _MiddleStep(nn.Module):
    """Reads step 3 of the LSTM output, not the last: no Y_h rewrite may apply."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(FEATURES, 8, batch_first=True)
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0][:, 3]).reshape(-1, 1, 2)


class _Backward(nn.Module):
    """A bidirectional LSTM's last step is not its Y_h: no rewrite may apply."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(FEATURES, 4, batch_first=True, bidirectional=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0][:, -1].reshape(-1, 1, 8)


@pytest.mark.parametrize("factory", [_MiddleStep, _Backward])
def test_reads_other_than_the_last_step_are_left_alone(factory):
    torch.manual_seed(0)
    module = factory().eval()
    proto = export_model(module, LENGTH, FEATURES, opset=17)
    x = _windows(2)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run_onnx(proto, x), expected, atol=1e-5, rtol=0)
    lstm = next(node for node in proto.graph.node if node.op_type == "LSTM")
    assert lstm.output[0]  # Y still written and read


def test_a_graph_without_recurrent_ops_comes_back_unchanged():
    torch.manual_seed(0)
    module = TCNForecaster(FEATURES, 2, LENGTH, HORIZON, target_index=[1, 3]).eval()
    plain = export_model(module, LENGTH, FEATURES, opset=17, lean=False)
    lean = lean_recurrent(plain)
    assert [(n.op_type, list(n.input), list(n.output)) for n in lean.graph.node] == [
        (n.op_type, list(n.input), list(n.output)) for n in plain.graph.node
    ]


@pytest.mark.parametrize("cls", [LSTMForecaster, GRUForecaster])
def test_int8_of_the_lean_graph_is_close_to_torch_and_keeps_its_records(cls):
    from edgecomp.targets.onnx.layers import layer_records
    from edgecomp.targets.onnx.quantize import Int8Settings, quantize_int8

    module = _module(cls, 2, True, [1, 3])
    lean = export_model(module, LENGTH, FEATURES, opset=17)
    calibration = _windows(64)
    quantized = quantize_int8(lean, calibration, Int8Settings())
    records = layer_records(lean, quantized.proto, module, precision="int8")
    assert [r["name"] for r in records] == ["rnn.l0", "rnn.l1", "head"]
    assert records[-1]["precision"] == "int8"
    kernel = "DynamicQuantizeLSTM" if cls is LSTMForecaster else "GRU"
    assert [r["node"] for r in records[:2]] == [
        n.name for n in quantized.proto.graph.node if n.op_type == kernel
    ]
    x = _windows(4)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    error = np.abs(run_onnx(quantized.proto, x) - expected).max()
    assert error < 0.05 * np.abs(expected).max()


def test_openvino_runs_the_lean_int8_lstm_like_onnxruntime():
    pytest.importorskip("openvino")
    from edgecomp.targets.onnx.quantize import Int8Settings, quantize_int8
    from edgecomp_runtime.engines.openvino import OpenVinoEngine

    lean = export_model(_module(LSTMForecaster, 2, True, [1, 3]), LENGTH, FEATURES, opset=17)
    proto = quantize_int8(lean, _windows(64), Int8Settings()).proto
    engine = OpenVinoEngine(proto.SerializeToString(), {"model_file": "model.onnx"}, threads=1)
    for batch in (1, 5):
        x = _windows(batch)
        np.testing.assert_allclose(engine.run(x), run_onnx(proto, x), atol=5e-3, rtol=0)


def test_a_recurrent_op_with_sequence_lengths_keeps_its_y():
    """With ``sequence_lens`` Y_h is each sequence's own last step, not Y's last: no rewrite."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((1, 12, FEATURES), np.float32), "W"),
        numpy_helper.from_array(rng.standard_normal((1, 12, 4), np.float32), "R"),
        numpy_helper.from_array(np.array([1], np.int64), "axes"),
        numpy_helper.from_array(np.array(-1, np.int64), "last"),
    ]
    nodes = [
        helper.make_node("Transpose", ["window"], ["x"], perm=[1, 0, 2]),
        helper.make_node("Shape", ["window"], ["shape"], start=0, end=1),
        helper.make_node("Expand", ["five", "shape"], ["lengths"]),
        helper.make_node("GRU", ["x", "W", "R", "", "lengths"], ["y", "y_h"], hidden_size=4),
        helper.make_node("Squeeze", ["y", "axes"], ["y2"]),
        helper.make_node("Gather", ["y2", "last"], ["forecast"], axis=0),
    ]
    inits.append(numpy_helper.from_array(np.array([5], np.int32), "five"))
    graph = helper.make_graph(
        nodes,
        "lengths",
        [helper.make_tensor_value_info("window", TensorProto.FLOAT, ["b", LENGTH, FEATURES])],
        [helper.make_tensor_value_info("forecast", TensorProto.FLOAT, ["b", 4])],
        inits,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    lean = lean_recurrent(proto)
    assert [n.op_type for n in lean.graph.node] == [n.op_type for n in nodes]
    x = _windows(2)
    np.testing.assert_array_equal(run_onnx(lean, x), run_onnx(proto, x))
