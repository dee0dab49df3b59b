"""The int8-compute GRU (targets/onnx/gru_int8.py): torch semantics, int8 GEMMs, and the int8
Scan lowering (targets/onnx/recurrent.py) that computes the same."""

from __future__ import annotations

import collections
import re

import numpy as np
import pytest
import torch

from edgecomp.models import GRUForecaster, LSTMForecaster
from edgecomp.targets.onnx.gru_int8 import calibrate, gru_int8_graph
from edgecomp.targets.onnx.recurrent import RecurrentLoweringError, scan_graph
from helpers.testing import recurrent_module, run_onnx

ort = pytest.importorskip("onnxruntime", reason="the lowering is checked on onnxruntime")
onnx = pytest.importorskip("onnx")
CASES = [  # (features, hidden, layers, target_index, residual)
    (5, 8, 2, [4, 0], True),
    (3, 6, 1, None, False),
    (4, 16, 3, None, True),
]


def _reference(module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("h_mode", ["fixed", "dynamic"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[2]}layers-h{c[1]}")
def test_integer_form_follows_torch_gru(case, h_mode):
    # setup
    module = recurrent_module(GRUForecaster, *case)
    x = np.random.default_rng(0).standard_normal((7, 10, case[0])).astype(np.float32)
    # execute
    proto = gru_int8_graph(module, 10, case[0], h_mode=h_mode)
    out = run_onnx(proto, x)
    # assert: int8 rounding only (a wrong gate or bias would be off by the output's own size)
    ref = _reference(module, x)
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() < 0.03 * np.abs(ref).max()


def test_qdq_form_follows_torch_gru_with_calibrated_scales():
    # setup
    module = recurrent_module(GRUForecaster, *CASES[0])
    x = np.random.default_rng(1).standard_normal((9, 10, 5)).astype(np.float32)
    # execute
    proto = gru_int8_graph(module, 10, 5, form="qdq", scales=calibrate(module, x))
    out = run_onnx(proto, x)
    # assert
    ref = _reference(module, x)
    assert np.abs(out - ref).max() < 0.05 * np.abs(ref).max()


def test_every_gemm_is_int8_and_each_weight_is_stored_once():
    # setup
    features, hidden, layers = 5, 8, 2
    module = recurrent_module(GRUForecaster, features, hidden, layers, [4, 0], True)
    # execute
    proto = gru_int8_graph(module, 10, features)
    # assert: no float GEMM or GRU op; one int8 initializer per weight matrix (W, U per layer,
    # the head), the recurrent GEMM every step after the first (h starts at zero)
    ops = collections.Counter(n.op_type for n in proto.graph.node)
    assert not {"GRU", "MatMul", "Gemm"} & set(ops)
    int8 = [i for i in proto.graph.initializer if i.data_type == onnx.TensorProto.INT8]
    assert len(int8) == 2 * layers + 1
    # the window's projection (and its residual) + layer 2's + head + 9 steps x 2 layers
    assert ops["MatMulInteger"] == 2 + 1 + 1 + 9 * layers
    used = collections.Counter(i for n in proto.graph.node for i in n.input)
    recurrent = [i.name for i in int8 if re.match(r"w_h\d", i.name)]
    assert len(recurrent) == layers and all(used[name] == 9 for name in recurrent)


def test_refuses_what_it_does_not_lower():
    lstm = recurrent_module(LSTMForecaster, 5, 8, 1, None, True)
    with pytest.raises(RecurrentLoweringError, match="GRU"):
        gru_int8_graph(lstm, 10, 5)
    gru = recurrent_module(GRUForecaster, *CASES[0])
    with pytest.raises(RecurrentLoweringError, match="needs scales"):
        gru_int8_graph(gru, 10, 5, form="qdq")
    with pytest.raises(RecurrentLoweringError, match="unknown"):
        gru_int8_graph(gru, 10, 5, form="int4")


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[2]}layers-h{c[1]}")
def test_the_int8_scan_lowering_computes_the_same_int8_gru(case):
    # setup
    module = recurrent_module(GRUForecaster, *case)
    x = np.random.default_rng(2).standard_normal((6, 10, case[0])).astype(np.float32)
    # execute
    unrolled = run_onnx(gru_int8_graph(module, 10, case[0]), x)
    scan = run_onnx(scan_graph(module, 10, case[0]), x)
    # assert: the same quantization at every GEMM, so the same forecast up to float summation
    assert np.abs(unrolled - scan).max() <= 1e-4 * np.abs(scan).max()


def test_the_windows_quantization_residual_keeps_an_outlier_feature_accurate():
    # setup: one feature 20x the others' range sets the window's one int8 scale
    features = CASES[1][0]
    module = recurrent_module(GRUForecaster, *CASES[1])
    x = np.random.default_rng(0).standard_normal((7, 10, features)).astype(np.float32)
    x[:, :, 0] *= 20
    # execute
    proto = scan_graph(module, 10, features)
    out = run_onnx(proto, x)
    # assert: two int8 GEMMs read the window's weight; one alone erred 0.014 of the output range
    window_weight = next(n.input[1] for n in proto.graph.node if n.op_type == "MatMulInteger")
    readers = [n for n in proto.graph.node if window_weight in n.input]
    assert len(readers) == 2
    ref = _reference(module, x)
    assert np.abs(out - ref).max() < 0.005 * np.abs(ref).max()
