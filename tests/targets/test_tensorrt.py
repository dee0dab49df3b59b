"""Jetson TensorRT backend: fp16/Q-DQ graphs, static TensorRT check, host parse+build, errors."""

from __future__ import annotations

import dataclasses
import importlib.util
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from edgecomp.spec import Model
from edgecomp.targets import TargetError, get_profile, get_target, list_profiles
from edgecomp.targets.tensorrt.target import TensorrtTarget
from helpers.testing import assert_close, sine_windows, tiny_model, tiny_spec

onnx = pytest.importorskip("onnx", reason=TensorrtTarget.missing_reason())
ort = pytest.importorskip("onnxruntime", reason=TensorrtTarget.missing_reason())
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgecomp.targets.tensorrt import hostbuild  # noqa: E402
from edgecomp.targets.tensorrt.fp16 import to_fp16  # noqa: E402
from edgecomp.targets.tensorrt.qdq import insert_qdq, plan_qdq  # noqa: E402
from edgecomp.targets.tensorrt.support import check_graph, support_matrix  # noqa: E402

pytestmark = [
    pytest.mark.target,
    pytest.mark.skipif(not TensorrtTarget.is_available(), reason=TensorrtTarget.missing_reason()),
]
needs_rtx = pytest.mark.skipif(
    not hostbuild.available(),
    reason="tensorrt-rtx is not installed: pip install 'edgecomp[tensorrt]'",
)
JETSONS = ("jetson-orin-nano", "jetson-orin-nx", "jetson-agx-orin", "jetson-xavier-nx")
NANO = get_profile("jetson-orin-nano")


def windows(n: int = 64) -> np.ndarray:
    spec = tiny_spec()
    return sine_windows(n, spec.input_len, spec.horizon, spec.n_features, 2).x


def ort_run(proto_or_path: Any, x: np.ndarray) -> np.ndarray:
    data = (
        proto_or_path.SerializeToString() if hasattr(proto_or_path, "graph") else str(proto_or_path)
    )
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def weight_bytes(proto: Any) -> int:
    floats = (TensorProto.FLOAT, TensorProto.FLOAT16)
    arrays = [numpy_helper.to_array(i) for i in proto.graph.initializer if i.data_type in floats]
    return sum(a.nbytes for a in arrays)


def torch_forward(model: Model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model.module(torch.from_numpy(x)).numpy()


@pytest.fixture(scope="module")
def emitted(tmp_path_factory: pytest.TempPathFactory):
    """Emit (arch, precision) for the Orin Nano once per module."""
    cache: dict[tuple[str, str], tuple[Model, Any, Path]] = {}

    def emit(arch: str, precision: str) -> tuple[Model, Any, Path]:
        if (arch, precision) not in cache:
            model = tiny_model(arch)
            out = tmp_path_factory.mktemp(f"{arch}-{precision}")
            calibration = windows() if precision == "int8" else None
            result = TensorrtTarget().emit(
                model, NANO, out, precision=precision, calibration=calibration
            )
            cache[arch, precision] = (model, result, out / result.model_file)
        return cache[arch, precision]

    return emit


# --- profiles and registry -----------------------------------------------------------------------


def test_jetson_profiles_are_tensorrt_aarch64_with_a_known_tensorrt():
    # setup
    profiles = list_profiles()
    # execute / assert
    for name in JETSONS:
        profile = profiles[name]
        assert (profile.backend, profile.arch) == ("tensorrt", "aarch64")
        assert {"fp32", "fp16", "int8"} <= set(profile.precisions)
        assert profile.options["tensorrt"] in support_matrix()
        assert {"jetpack", "compute_capability", "dla_cores", "memory_budget_mb"} <= set(
            profile.options
        )
    assert get_target("tensorrt") is TensorrtTarget


@pytest.mark.parametrize("name", JETSONS)
def test_every_jetson_profile_takes_the_int8_recurrent_graph(tmp_path, name):
    # setup
    profile = get_profile(name)
    # execute
    result = TensorrtTarget().emit(
        tiny_model("gru"), profile, tmp_path, precision="int8", calibration=windows(16)
    )
    # assert
    check = result.lowering["support_check"]
    assert check["ok"] and check["tensorrt"] == profile.options["tensorrt"]
    assert (
        result.lowering["tensorrt"]["compute_capability"] == profile.options["compute_capability"]
    )


# --- fp16 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["lstm", "gru", "tcn"])
def test_fp16_halves_the_weights_keeps_float32_io_and_matches_torch(emitted, arch):
    # setup
    model, result, path = emitted(arch, "fp16")
    _, _, fp32_path = emitted(arch, "fp32")
    graph = onnx.load(str(path))
    x = windows(16)
    # execute
    out = ort_run(path, x)
    # assert
    assert weight_bytes(graph) == weight_bytes(onnx.load(str(fp32_path))) / 2
    float_inits = [i.name for i in graph.graph.initializer if i.data_type == TensorProto.FLOAT]
    assert float_inits == []
    io_types = {v.type.tensor_type.elem_type for v in (*graph.graph.input, *graph.graph.output)}
    assert io_types == {TensorProto.FLOAT}
    assert_close(torch_forward(model, x), out, dtype="fp16")
    assert {r["precision"] for r in result.layers} == {"fp16"}
    assert result.lowering["tensorrt"]["flags"] == ["FP16"]


def test_fp16_keeps_reductions_in_fp32_with_casts_at_the_edges():
    # setup: x -> MatMul -> ReduceMean -> Relu
    w = numpy_helper.from_array(np.eye(3, dtype=np.float32), "w")
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["m"], name="mm"),
        helper.make_node("ReduceMean", ["m"], ["r"], name="mean", axes=[1], keepdims=1),
        helper.make_node("Relu", ["r"], ["y"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 1])],
        [w],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    # execute
    half, kept = to_fp16(proto)
    # assert
    assert set(kept) == {"mean"} and "reduction" in kept["mean"]
    assert Counter(n.op_type for n in half.graph.node)["Cast"] == 4  # in, to fp32, to fp16, out
    np.testing.assert_allclose(ort_run(half, x), ort_run(proto, x), rtol=1e-3)


