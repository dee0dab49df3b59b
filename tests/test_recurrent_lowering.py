"""The hoisted recurrent lowering (targets/onnx/recurrent.py) and the numpy step kernel it shares
its cell layout with (edgecomp.streaming, edgecomp_runtime.step)."""

from __future__ import annotations

import io
import logging

import numpy as np
import pytest
import torch

import edgecomp_runtime as ecr
from edgecomp.models import GRUForecaster, LSTMForecaster, TCNForecaster
from edgecomp.pipeline import BuildConfig
from edgecomp.streaming import step_kernel, step_module
from edgecomp.targets.onnx.recurrent import (
    RecurrentLoweringError,
    hoisted_graph,
    lower_recurrent,
    scan_graph,
)
from edgecomp.workflow import build_artifact
from edgecomp_runtime.step import StepRunner
from helpers.testing import recurrent_module, run_onnx

ort = pytest.importorskip("onnxruntime", reason="the lowering is checked on onnxruntime")
onnx = pytest.importorskip("onnx")
CASES = [  # (class, features, hidden, layers, target_index, residual)
    (LSTMForecaster, 5, 8, 2, [4, 0], True),
    (GRUForecaster, 5, 8, 2, [4, 0], True),
    (LSTMForecaster, 3, 6, 1, None, False),
    (GRUForecaster, 3, 6, 3, None, True),
]


@pytest.mark.parametrize("scan", [False, True], ids=["unrolled", "scan"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0].__name__}-{c[3]}layers")
def test_hoisted_graph_equals_torch(case, scan):
    # setup
    module = recurrent_module(*case)
    x = torch.randn(7, 10, case[1])
    # execute
    proto = hoisted_graph(module, 10, case[1], scan=scan)
    # assert
    ops = [node.op_type for node in proto.graph.node]
    assert not set(ops) & {"LSTM", "GRU"} and ops.count("MatMul") == case[3]
    assert ops.count("Scan") == (case[3] if scan else 0)
    with torch.no_grad():
        expected = module(x).numpy()
    np.testing.assert_allclose(run_onnx(proto, x.numpy()), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cls", [LSTMForecaster, GRUForecaster])
def test_int8_hoisted_graph_is_quantized_and_close_to_torch(cls):
    # setup: windows of scaled-like values
    module = recurrent_module(cls, 5, 16, 2, [4, 0], True, length=12)
    x = torch.randn(32, 12, 5)
    logging.getLogger().setLevel(logging.ERROR)
    # execute
    proto = lower_recurrent(module, 12, 5, int8=True)
    # assert: int8 GEMMs, within the int8 tolerance of edgecomp.testing in scaled units
    ops = [node.op_type for node in proto.graph.node]
    assert ops.count("MatMulInteger") >= 2 * 12 - 1 and "MatMul" not in ops
    with torch.no_grad():
        expected = module(x).numpy()
    got = run_onnx(proto, x.numpy())
    assert np.abs(got - expected).max() < 0.1
    assert np.abs(got - expected).max() > 0  # int8 really changes the numbers


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0].__name__}-{c[3]}layers")
def test_int8_scan_graph_matches_torch_and_stores_each_weight_once(case):
    # setup
    module = recurrent_module(*case, length=12)
    x = torch.randn(32, 12, case[1])
    # execute
    proto = scan_graph(module, 12, case[1])
    # assert: one Scan per layer; every weight matrix an int8 initializer, stored once
    ops = [node.op_type for node in proto.graph.node]
    bodies = [n.attribute[0].g for n in proto.graph.node if n.op_type == "Scan"]
    assert len(bodies) == case[3] and not set(ops) & {"LSTM", "GRU", "MatMul", "Gemm"}
    inits = [*proto.graph.initializer, *(i for body in bodies for i in body.initializer)]
    matrices = [i for i in inits if len(i.dims) == 2]
    assert len(matrices) == 2 * case[3] + 1  # W_x and W_h per layer, the head
    assert all(i.data_type == onnx.TensorProto.INT8 for i in matrices)
    for body in bodies:  # the recurrent GEMM is int8 in the body, not unrolled per step
        assert [n.op_type for n in body.node].count("MatMulInteger") == 1
    with torch.no_grad():
        expected = module(x).numpy()
    diff = np.abs(run_onnx(proto, x.numpy()) - expected).max()
    assert 0 < diff < 0.1  # int8, within the int8 tolerance of edgecomp.testing (scaled units)


