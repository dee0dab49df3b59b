"""x86 ONNX backend: export parity, dynamic batch, int8 graph contents, layer records, errors."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
import torch
from torch import nn

from edgecomp.models import build_model
from edgecomp.spec import Model
from edgecomp.targets import EmitResult, TargetError, TargetProfile, get_profile, get_target
from edgecomp.targets import onnx as onnx_backend
from edgecomp.targets.onnx import OnnxTarget
from helpers.testing import TINY_HPARAMS, sine_windows, tiny_spec

onnx = pytest.importorskip("onnx", reason=OnnxTarget.missing_reason())
ort = pytest.importorskip("onnxruntime", reason=OnnxTarget.missing_reason())
pytestmark = [
    pytest.mark.target,
    pytest.mark.skipif(not OnnxTarget.is_available(), reason=OnnxTarget.missing_reason()),
]

ARCHS = ("lstm", "gru", "tcn")
EXTRA_HPARAMS = {"lstm": {"layers": 2}, "gru": {"layers": 2}, "tcn": {}}
COMPUTE_OPS = {"LSTM", "GRU", "Conv", "Gemm", "MatMul"}
PROFILE = get_profile("x86-64-avx2")


class Emitted(NamedTuple):
    model: Model
    result: EmitResult
    graph: Any  # onnx.ModelProto of the written file
    path: Path


def make_model(arch: str, **hparams: Any) -> Model:
    hparams = {**TINY_HPARAMS[arch], **EXTRA_HPARAMS[arch], **hparams}
    spec = dataclasses.replace(tiny_spec(arch), hparams=hparams)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = build_model(spec).eval()
    return Model(module=module, spec=spec)


def windows(n: int = 100, seed: int = 0) -> np.ndarray:
    spec = tiny_spec()
    return sine_windows(n, spec.input_len, spec.horizon, spec.n_features, 2, seed).x


def run(path: Path, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(["forecast"], {"window": x})[0]


def torch_forward(model: Model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model.module(torch.from_numpy(x)).numpy()


def producers(graph: Any) -> dict[str, Any]:
    return {t: node for node in graph.graph.node for t in node.output}


def consumers(graph: Any) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for node in graph.graph.node:
        for tensor in node.input:
            found.setdefault(tensor, []).append(node)
    return found


@pytest.fixture(scope="module")
def emit(tmp_path_factory: pytest.TempPathFactory):
    """Emit (arch, precision) once per module; int8 calibrates on 100 sine windows."""
    cache: dict[tuple[str, str], Emitted] = {}

    def build(arch: str, precision: str) -> Emitted:
        if (arch, precision) not in cache:
            model = make_model(arch)
            out = tmp_path_factory.mktemp(f"{arch}-{precision}")
            calibration = windows() if precision == "int8" else None
            result = OnnxTarget().emit(
                model, PROFILE, out, precision=precision, calibration=calibration
            )
            path = out / result.model_file
            cache[arch, precision] = Emitted(model, result, onnx.load(str(path)), path)
        return cache[arch, precision]

    return build


def test_registry_resolves_the_onnx_backend():
    # execute
    cls = get_target("onnx")
    # assert
    assert cls is OnnxTarget
    assert cls.supported_precisions == {"fp32", "int8", "int4"}
    assert cls.needs_calibration == {"int8"}
    assert "pip install 'edgecomp[onnx]'" in cls.missing_reason()


@pytest.mark.parametrize("arch", ARCHS)
def test_fp32_matches_torch(emit, arch):
    # setup
    emitted = emit(arch, "fp32")
    x = windows(16, seed=3)
    # execute
    out = run(emitted.path, x)
    # assert
    assert np.abs(out - torch_forward(emitted.model, x)).max() <= 1e-4
    assert emitted.result.lowering["parity"]["max_abs_diff"] <= 1e-4
    # an LSTM/GRU may ship its weights for the native engine too (targets/onnx/native.py)
    assert emitted.result.files[0] == "model.onnx" and emitted.path.is_file()
    assert set(emitted.result.files) <= {"model.onnx", "model.native"}


@pytest.mark.parametrize("precision", ["fp32", "int8"])
@pytest.mark.parametrize("arch", ARCHS)
def test_dynamic_batch_runs_at_1_and_7(emit, arch, precision):
    # setup
    emitted = emit(arch, precision)
    spec = emitted.model.spec
    x = windows(7, seed=4)
    # execute
    one, seven = run(emitted.path, x[:1]), run(emitted.path, x)
    # assert
    assert one.shape == (1, spec.horizon, 2) and seven.shape == (7, spec.horizon, 2)
    # int8 LSTM activations are quantized per run, so the batch changes them a little
    atol = 1e-5 if precision == "fp32" else 0.02 * np.abs(seven).max()
    np.testing.assert_allclose(one[0], seven[0], atol=atol)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_io_and_toolchain_are_described(emit, precision):
    # setup
    result = emit("lstm", precision).result
    spec = emit("lstm", precision).model.spec
    # assert
    assert result.io == {
        "inputs": [{"name": "window", "shape": ["batch", spec.input_len, 4], "dtype": "float32"}],
        "outputs": [{"name": "forecast", "shape": ["batch", spec.horizon, 2], "dtype": "float32"}],
    }
    assert set(result.toolchain) == {"onnx", "onnxruntime", "onnxsim", "torch"}
    assert result.lowering["opset"] == 17
    assert "dynamo=False" in result.lowering["exporter"]


@pytest.mark.parametrize("arch", ["lstm", "gru"])
def test_int8_recurrent_models_get_a_dynamic_int8_head(emit, arch):
    # setup
    emitted = emit(arch, "int8")
    made = producers(emitted.graph)
    # execute
    ops = onnx_backend.count_ops(emitted.path)
    head = next(n for n in emitted.graph.graph.node if n.op_type == "MatMulInteger")
    # assert: the Gemm head became DynamicQuantizeLinear -> MatMulInteger, with no static Q/DQ
    assert ops.get("DynamicQuantizeLSTM", 0) == (2 if arch == "lstm" else 0)
    assert "LSTM" not in ops and ops.get("GRU", 0) == (2 if arch == "gru" else 0)
    assert made[head.input[0]].op_type == "DynamicQuantizeLinear"
    assert "QuantizeLinear" not in ops and "DequantizeLinear" not in ops
    steps = emitted.result.lowering["quantization"]["steps"]
    assert steps[:2] == ["quant_pre_process", "quantize_dynamic"]
    assert steps[2:] == (
        []
        if arch == "lstm"
        else [
            "int8 weight storage, compute float: "
            + str(sorted(n.name for n in emitted.graph.graph.node if n.op_type == "GRU"))
        ]
    )


@pytest.mark.parametrize(
    ("arch", "edges", "kept"),
    [
        ("lstm", ["output"], {"head"}),
        ("tcn", ["input"], {"blocks.0.conv1", "blocks.0.skip"}),
        ("tcn", ["input", "output"], {"blocks.0.conv1", "blocks.0.skip", "head"}),
    ],
)
def test_keep_float_leaves_the_graph_edges_in_float(tmp_path, arch, edges, kept):
    # setup
    profile = dataclasses.replace(PROFILE, options={**PROFILE.options, "keep_float": edges})
    # execute
    result = OnnxTarget().emit(
        make_model(arch), profile, tmp_path, precision="int8", calibration=windows()
    )
    # assert
    graph = onnx.load(str(tmp_path / "model.onnx"))
    made, nodes = producers(graph), {n.name: n for n in graph.graph.node}
    floats = {r["name"]: r for r in result.layers if r["precision"] == "fp32"}
    assert set(floats) == kept
    for record in floats.values():
        assert "kept in float (profile option keep_float)" in record["reason"]
        node = nodes[record["node"]]
        assert node.op_type in ("Conv", "Gemm", "MatMul"), node.op_type
        assert "DequantizeLinear" not in {made[t].op_type for t in node.input if t in made}
    assert result.lowering["quantization"]["keep_float"] == edges


@pytest.mark.parametrize("lowering", ["default", "cone"])
def test_keep_float_input_finds_the_skip_through_the_cones_slice(tmp_path, lowering):
    # setup: the cone's skip reads a strided Slice of the window, the default graph the window
    options = {**PROFILE.options, "keep_float": ["input"], "lowering": lowering}
    profile = dataclasses.replace(PROFILE, options=options)
    # execute
    result = OnnxTarget().emit(
        make_model("tcn"), profile, tmp_path, precision="int8", calibration=windows()
    )
    # assert
    floats = {r["name"] for r in result.layers if r["precision"] == "fp32"}
    assert floats == {"blocks.0.conv1", "blocks.0.skip"}


def test_int8_tcn_wraps_every_conv_in_qdq(emit):
    # setup
    emitted = emit("tcn", "int8")
    made, used = producers(emitted.graph), consumers(emitted.graph)
    convs = [n for n in emitted.graph.graph.node if n.op_type == "Conv"]
    # assert
    assert len(convs) == onnx_backend.count_ops(emit("tcn", "fp32").path)["Conv"]
    for conv in convs:
        assert {made[t].op_type for t in conv.input} == {"DequantizeLinear"}, conv.name
        assert {n.op_type for n in used[conv.output[0]]} == {"QuantizeLinear"}, conv.name
    ops = onnx_backend.count_ops(emitted.path)
    assert not {"ConvInteger", "DynamicQuantizeLinear"} & set(ops)
    # the Relu right after each Conv is folded into the Conv's output quantization; each block's
    # residual Add keeps its Relu, the forecast's residual Add (last value + change) has none
    assert ops["Relu"] == onnx_backend.count_ops(emit("tcn", "fp32").path)["Add"] - 1


def test_int8_gru_computes_float_with_int8_weights_and_says_so(emit):
    # setup
    emitted = emit("gru", "int8")
    made = producers(emitted.graph)
    int8 = {i.name for i in emitted.graph.graph.initializer if i.data_type == onnx.TensorProto.INT8}
    # execute
    records = {r["name"]: r for r in emitted.result.layers}
    grus = [n for n in emitted.graph.graph.node if n.op_type == "GRU"]
    # assert: W and R are int8 behind Cast -> Mul; the record says float compute
    assert len(grus) == 2
    for node in grus:
        for weight in node.input[1:3]:
            assert made[weight].op_type == "Mul" and made[made[weight].input[0]].input[0] in int8
    for name in ("rnn.l0", "rnn.l1"):
        assert records[name]["precision"] == "fp32" and records[name]["method"] == "int8-storage"
        assert "computes in float32" in records[name]["reason"]
    assert emitted.result.lowering["quantization"]["int8_storage"]["layers"] == ["rnn.l0", "rnn.l1"]
    assert records["head"]["precision"] == "int8"


@pytest.mark.parametrize("arch", ARCHS)
def test_int8_outputs_close_to_fp32(emit, arch):
    # setup
    x = windows(32, seed=5)
    reference = run(emit(arch, "fp32").path, x)
    # execute
    out = run(emit(arch, "int8").path, x)
    # assert: loose, relative to the output scale (untrained tiny models)
    diff = np.abs(out - reference).max()
    assert 0 < diff <= 0.05 * np.abs(reference).max()  # quantized, and close


@pytest.mark.parametrize("precision", ["fp32", "int8"])
@pytest.mark.parametrize("arch", ARCHS)
def test_layer_records_match_the_graph(emit, arch, precision):
    # setup
    emitted = emit(arch, precision)
    exported = onnx_backend.count_ops(emit(arch, "fp32").path)
    nodes = {n.name: n for n in emitted.graph.graph.node if n.name}
    made = producers(emitted.graph)
    modules = dict(emitted.model.module.named_modules())
    # assert
    assert Counter(r["op_type"] for r in emitted.result.layers) == {
        op: n for op, n in exported.items() if op in COMPUTE_OPS
    }
    for record in emitted.result.layers:
        node = nodes[record["node"]]
        quantized_inputs = all(
            made.get(t) and made[t].op_type == "DequantizeLinear" for t in node.input[:2]
        )
        assert record["name"].partition(".l")[0] in modules or record["name"] in modules
        dynamic_kernel = node.op_type in ("DynamicQuantizeLSTM", "MatMulInteger")
        assert dynamic_kernel == (record["method"] == "dynamic")
        assert quantized_inputs == (record["method"] == "static-qdq")
        computes_int8 = record["method"] not in (None, "int8-storage")  # storage: float compute
        assert (record["precision"] == "int8") == computes_int8


def test_layer_records_name_torch_modules(emit):
    # execute
    lstm = [r["name"] for r in emit("lstm", "int8").result.layers]
    tcn = [r["name"] for r in emit("tcn", "fp32").result.layers]
    # assert
    assert lstm == ["rnn.l0", "rnn.l1", "head"]
    assert tcn[:3] == ["blocks.0.conv1", "blocks.0.conv2", "blocks.0.skip"] and tcn[-1] == "head"


def test_int8_reasons_state_the_method(emit):
    # execute
    lstm = emit("lstm", "int8").result.layers
    tcn = emit("tcn", "int8").result.layers
    # assert
    assert lstm[0]["reason"].startswith("dynamic int8: LSTM weights")
    assert tcn[0]["reason"] == "static QDQ per-tensor, MinMax over 100 calibration windows"
    assert emit("tcn", "int8").result.lowering["n_calibration_windows"] == 100


@pytest.mark.parametrize("arch", ["lstm", "tcn"])
def test_int8_keeps_no_float_weights(emit, arch):
    # setup: a float initializer may only be a bias (of an LSTM, or of a Gemm that ORT's
    # dynamic quantizer split into MatMul + Add), a Q/DQ scale or a dynamic kernel's weight scale
    graph = emit(arch, "int8").graph
    allowed = {
        ("DynamicQuantizeLSTM", 3),
        ("DynamicQuantizeLSTM", 8),
        ("DynamicQuantizeLSTM", 10),
        ("Add", 1),
        ("Mul", 1),
        ("QuantizeLinear", 1),
        ("DequantizeLinear", 1),
    }
    floats = {i.name for i in graph.graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    # execute
    uses = {
        (node.op_type, k)
        for node in graph.graph.node
        for k, t in enumerate(node.input)
        if t in floats
    }
    # assert
    assert floats and uses <= allowed


@pytest.mark.parametrize(
    ("arch", "hparams", "ratio"),  # GRU: its float32 biases and row scales stay (38 % here)
    [("lstm", {"hidden": 32}, 0.34), ("gru", {"hidden": 32}, 0.4), ("tcn", {"channels": 64}, 0.34)],
)
def test_int8_file_is_at_most_a_third_of_fp32(tmp_path, arch, hparams, ratio):
    # setup: big enough that weights, not graph structure, dominate the file (about 30 % here)
    model = make_model(arch, **hparams)
    target = OnnxTarget()
    # execute
    target.emit(model, PROFILE, tmp_path / "fp32", precision="fp32")
    target.emit(model, PROFILE, tmp_path / "int8", precision="int8", calibration=windows(64))
    # assert
    sizes = {p: (tmp_path / p / "model.onnx").stat().st_size for p in ("fp32", "int8")}
    assert sizes["int8"] <= ratio * sizes["fp32"], sizes


def test_calibration_is_capped_and_spread(tmp_path):
    # execute
    result = OnnxTarget().emit(
        make_model("tcn"), PROFILE, tmp_path, precision="int8", calibration=windows(1500)
    )
    # assert
    assert result.lowering["n_calibration_windows"] == 512
    assert "over 512 calibration windows" in result.layers[0]["reason"]


@pytest.mark.parametrize(
    ("options", "expect"),
    [
        ({"per_channel": True}, "static QDQ per-channel, MinMax"),
        ({"calibration_method": "percentile"}, "static QDQ per-tensor, Percentile"),
        ({"activation_type": "int8"}, "static QDQ per-tensor, MinMax"),
    ],
)
def test_profile_options_select_the_static_scheme(tmp_path, options, expect):
    # setup
    profile = dataclasses.replace(PROFILE, options={**PROFILE.options, **options})
    model = make_model("tcn")
    x = windows(16, seed=6)
    # execute
    result = OnnxTarget().emit(model, profile, tmp_path, precision="int8", calibration=windows())
    # assert
    assert result.layers[0]["reason"].startswith(expect)
    assert result.lowering["quantization"].items() >= options.items()
    out = run(tmp_path / "model.onnx", x)
    assert np.abs(out - torch_forward(model, x)).max() <= 0.05 * np.abs(out).max()


def test_export_onnx_and_count_ops(tmp_path):
    # setup
    model = make_model("lstm")
    path = tmp_path / "sub" / "lstm.onnx"
    # execute
    written = onnx_backend.export_onnx(model.module, 8, 4, path)
    # assert
    assert written == path and onnx_backend.count_ops(path)["LSTM"] == 2
    onnx.checker.check_model(str(path))
    x = windows(5)
    assert np.abs(run(path, x) - torch_forward(model, x)).max() <= 1e-4


# --- errors ---------------------------------------------------------------------------------


class _Spectral(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.rfft(x, dim=1).abs()[:, :3, :2]


class _Failing(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("data-dependent branch")


class _Wrapper(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


def _emit_error(model: Model, profile: TargetProfile = PROFILE, **kw: Any) -> str:
    with pytest.raises(TargetError) as caught:
        OnnxTarget().emit(model, profile, Path("/nonexistent/never-written"), **kw)
    return str(caught.value)


def test_unknown_precision_lists_supported():
    message = _emit_error(make_model("lstm"), precision="fp16")
    assert "'fp16'" in message and "['fp32', 'int4', 'int8']" in message


def test_precision_outside_the_profile_lists_the_profile_ones():
    profile = dataclasses.replace(PROFILE, precisions=("fp32",))
    message = _emit_error(make_model("lstm"), profile, precision="int8", calibration=windows())
    assert "'int8'" in message and "['fp32']" in message


def test_int8_without_calibration_says_what_is_needed():
    message = _emit_error(make_model("lstm"), precision="int8")
    assert "needs calibration windows [N, 8, 4]" in message


@pytest.mark.parametrize("shape", [(10, 7, 4), (10, 8, 3), (8, 4), (0, 8, 4)])
def test_wrong_calibration_shape_says_expected_and_got(shape):
    message = _emit_error(
        make_model("tcn"), precision="int8", calibration=np.zeros(shape, np.float32)
    )
    assert "[N, 8, 4]" in message and f"got {list(shape)}" in message


def test_nan_calibration_is_refused():
    calibration = windows()
    calibration[3, 2, 1] = np.nan
    assert "NaN" in _emit_error(make_model("tcn"), precision="int8", calibration=calibration)


@pytest.mark.parametrize(
    ("option", "value"),
    [("calibration_method", "kl"), ("per_channel", 1), ("keep_float", ["no_such_layer"])],
)
def test_bad_profile_option_is_named(option, value):
    profile = dataclasses.replace(PROFILE, options={**PROFILE.options, option: value})
    message = _emit_error(make_model("tcn"), profile, precision="int8", calibration=windows())
    assert f"'{option}'" in message and repr(value) in message


@pytest.mark.parametrize(
    ("inner", "expect"),
    [
        (_Spectral(), "module 'inner' (_Spectral)"),
        (_Failing(), "module 'inner' (_Failing): data-dependent branch"),
    ],
)
def test_export_failure_names_the_module(inner, expect):
    model = dataclasses.replace(make_model("tcn"), module=_Wrapper(inner))
    assert expect in _emit_error(model, precision="fp32")


def test_output_shape_against_the_spec():
    spec = dataclasses.replace(tiny_spec("tcn"), horizon=5)
    model = Model(module=make_model("tcn").module, spec=spec)
    assert "['batch', 3, 2]; the spec needs ['batch', 5, 2]" in _emit_error(model, precision="fp32")


def test_importing_the_backend_loads_no_toolchain():
    # setup
    code = (
        "import sys, edgecomp.targets.onnx\n"
        "print(sorted(m for m in ('onnx', 'onnxruntime', 'onnxsim') if m in sys.modules))"
    )
    # execute
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # assert
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("spike", "ratio", "clipped"), [(200.0, 8.0, True), (200.0, 0, False), (0.0, 8.0, False)]
)
def test_heavy_tailed_inputs_clip_the_input_layers_range(tmp_path, spike, ratio, clipped):
    # setup: one feature with a rain-like spike in the calibration windows
    calibration = windows()
    calibration[7, 3, 2] = spike
    profile = dataclasses.replace(PROFILE, options={**PROFILE.options, "max_input_ratio": ratio})
    model = make_model("tcn")
    # execute
    result = OnnxTarget().emit(model, profile, tmp_path, precision="int8", calibration=calibration)
    # assert: the input layers stay int8; their input range leaves the spike out
    assert not [r for r in result.layers if r["precision"] == "fp32"]
    steps = [s for s in result.lowering["quantization"]["steps"] if "input range clipped" in s]
    assert bool(steps) == clipped
    if clipped:
        assert "blocks.0/conv1" in steps[0] and f"'{model.spec.features[2]}'" in steps[0]
        high = float(steps[0].split(", ")[1].split("]")[0])
        assert high < spike / 10
