"""ARM TFLite backend: conversion and parity per architecture and precision, layer records,
keep_float, min-max calibration, refusals."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from edgecomp.models import build_model
from edgecomp.spec import Model
from edgecomp.targets import TargetError, get_profile, get_target, list_profiles
from edgecomp.targets.tflite import TfliteTarget
from helpers.testing import TOLERANCES, assert_close, sine_windows, tiny_model, tiny_spec

pytest.importorskip("litert_torch", reason=TfliteTarget.missing_reason())
pytestmark = [
    pytest.mark.target,
    pytest.mark.skipif(not TfliteTarget.is_available(), reason=TfliteTarget.missing_reason()),
]

from edgecomp_runtime.engines.litert import LiteRtEngine  # noqa: E402

PROFILE = get_profile("arm64-gateway")
ARCHS = ("lstm", "gru", "tcn")
PRECISIONS = ("fp32", "int8", "int8-dynamic", "int4")
EXPECTED = {  # what every compute layer becomes: (precision, method)
    "fp32": ("fp32", None),
    "int8": ("int8", "static"),
    "int8-dynamic": ("int8", "dynamic"),
    "int4": ("int4", "dynamic"),
}
RECURRENT = ("lstm", "gru")  # written as a WHILE loop (loop.py): int8 there is hybrid int8
UNROLLED = {"recurrent_lowering": "unrolled"}
FAST = {("lstm", "int8"), ("gru", "int8-dynamic"), ("tcn", "int4"), ("tcn", "fp32")}
_CACHE: dict[tuple, Any] = {}


def windows(n: int = 64, seed: int = 0) -> np.ndarray:
    spec = tiny_spec()
    return sine_windows(n, spec.input_len, spec.horizon, spec.n_features, 2, seed).x


def emit(
    arch: str, precision: str, tmp: Path, model: Model | None = None, **options: Any
) -> tuple[Model, Any, bytes]:
    """Emit (cached per arguments): the model, the EmitResult and the written file's bytes."""
    key = (arch, precision, model is None, tuple(sorted((k, str(v)) for k, v in options.items())))
    if key not in _CACHE:
        model = model or tiny_model(arch)
        profile = dataclasses.replace(PROFILE, options={**PROFILE.options, **options})
        out = tmp / "-".join(map(str, key[:2]))
        out.mkdir(parents=True)
        calibration = windows() if precision == "int8" else None
        result = TfliteTarget().emit(
            model, profile, out, precision=precision, calibration=calibration
        )
        _CACHE[key] = (model, result, (out / result.model_file).read_bytes())
    return _CACHE[key]


def engine(result: Any, data: bytes) -> LiteRtEngine:
    manifest = {"model_file": result.model_file, "io": result.io, "recipe": {"lowering": {}}}
    return LiteRtEngine(data, manifest, threads=1)