def test_the_runtime_checks_a_scan_body_like_the_graph():
    from onnx import helper

    from edgecomp_runtime.opcheck import check_onnx

    # setup: the scan lowering of a GRU, and copies with a refused op in the body or nested
    module = recurrent_module(GRUForecaster, 3, 6, 1, None, False)
    proto = scan_graph(module, 10, 3)
    io = {
        side: [{"name": v.name, "dtype": "float32", "shape": ["batch", *shape]}]
        for side, v, shape in (
            ("inputs", proto.graph.input[0], [10, 3]),
            ("outputs", proto.graph.output[0], [4, 3]),
        )
    }
    manifest = {"model_file": "model.onnx", "io": io}
    scan = next(n for n in proto.graph.node if n.op_type == "Scan")
    evil, nested = onnx.ModelProto(), onnx.ModelProto()
    evil.CopyFrom(proto)
    body = next(n for n in evil.graph.node if n.op_type == "Scan").attribute[0].g
    body.node.append(helper.make_node("RandomNormal", [], ["r"], shape=[1]))
    nested.CopyFrom(proto)
    body = next(n for n in nested.graph.node if n.op_type == "Scan").attribute[0].g
    body.node.append(helper.make_node("Scan", ["a"], ["b"], body=scan.attribute[0].g))
    # execute / assert: onnxruntime and OpenVINO engines take it; TensorRT's set has no Scan
    assert check_onnx(proto.SerializeToString(), manifest, "onnx") is None
    check_onnx(proto.SerializeToString(), manifest, "openvino")
    with pytest.raises(ecr.ArtifactError, match="operator Scan is not one the 'tensorrt'"):
        check_onnx(proto.SerializeToString(), manifest, "tensorrt")
    with pytest.raises(ecr.ArtifactError, match="operator RandomNormal is not one"):
        check_onnx(evil.SerializeToString(), manifest, "onnx")
    with pytest.raises(ecr.ArtifactError, match="carries a subgraph"):
        check_onnx(nested.SerializeToString(), manifest, "onnx")


def test_hoisted_lowering_refuses_other_modules():
    tcn = TCNForecaster(3, 1, 16, 2, channels=4, target_index=[0])
    with pytest.raises(RecurrentLoweringError, match="TCNForecaster"):
        hoisted_graph(tcn, 16, 3)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0].__name__}-{c[3]}layers")
def test_step_kernel_equals_the_onnx_step_model(case):
    # setup
    from edgecomp.streaming import export_step

    module = recurrent_module(*case)
    step, size, _ = step_module(module)
    cell, data = step_kernel(module)
    section = {"step_file": "step.onnx", "state_size": size, "kernel": {"file": "k", "cell": cell}}
    onnx_runner = StepRunner(export_step(step, case[1], size), section, threads=1)
    kernel_runner = StepRunner(export_step(step, case[1], size), section, threads=1, kernel=data)
    readings = np.random.default_rng(0).normal(size=(30, case[1])).astype(np.float32)
    # execute
    expected, got = onnx_runner.run(readings), kernel_runner.run(readings)
    # assert: same forecasts and the same state, packed the same way
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(kernel_runner.state, onnx_runner.state, atol=1e-5)
    kernel_runner.state = onnx_runner.state * 0  # the state setter resets the kernel's state
    kernel_runner.reset()
    np.testing.assert_allclose(kernel_runner.run(readings[:3]), expected[:3], atol=1e-5)


def test_a_kernel_of_the_wrong_shape_is_refused():
    module = recurrent_module(LSTMForecaster, 3, 6, 1, None, False)
    step, size, _ = step_module(module)
    _, data = step_kernel(module)
    with np.load(io.BytesIO(data)) as arrays:
        bad = {k: arrays[k] for k in arrays.files} | {"w0": np.zeros((2, 2), np.float32)}
    buffer = io.BytesIO()
    np.savez(buffer, **bad)
    section = {"step_file": "s", "state_size": size, "kernel": {"file": "k.npz", "cell": "lstm"}}
    with pytest.raises(ecr.ArtifactError, match=r"k.npz: layer 0 kernel array of shape \[2, 2\]"):
        StepRunner(export_step_bytes(step, 3, size), section, threads=1, kernel=buffer.getvalue())