def test_fp16_keeps_a_node_whose_weight_overflows_fp16_in_fp32():
    # setup
    w = numpy_helper.from_array(np.full((2, 2), 1e6, dtype=np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"], name="big")]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        [w],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    # execute
    half, kept = to_fp16(proto)
    # assert
    assert "beyond fp16" in kept["big"] and "'w'" in kept["big"]
    assert half.graph.initializer[0].data_type == TensorProto.FLOAT
    assert [n.op_type for n in half.graph.node] == ["MatMul"]


# --- int8 Q/DQ -----------------------------------------------------------------------------------


def test_int8_tcn_has_qdq_on_every_conv_and_gemm_input(emitted):
    # setup
    model, result, path = emitted("tcn", "int8")
    graph = onnx.load(str(path)).graph
    producers = {t: n for n in graph.node for t in n.output}
    inits = {i.name: i for i in graph.initializer}
    # execute
    compute = [n for n in graph.node if n.op_type in ("Conv", "Gemm")]
    # assert
    assert compute
    for node in compute:
        act, weight = producers[node.input[0]], producers[node.input[1]]
        assert act.op_type == weight.op_type == "DequantizeLinear"
        assert producers[act.input[0]].op_type == "QuantizeLinear"
        q_weight = inits[weight.input[0]]
        assert q_weight.data_type == TensorProto.INT8
        scales = numpy_helper.to_array(inits[weight.input[1]])
        assert scales.shape == (q_weight.dims[_axis(weight)],)  # one scale per output channel
        for dq in (act, weight):
            assert not numpy_helper.to_array(inits[dq.input[2]]).any()  # symmetric: zero point 0
    assert {r["method"] for r in result.layers} == {"explicit-qdq"}
    assert result.lowering["tensorrt"]["flags"] == ["INT8", "FP16"]


def _axis(node: Any) -> int:
    return next(a.i for a in node.attribute if a.name == "axis")


@pytest.mark.parametrize("arch", ["lstm", "gru"])
def test_int8_recurrent_layers_stay_fp16_with_reason_and_the_head_is_qdq(emitted, arch):
    # setup
    _, result, path = emitted(arch, "int8")
    graph = onnx.load(str(path)).graph
    inits = {i.name: i for i in graph.initializer}
    # execute
    rnn = [n for n in graph.node if n.op_type == arch.upper()]
    by_op = {r["op_type"]: r for r in result.layers}
    # assert
    assert rnn and all(inits[n.input[1]].data_type == TensorProto.FLOAT16 for n in rnn)
    assert by_op[arch.upper()]["precision"] == "fp16"
    assert "Q/DQ" in by_op[arch.upper()]["reason"]
    assert by_op["Gemm"]["method"] == "explicit-qdq"


@pytest.mark.parametrize("arch", ["lstm", "gru", "tcn"])
def test_int8_runs_under_onnxruntime_close_to_torch(emitted, arch):
    # setup
    model, _, path = emitted(arch, "int8")
    x = windows(32)
    # execute / assert
    assert_close(torch_forward(model, x), ort_run(path, x), dtype="int8")


def test_matmul_between_two_activations_is_left_in_float():
    # setup
    nodes = [helper.make_node("MatMul", ["x", "x"], ["y"], name="mm")]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    # execute
    plan = plan_qdq(proto.graph)
    out = insert_qdq(proto, plan, {})
    # assert
    assert plan.axes == {} and "not a constant" in plan.skipped["mm"]
    assert [n.op_type for n in out.graph.node] == ["MatMul"]


# --- static TensorRT check -----------------------------------------------------------------------


class DetNet(nn.Module):
    """A forecaster with a Det node, which no TensorRT ONNX parser supports."""

    def __init__(self, input_len: int = 8, n_features: int = 4, horizon: int = 3, n_out: int = 2):
        super().__init__()
        self.head = nn.Linear(input_len * n_features, horizon * n_out)
        self.shape = (horizon, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        det = torch.det(x[:, :4, :4])
        return self.head(x.flatten(1)).view(-1, *self.shape) + det[:, None, None] * 0


def test_unsupported_op_fails_early_naming_the_node(tmp_path):
    # setup
    model = Model(module=DetNet().eval(), spec=tiny_spec("lstm"))
    # execute
    with pytest.raises(TargetError) as info:
        TensorrtTarget().emit(model, NANO, tmp_path, precision="fp32")
    # assert
    message = str(info.value)
    assert "Det" in message and "node '" in message and "TensorRT 10.3" in message
    assert list(tmp_path.iterdir()) == []


def test_opset_newer_than_the_profile_tensorrt_is_refused(tmp_path):
    # setup: Xavier NX runs TensorRT 8.5, which reads opset 17
    profile = dataclasses.replace(
        get_profile("jetson-xavier-nx"),
        options={**get_profile("jetson-xavier-nx").options, "opset": 18},
    )
    # execute
    with pytest.raises(TargetError, match=r"opset 18.*TensorRT 8\.5.*up to opset 17"):
        TensorrtTarget().emit(tiny_model("tcn"), profile, tmp_path, precision="fp32")


def test_nonzero_zero_point_and_foreign_domain_are_refused():
    # setup
    zero = numpy_helper.from_array(np.array(3, dtype=np.int8), "zp")
    scale = numpy_helper.from_array(np.array(0.1, dtype=np.float32), "s")
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["y"], name="q")]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.INT8, [2])],
        [zero, scale],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    # execute / assert
    with pytest.raises(TargetError, match="node 'q'.*zero point of 0"):
        check_graph(proto, "8.6", "jetson-orin-nano")
    proto.graph.node[0].domain = "com.microsoft"
    with pytest.raises(TargetError, match="domain 'com.microsoft'"):
        check_graph(proto, "8.6", "jetson-orin-nano")
    with pytest.raises(TargetError, match=r"TensorRT '7\.1'.*Available"):
        check_graph(proto, "7.1", "old")