def torch_forward(model: Model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model.module(torch.from_numpy(x)).numpy()


def _matrix() -> list[Any]:
    return [
        pytest.param(a, p, marks=() if (a, p) in FAST else pytest.mark.slow)
        for a in ARCHS
        for p in PRECISIONS
    ]


# --- registry and profiles -------------------------------------------------------------------


def test_registry_and_arm_profiles():
    assert get_target("tflite") is TfliteTarget
    arm = [p for p in list_profiles().values() if p.backend == "tflite"]
    assert {p.name for p in arm} >= {"rpi5-cortex-a76", "arm64-gateway"}
    for profile in arm:
        assert profile.arch == "aarch64"
        assert set(profile.precisions) <= TfliteTarget.supported_precisions
        assert profile.options["xnnpack"] is True and profile.options["threads"] >= 1


# --- conversion and parity -------------------------------------------------------------------


@pytest.mark.parametrize(("arch", "precision"), _matrix())
def test_emit_converts_and_matches_torch(arch, precision, tmp_path_factory):
    # setup / execute
    model, result, data = emit(arch, precision, tmp_path_factory.mktemp("emit"))
    x = windows(32, seed=1)
    # assert: the file runs on LiteRT through the runtime's engine, close to torch
    assert data[4:8] == b"TFL3" and result.files == ["model.tflite"]
    assert_close(torch_forward(model, x), engine(result, data).run(x), dtype=precision[:4])
    assert result.lowering["parity"]["max_abs_diff"] <= TOLERANCES[precision[:4]][0] * 10
    assert result.io["inputs"][0]["shape"] == ["batch", 8, 4]
    assert result.io["outputs"][0]["shape"] == ["batch", 3, 2]
    # every compute layer became what the precision promises, and the records say so
    want = ("int8", "dynamic") if (arch, precision) in {(a, "int8") for a in RECURRENT} else None
    assert {(la["precision"], la["method"]) for la in result.layers} == {
        want or EXPECTED[precision]
    }
    assert all(la["reason"] for la in result.layers)
    assert "head" in {la["name"] for la in result.layers}


@pytest.mark.parametrize(("arch", "options"), [("lstm", UNROLLED), ("tcn", {})])
def test_full_int8_has_int8_io_with_recorded_scale_and_zero_point(arch, options, tmp_path_factory):
    _, result, data = emit(arch, "int8", tmp_path_factory.mktemp("io"), **options)
    details = engine(result, data)
    for side, detail in (("inputs", details._input), ("outputs", details._output)):
        entry = result.io[side][0]
        assert entry["dtype"] == "int8" and detail["dtype"] == np.int8
        assert (entry["scale"], entry["zero_point"]) == detail["quantization"]


def test_recurrent_steps_share_one_record_per_module(tmp_path_factory):
    _, result, _ = emit("lstm", "int8", tmp_path_factory.mktemp("rec"), **UNROLLED)
    by_name = {la["name"]: la for la in result.layers}
    # one input projection for all steps (a 1x1 convolution), then one hidden matmul per step
    # but the first (its state is zero)
    assert by_name["rnn[0]"]["op_type"] == "CONV_2D" and by_name["rnn[0]"]["ops"] == 1
    steps = by_name["rnn[1..7]"]
    assert steps["op_type"] == "FULLY_CONNECTED" and steps["ops"] == 8 - 1
    assert "min-max ranges over 64 calibration windows" in steps["reason"]
    assert "unrolled by edgecomp" in result.lowering["recurrent_lowering"]


def test_recurrent_weights_are_stored_once_and_steps_carry_no_bias(tmp_path_factory):
    # setup / execute
    _, result, data = emit("lstm", "int8", tmp_path_factory.mktemp("once"), **UNROLLED)
    from edgecomp.targets.tflite.graph import Graph

    graph = Graph(data)
    steps = [op for op in graph.ops if op.op_type == "FULLY_CONNECTED"][:-1]  # the head is last
    # assert: every step's hidden matmul reads the same int8 weight tensor and has no bias (an
    # int8 bias per step would be an int32 vector with its own per-channel scales)
    assert len(steps) == 8 - 1
    assert len({op.inputs[1] for op in steps}) == 1
    assert graph.dtypes[steps[0].inputs[1]] == "INT8"
    assert all(len(op.inputs) < 3 or op.inputs[2] < 0 for op in steps)


def test_a_batch_runs_64_windows_per_invoke_and_equals_one_by_one(tmp_path_factory):
    # setup
    _, result, data = emit("lstm", "int8", tmp_path_factory.mktemp("batch"), **UNROLLED)
    assert result.lowering["batch_rows"] == 64
    manifest = {"model_file": result.model_file, "io": result.io}
    batched = LiteRtEngine(data, manifest | {"recipe": {"lowering": result.lowering}}, threads=1)
    single = LiteRtEngine(data, manifest | {"recipe": {"lowering": {}}}, threads=1)
    x = windows(64 + 6, seed=3)
    # execute
    out = batched.run(x)
    # assert: 64 windows went through the pinned batch-64 copy, row by row equal to one invoke
    # per window (int8 outputs: the same integers)
    assert batched.batch_rows == 64 and single.batch_rows == 1
    assert batched._local.by_rows[64].get_input_details()[0]["shape"][0] == 64
    np.testing.assert_array_equal(out, single.run(x))


def test_int4_group_size_is_chosen_per_layer_and_divides_its_inputs(tmp_path_factory):
    # setup: a 64-unit LSTM: its per-step and head matmuls read 64 inputs, its input 4
    spec = dataclasses.replace(tiny_spec("lstm"), hparams={"hidden": 64, "layers": 1})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Model(module=build_model(spec).eval(), spec=spec, source="test")
    # execute
    _, result, data = emit("lstm64", "int4", tmp_path_factory.mktemp("g"), model=model, **UNROLLED)
    # assert: groups of 32 (two per 64 inputs) on every matmul; the 4-input projection stays
    # channel-wise; the records say which
    quant = result.lowering["quantization"]
    assert quant["int4_group_size"] == "auto"
    assert quant["int4_groups"] == {"32": 8, "channel": 1}
    reasons = {la["name"]: la["reason"] for la in result.layers}
    assert "groups of 32" in reasons["head"] and "per channel" in reasons["rnn[0]"]
    x = windows(8, seed=4)
    assert_close(torch_forward(model, x), engine(result, data).run(x), dtype="int4")


def test_int4_groups_divide_the_input_dimension():
    from edgecomp.targets.tflite.graph import Layer, Op
    from edgecomp.targets.tflite.quantize import QuantSettings

    class _Graph:
        shapes = [[], [8, 96], [8, 48], [8, 16], [8, 64]]

    layers = [Layer(f"l{i}", Op(i, "FULLY_CONNECTED", "", (0, i), (9,))) for i in range(1, 5)]
    auto = QuantSettings().groups(_Graph(), layers, kept={})
    fixed = QuantSettings(int4_group_size="64").groups(_Graph(), layers, kept={"l4": "kept"})
    assert auto == {"l1": 32, "l4": 32}  # 96 = 3 x 32; 48 and 16 have no two groups of 32
    assert fixed == {}
    assert all(_Graph.shapes[int(n[1])][1] % g == 0 for n, g in auto.items())


def test_the_ladders_int4_rung_asks_for_a_group_size_the_target_takes():
    from edgecomp.ladder import calibration_variants
    from edgecomp.targets.tflite.quantize import QuantSettings

    variants = calibration_variants(TfliteTarget.capabilities, "int4")
    assert variants == [{"int4_group_size": "32"}]
    assert QuantSettings.from_options(variants[0]).int4_group_size == "32"


# --- the recurrent loop lowering (loop.py) -----------------------------------------------------


def _recurrent(arch: str, length: int, hidden: int = 64, layers: int = 2) -> Any:
    from edgecomp.models import GRUForecaster, LSTMForecaster

    cls = LSTMForecaster if arch == "lstm" else GRUForecaster
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return cls(4, 2, length, 3, hidden=hidden, layers=layers, target_index=[3, 1]).eval()


def _run(data: bytes, x: np.ndarray) -> tuple[list[int], np.ndarray]:
    """The input's shape signature, and one invoke on ``x`` (the input resized to its batch)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=data, num_threads=1)
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    interpreter.resize_tensor_input(inp["index"], list(x.shape), strict=True)
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    return list(inp["shape_signature"]), interpreter.get_tensor(out["index"])


@pytest.mark.parametrize("arch", RECURRENT)
def test_loop_lowering_matches_torch_per_step_at_any_batch(arch):
    from edgecomp.targets.tflite.loop import emit_loop

    # setup
    module = _recurrent(arch, 12, hidden=16)
    x = np.random.default_rng(7).standard_normal((64, 12, 4)).astype(np.float32)
    expected = torch_forward(Model(module=module, spec=tiny_spec(arch)), x)
    # execute: one invoke at batch 1 and one at batch 64 of the same file
    data = emit_loop(module, "fp32")
    signature, out64 = _run(data, x)
    _, out1 = _run(data, x[:1])
    # assert: every horizon step equals torch (float rounding), batch 64 included
    assert signature == [-1, 12, 4] and out64.shape == (64, 3, 2)
    np.testing.assert_allclose(out64, expected, atol=2e-6)
    np.testing.assert_array_equal(out1, out64[:1])
    for precision in ("int8", "int4"):
        _, got = _run(emit_loop(module, precision), x)
        assert_close(expected, got, dtype=precision)


@pytest.mark.parametrize("arch", RECURRENT)
def test_loop_stores_each_weight_once_whatever_the_window(arch):
    from edgecomp.targets.tflite.loop import emit_loop, fc_weights

    # setup / execute: the same weights over 12 and over 96 steps, at each precision
    sizes = {
        (length, precision): len(emit_loop(_recurrent(arch, length), precision))
        for length in (12, 96)
        for precision in ("fp32", "int8", "int4")
    }
    # assert: the file does not grow with the steps (the loop bound is one int32 either way),
    # the weights are stored once (int8 < 35 %, int4 < 20 % of fp32 on a 2x64 model) and each
    # matmul's weight has the precision's dtype
    for precision in ("fp32", "int8", "int4"):
        assert sizes[(12, precision)] == sizes[(96, precision)]
    assert sizes[(12, "int8")] <= 0.35 * sizes[(12, "fp32")]
    assert sizes[(12, "int4")] <= 0.20 * sizes[(12, "fp32")]
    data = emit_loop(_recurrent(arch, 12), "int4", frozenset({"head"}))
    assert fc_weights(data) == [("INT4", 0)] * 4 + [("FLOAT32", 0)]


def test_loop_int4_weights_get_the_groups_the_option_asks_for(tmp_path_factory):
    # setup: a 2x64 LSTM: W_ih of layer 0 reads 4 inputs, the other matmuls 64
    spec = dataclasses.replace(tiny_spec("lstm"), hparams={"hidden": 64, "layers": 2})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Model(module=build_model(spec).eval(), spec=spec, source="test")
    # execute
    _, auto, data = emit("lstm2x64", "int4", tmp_path_factory.mktemp("lg"), model=model)
    _, channel, _ = emit(
        "lstm2x64", "int4", tmp_path_factory.mktemp("lc"), model=model, int4_group_size="channel"
    )
    # assert: groups of 32 (float16 scales, LiteRT's blockwise int4) where 32 splits the inputs,
    # per channel elsewhere; the manifest counts them, the records name them, and it runs
    from edgecomp.targets.tflite.loop import fc_weights

    assert fc_weights(data) == [("INT4", 0)] + [("INT4", 32)] * 4
    assert auto.lowering["quantization"]["int4_groups"] == {"32": 4, "channel": 1}
    assert channel.lowering["quantization"]["int4_groups"] == {"channel": 5}
    reasons = {la["name"]: la["reason"] for la in auto.layers}
    assert "groups of 32" in reasons["rnn[1..3]"] and "per channel" in reasons["rnn[0]"]
    x = windows(8, seed=4)
    assert_close(torch_forward(model, x), engine(auto, data).run(x), dtype="int4")


def test_loop_artifact_batches_in_one_invoke_and_passes_the_runtime_checks(tmp_path_factory):
    from edgecomp_runtime.opcheck import check_tflite

    # setup
    model, result, data = emit("gru", "int8-dynamic", tmp_path_factory.mktemp("loop"))
    manifest = {"model_file": result.model_file, "io": result.io}
    batched = LiteRtEngine(data, manifest | {"recipe": {"lowering": result.lowering}}, threads=1)
    single = LiteRtEngine(data, manifest | {"recipe": {"lowering": {}}}, threads=1)
    x = windows(64 + 5, seed=8)
    # execute
    out = batched.run(x)
    # assert: a WHILE loop the runtime's operator check accepts; 64 windows in one invoke of a
    # resized (not pinned) interpreter, row by row what one invoke per window gives
    check_tflite(data, manifest)
    assert "WHILE loop" in result.lowering["recurrent_lowering"]
    assert result.lowering["batch_rows"] == 64 and "resizes" in result.lowering["batching"]
    assert batched._local.by_rows[64].get_input_details()[0]["shape"][0] == 64
    np.testing.assert_array_equal(out, single.run(x))
    assert_close(torch_forward(model, x), out, dtype="int8")


def test_loop_keeps_layers_float_by_name_and_edge(tmp_path_factory):
    # setup / execute: a 1-layer LSTM's records are rnn[0] (W_ih), rnn[1] (W_hh) and head
    keep = ["rnn[1]", "output"]
    model, result, data = emit("lstm", "int4", tmp_path_factory.mktemp("lkf"), keep_float=keep)
    # assert
    by_name = {la["name"]: la for la in result.layers}
    assert by_name["rnn[0]"]["precision"] == "int4" and by_name["rnn[0]"]["method"] == "dynamic"
    for name in ("rnn[1]", "head"):
        assert by_name[name]["precision"] == "fp32" and "keep_float" in by_name[name]["reason"]
    assert result.lowering["quantization"]["keep_float"] == keep
    x = windows(16, seed=2)
    assert_close(torch_forward(model, x), engine(result, data).run(x), dtype="int4")


def test_unknown_recurrent_lowering_is_refused(tmp_path):
    profile = dataclasses.replace(PROFILE, options={"recurrent_lowering": "scan"})
    with pytest.raises(TargetError, match="'recurrent_lowering' must be one of"):
        TfliteTarget().emit(tiny_model("gru"), profile, tmp_path, precision="fp32")


# --- keep_float --------------------------------------------------------------------------------


def test_keep_float_by_name_and_by_edge(tmp_path_factory):
    # setup / execute: the output layer and one conv stay float in a full-int8 TCN
    keep = ["output", "blocks.0.conv1"]
    model, result, data = emit("tcn", "int8", tmp_path_factory.mktemp("kf"), keep_float=keep)
    # assert
    by_name = {la["name"]: la for la in result.layers}
    for name in ("head", "blocks.0.conv1"):
        assert by_name[name]["precision"] == "fp32" and by_name[name]["method"] is None
        assert "keep_float" in by_name[name]["reason"]
    assert by_name["blocks.0.conv2"]["method"] == "static"
    assert result.lowering["quantization"]["keep_float"] == keep
    x = windows(16, seed=2)
    assert_close(torch_forward(model, x), engine(result, data).run(x), dtype="int8")


def test_keep_float_entry_matching_no_layer_is_refused(tmp_path):
    with pytest.raises(TargetError, match=r"keep_float entry 'nope\*' matches no layer.*head"):
        emit("tcn", "int8-dynamic", tmp_path, keep_float=["nope*"])


@pytest.mark.parametrize(
    ("entry", "matched"),
    [
        ("rnn", ["rnn[0]", "rnn[3]", "rnn[8]"]),
        ("rnn[3]", ["rnn[3]"]),
        ("rnn[1..7]", ["rnn[3]"]),
        ("blocks.*", ["blocks.0.conv1"]),
        ("CONV_2D", ["blocks.0.conv1"]),
        ("head", ["head"]),
    ],
)
def test_keep_float_entries_match_names_ranges_patterns_and_op_types(entry, matched):
    from edgecomp.targets.tflite.graph import Layer, Op
    from edgecomp.targets.tflite.quantize import _matches

    names = ["rnn[0]", "rnn[3]", "rnn[8]", "blocks.0.conv1", "head"]
    ops = ["FULLY_CONNECTED"] * 3 + ["CONV_2D", "FULLY_CONNECTED"]
    layers = [
        Layer(n, Op(i, t, f"{n};", (0, 1), (2,)))
        for i, (n, t) in enumerate(zip(names, ops, strict=True))
    ]
    assert [la.name for la in layers if _matches(entry, la)] == matched


# --- calibration -------------------------------------------------------------------------------


def test_min_max_calibration_covers_an_outlier_the_moving_average_clips():
    from ai_edge_litert.interpreter import Interpreter

    from edgecomp.targets.tflite.convert import convert_module
    from edgecomp.targets.tflite.quantize import QuantSettings, quantize

    # setup: one window in the middle holds a reading 8 std out
    model = tiny_model("tcn")
    source = convert_module(model.module, 8, 4)
    x = windows(64)
    x[32, 4, 1] = 8.0
    # execute
    ranges = {}
    for method in ("minmax", "moving-average"):
        data = quantize(source, "int8", x, QuantSettings(calibration=method), [])
        scale, zero = Interpreter(model_content=data).get_input_details()[0]["quantization"]
        ranges[method] = (127 - zero) * scale
    # assert
    assert ranges["minmax"] >= 8.0 - 0.05
    assert ranges["moving-average"] < 4.0


# --- refusals ----------------------------------------------------------------------------------


class _Gram(torch.nn.Module):
    """[B, 8, 4] -> x^T x [B, 4, 4] -> [B, 3, 2]: a matmul of two activations, no weights."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.transpose(1, 2) @ x)[:, :3, :2]


def test_precision_a_layer_cannot_take_names_the_layer(tmp_path):
    model = Model(module=_Gram().eval(), spec=tiny_spec("lstm"))
    with pytest.raises(TargetError, match=r"'int8-dynamic' cannot be produced: layer '\w+' became"):
        emit("gram", "int8-dynamic", tmp_path, model=model)
    assert not any(tmp_path.rglob("*.tflite"))


@pytest.mark.parametrize(
    ("precision", "calibration", "options", "match"),
    [
        ("fp16", None, {}, r"precision 'fp16' is not supported.*\['fp32', 'int4', 'int8'"),
        ("int8", None, {}, "needs calibration windows"),
        ("int8", np.zeros((4, 8, 5)), {}, r"calibration windows must be \[N, 8, 4\]"),
        ("int8", np.full((4, 8, 4), np.nan), {}, "finite numbers"),
        ("fp32", None, {"keep_float": "head"}, "'keep_float' must be a list"),
        ("int8-dynamic", None, {"calibration": "entropy"}, "'calibration' must be one of"),
        ("fp32", None, {"threads": 0}, "'threads' must be a positive integer"),
        ("fp32", None, {"xnnpack": "yes"}, "'xnnpack' must be true or false"),
        ("int4", None, {"weight_granularity": "block"}, "'weight_granularity' must be one of"),
        ("int4", None, {"int4_group_size": "48"}, "'int4_group_size' must be 'auto', 'channel'"),
    ],
)
def test_bad_requests_are_refused_before_anything_is_written(
    tmp_path, precision, calibration, options, match
):
    profile = dataclasses.replace(PROFILE, options={**PROFILE.options, **options})
    with pytest.raises(TargetError, match=match):
        TfliteTarget().emit(
            tiny_model("gru"), profile, tmp_path, precision=precision, calibration=calibration
        )
    assert not any(tmp_path.iterdir())


def test_profile_of_another_backend_is_refused(tmp_path):
    with pytest.raises(TargetError, match="profile 'x86-64-avx2' is for backend 'onnx'"):
        TfliteTarget().emit(tiny_model(), get_profile("x86-64-avx2"), tmp_path, precision="fp32")


def test_a_source_that_is_not_a_torch_module_is_refused():
    from edgecomp.targets.tflite.convert import convert_module

    with pytest.raises(TargetError, match="not a PyTorch module"):
        convert_module(lambda x: x, 8, 4)


# --- end to end on real data -------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["gru", "tcn"])
def test_build_verify_load_and_bench_on_traffic_data(
    arch, traffic_checkpoints, traffic_path, tmp_path
):
    import edgecomp_runtime
    from edgecomp.bench.runner import bench_artifact
    from edgecomp.checkpoint import load_checkpoint
    from edgecomp.frontend import reference_predict
    from edgecomp.pipeline import BuildConfig
    from edgecomp.workflow import build_artifact, dataset_for

    # setup / execute: the pipeline verifies per horizon through the LiteRT engine
    config = BuildConfig(target="rpi5-cortex-a76", precision="int8", calibration_windows=64)
    result = build_artifact(str(traffic_checkpoints[arch]), traffic_path, config, tmp_path / "a")
    # assert: target, per-horizon metrics, int8 I/O
    manifest = result.manifest
    assert (manifest["target"]["backend"], manifest["target"]["arch"]) == ("tflite", "aarch64")
    metrics = manifest["metrics"]
    for got, ref in zip(metrics["artifact"]["mae"], metrics["reference"]["mae"], strict=True):
        assert got <= ref * 1.05
    assert manifest["io"]["inputs"][0]["dtype"] == ("float32" if arch in RECURRENT else "int8")
    # raw-unit forecasts through the runtime match torch within int8 tolerance (per target std)
    source = load_checkpoint(traffic_checkpoints[arch])
    dataset = dataset_for(source.spec, traffic_path)
    raw, x = dataset.raw_inputs("test")[:5], dataset.test.x[:5]
    model = edgecomp_runtime.load(result.path)
    expected = dataset.unscale_targets(reference_predict(source, x))
    std = dataset.std[dataset.target_index]
    assert_close(expected / std, model.predict(raw) / std, dtype="int8")
    # the bench measures it through the runtime and says it is not the ARM CPU
    report = bench_artifact(
        result.path, data=traffic_path, batch_sizes=[1, 4], min_iters=3, min_seconds=0,
        warmup=1, memory=False,
    )  # fmt: skip
    assert report["engine"]["backend"] == "tflite" and not report["engine"]["native"]
    assert "aarch64 target measured on a x86_64 CPU" in report["engine"]["note"]