def export_step_bytes(step, features, size):
    from edgecomp.streaming import export_step

    return export_step(step, features, size)


@pytest.mark.parametrize("lowering", ["default", "hoisted", "scan"])
def test_build_with_each_lowering_runs_through_the_runtime(
    lowering, tmp_path, traffic_path, traffic_checkpoints
):
    # execute
    config = BuildConfig(precision="int8", options={"lowering": lowering, "engine": "onnx"})
    result = build_artifact(
        str(traffic_checkpoints["gru"]), traffic_path, config, tmp_path / "a.edgepkg"
    )
    # assert: the option round-trips, the chosen lowering is recorded, and the artifact runs
    model = ecr.load(result.path)
    recorded = model.manifest["recipe"]["lowering"]
    assert recorded["options"]["_data"]["lowering"] == lowering
    assert recorded["candidate_lowering"] == lowering
    ops = set(_ops(result.path))
    gru = [r for r in model.manifest["layers"] if r["op_type"] == "GRU"]
    if lowering != "default":
        assert "GRU" not in ops and "MatMulInteger" in ops  # the GRU is int8 now
        assert [r["precision"] for r in gru] == ["int8"]
        assert ("Scan" in ops) == (lowering == "scan")
    else:  # float compute, weights stored int8: the record says so
        assert "GRU" in ops and [(r["precision"], r["method"]) for r in gru] == [
            ("fp32", "int8-storage")
        ]
    parity = model.manifest["recipe"]["lowering"]["parity"]
    assert parity["max_abs_diff"] < 0.1  # the build verified it against torch
    window = np.full((model.input_len, len(model.features)), 100.0)
    assert np.isfinite(model.predict(window)).all()


def _ops(path) -> list[str]:
    import onnx

    data = ecr.read_artifact(path)[1]["model.onnx"]
    return [n.op_type for n in onnx.load_from_string(data).graph.node]


def test_openvino_runs_the_scan_artifact_like_onnxruntime(
    tmp_path, traffic_path, traffic_checkpoints
):
    pytest.importorskip("openvino", reason="the OpenVINO engine is optional")
    # setup
    config = BuildConfig(precision="int8", options={"lowering": "scan", "engine": "openvino"})
    # execute
    result = build_artifact(
        str(traffic_checkpoints["gru"]), traffic_path, config, tmp_path / "a.edgepkg"
    )
    # assert: measured on OpenVINO (its candidate record), and both engines agree
    record = result.manifest["recipe"]["lowering"]
    assert record["engine"] == "openvino" and record["candidate_lowering"] == "scan"
    assert {m["engine"] for m in record["candidates"]["measured"]} == {"openvino"}
    window = np.random.default_rng(0).uniform(0, 200, size=(5, 16, 22))
    on_ov = ecr.load(result.path, engine="openvino").predict(window)
    on_ort = ecr.load(result.path, engine="onnx").predict(window)
    # the build may have measured OpenVINO's bf16 within its parity limit and recorded it
    bf16 = record.get("openvino", {}).get("inference_precision") == "bf16"
    np.testing.assert_allclose(on_ov, on_ort, atol=(1e-2 if bf16 else 1e-3) * np.abs(on_ort).max())


def test_keep_float_keeps_the_int8_gru_weights_float(tmp_path, traffic_path, traffic_checkpoints):
    # setup
    options = {"lowering": "default", "engine": "onnx", "keep_float": ["rnn"]}
    config = BuildConfig(precision="int8", options=options)
    # execute
    result = build_artifact(
        str(traffic_checkpoints["gru"]), traffic_path, config, tmp_path / "a.edgepkg"
    )
    # assert: no int8 initializer, the record names the option, no storage record
    data = ecr.read_artifact(result.path)[1]["model.onnx"]
    inits = onnx.load_from_string(data).graph.initializer
    assert not [i.name for i in inits if i.data_type == onnx.TensorProto.INT8 and len(i.dims) == 3]
    (gru,) = [r for r in result.manifest["layers"] if r["op_type"] == "GRU"]
    assert gru["method"] is None and "keep_float" in gru["reason"]
    assert "int8_storage" not in result.manifest["recipe"]["lowering"]["quantization"]