def test_cli_build_for_jetson_fails_early_on_a_too_new_opset(
    tmp_path, traffic_checkpoints, traffic_path
):
    # setup
    from edgecomp.cli import main

    out = tmp_path / "x.edgepkg"
    args = ["build", str(traffic_checkpoints["tcn"]), "--data", str(traffic_path)]
    args += ["--target", "jetson-xavier-nx", "-p", "fp16", "--option", "opset=18", "-o", str(out)]
    # execute
    result = CliRunner().invoke(main, args)
    # assert
    assert result.exit_code != 0
    assert "opset 18" in result.output and "TensorRT 8.5" in result.output
    assert not out.exists()


# --- host-side TensorRT parse + build ------------------------------------------------------------


@needs_rtx
@pytest.mark.parametrize("arch,precision", [("lstm", "fp16"), ("gru", "int8"), ("tcn", "int8")])
def test_tensorrt_parses_and_builds_the_emitted_graph(emitted, arch, precision):
    # setup
    _, result, path = emitted(arch, precision)
    # execute
    proof = result.lowering["host_build"]
    # assert
    assert proof["parsed"] and proof["built"] and proof["plan_bytes"] > 0
    assert proof["builder"].startswith("tensorrt-rtx")
    assert result.toolchain["tensorrt-rtx"] != "not installed"


@needs_rtx
def test_tensorrt_parser_refusal_names_the_node():
    # setup: an ONNX Det node, which TensorRT's parser has no importer for
    nodes = [helper.make_node("Det", ["x"], ["y"], name="the_det")]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("window", TensorProto.FLOAT, ["b", 3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b"])],
    )
    graph.node[0].input[0] = "window"
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    # execute / assert
    with pytest.raises(TargetError, match="the_det"):
        hostbuild.host_build(proto.SerializeToString(), "window", [[1, 3, 3]] * 3)


# --- refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize("enabled,match", [(False, "int4_weight_only"), (True, "no int4")])
def test_int4_is_refused_with_the_reason(tmp_path, enabled, match):
    profile = dataclasses.replace(NANO, options={**NANO.options, "int4_weight_only": enabled})
    with pytest.raises(TargetError, match=match):
        TensorrtTarget().emit(tiny_model(), profile, tmp_path, precision="int4")


@pytest.mark.skipif(
    importlib.util.find_spec("torch_tensorrt") is not None, reason="torch_tensorrt is installed"
)
def test_aot_is_refused_where_torch_tensorrt_is_missing(tmp_path):
    profile = dataclasses.replace(NANO, options={**NANO.options, "aot": True})
    with pytest.raises(TargetError, match="torch_tensorrt cannot be imported"):
        TensorrtTarget().emit(tiny_model(), profile, tmp_path, precision="fp16")


@pytest.mark.parametrize(
    "option,value,match",
    [
        ("batch_sizes", [8, 1, 64], "batch_sizes"),
        ("host_build", "yes", "host_build"),
        ("tensorrt", "9.9", "Available"),
        ("opset", -1, "opset"),
    ],
)
def test_bad_profile_option_is_named(tmp_path, option, value, match):
    profile = dataclasses.replace(NANO, options={**NANO.options, option: value})
    with pytest.raises(TargetError, match=match):
        TensorrtTarget().emit(tiny_model(), profile, tmp_path, precision="fp32")


def test_int8_without_calibration_is_refused(tmp_path):
    with pytest.raises(TargetError, match="calibration windows"):
        TensorrtTarget().emit(tiny_model(), NANO, tmp_path, precision="int8")


# --- pipeline: per-horizon error through the runtime's engine ------------------------------------


def test_build_records_per_horizon_error_and_builder_settings(
    tmp_path, traffic_checkpoints, traffic_path
):
    # setup
    from edgecomp.pipeline import BuildConfig
    from edgecomp.workflow import build_artifact

    config = BuildConfig(target="jetson-agx-orin", precision="int8", calibration_windows=64)
    # execute
    with pytest.warns(RuntimeWarning, match="TensorRT is not used"):
        result = build_artifact(
            str(traffic_checkpoints["tcn"]), traffic_path, config, tmp_path / "a.edgepkg"
        )
    # assert
    manifest = result.manifest
    metrics = manifest["metrics"]
    assert len(metrics["artifact"]["mae"]) == manifest["spec"]["horizon"]
    assert metrics["artifact"]["mae"] != metrics["reference"]["mae"]  # int8 changes the numbers
    builder = manifest["recipe"]["lowering"]["tensorrt"]
    assert builder["version"] == "10.3" and builder["shapes"][0][0] == 1
    assert manifest["target"]["backend"] == "tensorrt"


def test_bench_on_a_host_without_tensorrt_says_it_measured_the_fallback(
    tmp_path, traffic_checkpoints, traffic_path
):
    # setup
    from edgecomp.bench.report import render_markdown
    from edgecomp.bench.runner import bench_artifact
    from edgecomp.pipeline import BuildConfig
    from edgecomp.workflow import build_artifact

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed: the bench measures TensorRT itself")
    config = BuildConfig(target="jetson-orin-nano", precision="fp16")
    with pytest.warns(RuntimeWarning):
        path = build_artifact(
            str(traffic_checkpoints["gru"]), traffic_path, config, tmp_path / "g.edgepkg"
        ).path
    # execute
    with pytest.warns(RuntimeWarning, match="TensorRT is not used"):
        report = bench_artifact(path, min_iters=3, min_seconds=0.0, warmup=0, memory=False)
    # assert
    assert report["engine"]["native"] is False
    assert "measured the fallback onnxruntime" in report["engine"]["note"]
    assert "not TensorRT" in render_markdown([report])
