"""x86 ONNX int4: nibble packing, MatMulNBits / int4 storage graphs, keep_float by layer name,
and int4 artifacts predicting through the runtime."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecomp.models import build_model
from edgecomp.spec import Model
from edgecomp.targets import TargetError, get_profile
from edgecomp.targets.onnx import OnnxTarget
from edgecomp_runtime.int4 import dequantize_int4, pack_int4, quantize_int4, unpack_int4
from helpers.testing import TINY_HPARAMS, sine_windows, tiny_spec

onnx = pytest.importorskip("onnx", reason=OnnxTarget.missing_reason())
ort = pytest.importorskip("onnxruntime", reason=OnnxTarget.missing_reason())
pytestmark = pytest.mark.skipif(not OnnxTarget.is_available(), reason=OnnxTarget.missing_reason())

PROFILE = get_profile("x86-64-avx2")
# int4 artifact vs torch, raw units, on the traffic test split: mean |diff| within 5 % of the
# targets' mean absolute value (tiny 2-epoch models, symmetric int4 weights)
RUNTIME_TOLERANCE = 0.05


def make_model(arch: str) -> Model:
    spec = dataclasses.replace(tiny_spec(arch), hparams={**TINY_HPARAMS[arch], "hidden": 32})
    if arch == "tcn":
        spec = dataclasses.replace(spec, hparams=TINY_HPARAMS[arch])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return Model(module=build_model(spec).eval(), spec=spec)


def emit(model: Model, tmp_path: Path, precision: str = "int4", **options):
    profile = dataclasses.replace(PROFILE, options={**PROFILE.options, **options})
    result = OnnxTarget().emit(model, profile, tmp_path, precision=precision, calibration=None)
    return result, onnx.load(str(tmp_path / result.model_file))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-8, 7), max_size=257))
def test_pack_unpack_round_trip_is_exact(values):
    # execute
    packed = pack_int4(np.array(values, dtype=np.int8))
    # assert
    assert packed.dtype == np.uint8 and len(packed) == (len(values) + 1) // 2
    assert unpack_int4(packed, len(values)).tolist() == values


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(-8, 7), min_size=1, max_size=64))
def test_packing_matches_onnx_int4_layout(values):
    # setup
    q = np.array(values, dtype=np.int8)
    tensor = onnx.helper.make_tensor(
        "w", onnx.TensorProto.INT4, [len(q)], pack_int4(q).tobytes(), raw=True
    )
    # execute
    decoded = onnx.numpy_helper.to_array(tensor).astype(np.int8)
    # assert
    assert decoded.tolist() == values


def test_pack_refuses_out_of_range_and_short_buffers():
    with pytest.raises(ValueError, match=r"\[-8, 7\]"):
        pack_int4(np.array([8]))
    with pytest.raises(ValueError, match="cannot hold"):
        unpack_int4(np.zeros(2, np.uint8), 5)


@pytest.mark.parametrize("scale_dtype", [np.float32, np.float16])
def test_quantize_error_is_within_half_a_step_per_channel(scale_dtype):
    # setup
    w = np.random.default_rng(0).standard_normal((6, 5, 3)).astype(np.float32)
    w[2] = 0  # an all-zero channel
    # execute
    q, scales = quantize_int4(w, axis=0, scale_dtype=scale_dtype)
    back = dequantize_int4(q, scales, axis=0)
    # assert
    assert q.min() >= -8 and q.max() <= 7 and scales.dtype == scale_dtype
    step = scales.astype(np.float32)[:, None, None]
    assert np.all(np.abs(back - w) <= step / 2 + 1e-6)
    assert np.all(back[2] == 0)


@pytest.mark.parametrize("arch", ["lstm", "gru", "tcn"])
def test_int4_graph_uses_matmulnbits_and_int4_storage(tmp_path, arch):
    # setup
    model = make_model(arch)
    # execute
    result, graph = emit(model, tmp_path)
    # assert
    ops = {node.op_type for node in graph.graph.node}
    assert "MatMulNBits" in ops and "Gemm" not in ops
    assert any(i.data_type == onnx.TensorProto.INT4 for i in graph.graph.initializer)
    methods = {layer["name"]: layer["method"] for layer in result.layers}
    assert methods.pop("head") == "int4-matmulnbits"
    assert set(methods.values()) == {"int4-storage"}  # LSTM, GRU and Conv: no int4 kernel
    assert all(layer["precision"] == "int4" for layer in result.layers)
    storage = result.lowering["quantization"]["int4_storage"]
    assert storage["expand_at_load"] and "not compute" in storage["note"]
    assert "not compute" in next(la["reason"] for la in result.layers if la["name"] != "head")


def test_int4_file_is_a_fraction_of_fp32(tmp_path):
    # setup
    model = make_model("lstm")
    # execute
    emit(model, tmp_path / "a", precision="fp32")
    emit(model, tmp_path / "b")
    # assert
    fp32 = (tmp_path / "a" / "model.onnx").stat().st_size
    int4 = (tmp_path / "b" / "model.onnx").stat().st_size
    assert int4 < 0.3 * fp32


def test_int4_initializers_decode_like_the_runtime_module(tmp_path):
    # setup
    _, graph = emit(make_model("lstm"), tmp_path)
    packed = [i for i in graph.graph.initializer if i.data_type == onnx.TensorProto.INT4]
    # execute / assert
    assert packed
    for init in packed:
        ours = unpack_int4(np.frombuffer(init.raw_data, np.uint8), int(np.prod(init.dims)))
        assert np.array_equal(ours, onnx.numpy_helper.to_array(init).astype(np.int8).ravel())


def test_gemm_to_matmul_keeps_the_numbers():
    # setup
    from edgecomp.targets.onnx.export import export_model, ort_runner
    from edgecomp.targets.onnx.int4 import gemm_to_matmul

    model = make_model("tcn")
    proto = export_model(model.module, model.spec.input_len, model.spec.n_features, opset=17)
    x = sine_windows(9, model.spec.input_len, 3, model.spec.n_features, 2).x
    before = ort_runner(proto)(x)
    # execute
    gemm_to_matmul(proto.graph, keep=set())
    # assert
    assert "Gemm" not in {n.op_type for n in proto.graph.node}
    assert np.abs(ort_runner(proto)(x) - before).max() <= 1e-3  # bias stored as float16


def test_keep_float_by_layer_name(tmp_path):
    # execute
    result, graph = emit(make_model("tcn"), tmp_path, keep_float=["head", "blocks.0.*"])
    # assert
    precision = {layer["name"]: layer for layer in result.layers}
    assert precision["head"]["precision"] == "fp32"
    assert "keep_float" in precision["head"]["reason"]
    assert all(p["precision"] == "fp32" for n, p in precision.items() if n.startswith("blocks.0."))
    assert precision["blocks.1.conv1"]["precision"] == "int4"
    assert "Gemm" in {n.op_type for n in graph.graph.node}
    assert result.lowering["quantization"]["keep_float"][0] == "blocks.0.conv1"


def test_keep_float_by_layer_name_in_int8(tmp_path):
    # setup
    profile = dataclasses.replace(
        PROFILE, options={**PROFILE.options, "keep_float": ["blocks.1.conv1"]}
    )
    model = make_model("tcn")
    calibration = sine_windows(40, model.spec.input_len, 3, model.spec.n_features, 2).x
    # execute
    result = OnnxTarget().emit(model, profile, tmp_path, precision="int8", calibration=calibration)
    # assert
    records = {layer["name"]: layer for layer in result.layers}
    assert records["blocks.1.conv1"]["precision"] == "fp32"
    assert "keep_float" in records["blocks.1.conv1"]["reason"]
    assert records["blocks.1.conv2"]["precision"] == "int8"


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"keep_float": ["nope"]}, "matches no layer"),
        ({"keep_float": "head"}, "'keep_float' must be a list"),
        ({"int4_block_size": 24}, "'int4_block_size'"),
        ({"int4_rounding": "nearest"}, "'int4_rounding'"),
    ],
)
def test_bad_int4_options_are_named(tmp_path, options, needle):
    with pytest.raises(TargetError, match=needle):
        emit(make_model("lstm"), tmp_path, **options)


@pytest.mark.parametrize("arch", ["lstm", "tcn"])
def test_int4_artifact_predicts_through_the_runtime(
    tmp_path, traffic_checkpoints, traffic_path, arch
):
    # setup
    import edgecomp_runtime
    from edgecomp.frontend import load_model, reference_predict
    from edgecomp.pipeline import BuildConfig, build
    from edgecomp.workflow import dataset_for
    from edgecomp_runtime.engines.onnxruntime import expands_int4

    model = load_model(traffic_checkpoints[arch])
    dataset = dataset_for(model.spec, traffic_path)
    # execute
    built = build(model, dataset, BuildConfig(precision="int4"), tmp_path / "m.edgepkg")
    loaded = edgecomp_runtime.load(built.path)
    raw = dataset.raw_inputs("test", imputed=True)[:64]
    out = loaded.predict(raw)
    # assert
    assert built.manifest["precision"] == "int4" and expands_int4(built.manifest)
    reference = dataset.unscale_targets(reference_predict(model, dataset.test.x[:64]))
    scale = np.abs(reference).mean()
    assert np.abs(out - reference).mean() <= RUNTIME_TOLERANCE * scale
    assert np.isfinite(built.manifest["metrics"]["artifact"]["mae"]).all()


def test_runtime_expansion_at_load_matches_per_run_dequantize(tmp_path):
    # setup
    from edgecomp_runtime.engines.onnxruntime import OnnxRuntimeEngine

    model = make_model("lstm")
    result, _ = emit(model, tmp_path)
    data = (tmp_path / result.model_file).read_bytes()
    manifest = {"model_file": "model.onnx", "recipe": {"lowering": result.lowering}}
    x = sine_windows(5, model.spec.input_len, 3, model.spec.n_features, 2).x
    # execute
    folded = OnnxRuntimeEngine(data, manifest, threads=1).run(x)
    per_run = OnnxRuntimeEngine(data, {"model_file": "model.onnx"}, threads=1).run(x)
    # assert
    assert np.abs(folded - per_run).max() <= 1e-5


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        ({}, False),
        ({"recipe": 5}, False),
        ({"recipe": {"lowering": {"quantization": None}}}, False),
        (
            {"recipe": {"lowering": {"quantization": {"int4_storage": {"expand_at_load": 1}}}}},
            False,
        ),
        (
            {"recipe": {"lowering": {"quantization": {"int4_storage": {"expand_at_load": True}}}}},
            True,
        ),
    ],
)
def test_expand_flag_is_read_defensively(manifest, expected):
    from edgecomp_runtime.engines.onnxruntime import expands_int4

    assert expands_int4(manifest) is expected


# group-wise int4 storage: one float16 scale per group of inputs, the group chosen per layer


def test_auto_group_goes_finer_only_where_the_weights_need_it():
    from edgecomp.targets.onnx.int4 import choose_group

    # setup: smooth rows, and rows whose first inputs are 50x larger than the rest
    rng = np.random.default_rng(0)
    smooth = rng.uniform(-1, 1, (8, 128)).astype(np.float32)
    spiky = smooth.copy()
    spiky[:, :16] *= 50
    # execute
    smooth_group, _ = choose_group(smooth, 0, "auto")
    spiky_group, record = choose_group(spiky, 0, "auto")
    # assert: one scale per channel is enough for the smooth rows; the spiky ones need groups
    assert smooth_group is None
    assert spiky_group is not None and spiky_group < 128
    errors = record["rel_rms_error"]
    assert errors[str(spiky_group)] < 0.5 * errors["channel"]
    assert choose_group(spiky, 0, "channel")[0] is None and choose_group(spiky, 0, 32)[0] == 32


def _plain_rounding_error(rows: np.ndarray, size: int) -> np.ndarray:
    """Squared error per group of max-abs int4 rounding (scale = peak / 7, float16)."""
    r, c = rows.shape
    blocks = -(-c // size)
    grouped = np.pad(rows, ((0, 0), (0, blocks * size - c))).reshape(r, blocks, size)
    peak = np.abs(grouped).max(axis=2)
    scales = np.where(peak > 0, peak / 7, 1.0).astype(np.float16).astype(np.float32)
    scales[scales == 0] = 1
    q = np.clip(np.rint(grouped / scales[..., None]), -8, 7)
    return np.square(q * scales[..., None] - grouped).sum(axis=2)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 6),
    st.integers(1, 70),
    st.sampled_from([4, 16, 32]),
    st.integers(0, 2**31 - 1),
    st.sampled_from(["normal", "spiky", "tiny"]),
)
def test_scale_search_never_increases_the_weight_error(r, c, size, seed, kind):
    from edgecomp.targets.onnx.int4 import group_quantize

    # setup: gaussian rows, rows with an outlier, and rows near float16's smallest normal
    rng = np.random.default_rng(seed)
    rows = rng.standard_normal((r, c)).astype(np.float32)
    if kind == "spiky":
        rows[:, 0] *= 30
    elif kind == "tiny":
        rows *= 1e-5
    # execute
    q, scales = group_quantize(rows, size)
    # assert: values in range, one float16 scale per group, error per group <= plain rounding
    blocks = -(-c // size)
    assert q.shape == (r, c) and scales.shape == (r, blocks) and scales.dtype == np.float16
    assert q.min() >= -8 and q.max() <= 7
    step = np.repeat(scales.astype(np.float32), size, axis=1)[:, :c]
    ours = np.pad(np.square(q * step - rows), ((0, 0), (0, blocks * size - c)))
    ours = ours.reshape(r, blocks, size).sum(axis=2)
    assert (ours <= _plain_rounding_error(rows, size) * (1 + 1e-6) + 1e-30).all()


def test_scale_search_clips_an_outlier_for_a_finer_step():
    from edgecomp.targets.onnx.int4 import group_quantize

    # setup: 15 weights spread over [-1, 1] and one at 1.6: max-abs rounding wastes steps on it
    rows = np.append(np.linspace(-1, 1, 15), 1.6).astype(np.float32)[None]
    # execute
    q, scales = group_quantize(rows, 16)
    # assert: a smaller scale than peak / 7 and a smaller total error
    assert float(scales[0, 0]) < 1.6 / 7
    ours = np.square(q * scales.astype(np.float32)[:, :1] - rows).sum()
    assert ours < _plain_rounding_error(rows, 16).sum()


@pytest.mark.parametrize(("arch", "group"), [("lstm", 16), ("tcn", 4)])
def test_grouped_storage_runs_like_its_numpy_expansion(arch, group):
    from edgecomp.targets.onnx.export import export_model
    from edgecomp.targets.onnx.int4 import quantize_int4_graph

    # setup
    model = make_model(arch)
    exported = export_model(model.module, model.spec.input_len, model.spec.n_features, opset=17)
    x = sine_windows(4, model.spec.input_len, 3, model.spec.n_features, 2).x
    # execute
    graph = quantize_int4_graph(exported, set(), 64, group)
    session = ort.InferenceSession(
        graph.proto.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    out = session.run(None, {session.get_inputs()[0].name: x})[0]
    packed = [i for i in graph.proto.graph.initializer if i.data_type == onnx.TensorProto.INT4]
    # assert: blocked DequantizeLinear along the input axis where it is longer than the group
    # (an LSTM's input weight over 3 features keeps one scale per channel), in the weight's own
    # shape (no Reshape); forecasts close to torch
    blocks = [
        a.i
        for n in graph.proto.graph.node
        if n.op_type == "DequantizeLinear"
        for a in n.attribute
        if a.name == "block_size"
    ]
    assert blocks and set(blocks) == {group}
    assert {r["group_size"] for r in graph.groups.values()} <= {group, None}
    assert packed
    assert _count(graph.proto, "Reshape") == _count(exported, "Reshape")
    with torch.no_grad():
        reference = model.module(torch.from_numpy(x)).numpy()
    assert np.abs(out - reference).mean() <= 0.1 * np.abs(reference).mean()


def _count(proto, op_type: str) -> int:
    return sum(node.op_type == op_type for node in proto.graph.node)


def test_group_choices_and_scales_are_in_the_record_and_the_size(tmp_path):
    # execute: the default ("auto")
    result, graph = emit(make_model("lstm"), tmp_path)
    emit(make_model("lstm"), tmp_path / "fp32", precision="fp32")
    # assert: every stored weight says its group; the file (scales included) stays small
    storage = result.lowering["quantization"]["int4_storage"]
    assert storage["group_size"] == "auto" and storage["groups"]
    for record in storage["groups"].values():
        tried, bits = record["rel_rms_error"], record["scale_bits_per_weight"]
        chosen = "channel" if record["group_size"] is None else str(record["group_size"])
        cost = {g: tried[g] * 2 ** bits[g] for g in tried}  # error at equal size
        assert chosen in tried and cost[chosen] <= min(cost.values()) * (1 + 1e-3)
    int4_size = (tmp_path / result.model_file).stat().st_size
    assert int4_size < 0.3 * (tmp_path / "fp32" / "model.onnx").stat().st_size


@pytest.mark.parametrize("bad", ["coarse", 1, True, 2.5])
def test_bad_group_size_is_named(bad):
    from edgecomp.targets.onnx.int4 import group_size_option

    with pytest.raises(TargetError, match="'int4_group_size'"):
        group_size_option({"int4_group_size": bad})


def test_group_size_through_the_profile_option(tmp_path):
    # execute: "16" as the profile (or --option) gives it
    result, graph = emit(make_model("lstm"), tmp_path, int4_group_size="16")
    # assert: the recurrent weight (32 inputs per channel) is stored in groups of 16
    groups = result.lowering["quantization"]["int4_storage"]["groups"]
    assert 16 in {r["group_size"] for r in groups.values()}
    assert any(a.name == "block_size" and a.i == 16 for n in graph.graph.node for a in n.attribute)


@pytest.mark.parametrize("arch", ["gru", "tcn"])
def test_int4_storage_weights_are_named_after_their_layer(tmp_path, arch):
    # setup
    model = make_model(arch)
    # execute
    _, graph = emit(model, tmp_path)
    # assert: short names after the layer, none of the exporter's generated ones (every byte
    # of a name shows at int4)
    packed = [i.name for i in graph.graph.initializer if i.data_type == onnx.TensorProto.INT4]
    assert packed and not [name for name in packed if "::" in name]
    assert all(name.endswith((".W", ".R")) for name in packed)
    if arch == "gru":
        assert set(packed) == {"rnn.W", "rnn.R"}
    else:
        assert "blocks.0.conv1.W" in packed


@pytest.mark.parametrize(("k", "block"), [(40, 32), (64, 64), (20, 16)])
def test_matmulnbits_computes_with_the_searched_int4_weights(k, block):
    from onnx import TensorProto, helper, numpy_helper

    from edgecomp.targets.onnx.int4 import group_quantize, quantize_int4_graph

    # setup: x [3, K] @ W [K, 5], K not always a multiple of the block (zero-padded)
    rng = np.random.default_rng(k)
    weight = rng.standard_normal((k, 5)).astype(np.float32)
    weight[0] *= 20  # an outlier: the searched scale clips it
    x = rng.standard_normal((3, k)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="/head/MatMul")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 5])],
        [numpy_helper.from_array(weight, "w")],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    # execute
    out = quantize_int4_graph(proto, set(), 64)
    session = ort.InferenceSession(
        out.proto.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    y = session.run(None, {"x": x})[0]
    # assert: one MatMulNBits of the expected block, equal to x @ the expanded int4 weight
    (node,) = out.proto.graph.node
    assert node.op_type == "MatMulNBits" and node.name == "/head/MatMul"
    assert {a.name: a.i for a in node.attribute}["block_size"] == block
    q, scales = group_quantize(weight.T, block)
    expanded = (q * np.repeat(scales.astype(np.float32), block, axis=1)[:, :k]).T
    assert np.abs(y - x @ expanded).max() <= 1e-4 * np.abs(x @ expanded).max()


def test_two_recurrent_layers_in_one_scope_get_distinct_weight_names(tmp_path):
    # setup: a 2-layer LSTM exports two LSTM nodes in the scope "rnn"
    model = make_model("lstm")
    spec = dataclasses.replace(model.spec, hparams={**model.spec.hparams, "layers": 2})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Model(module=build_model(spec).eval(), spec=spec)
    x = sine_windows(3, spec.input_len, 3, spec.n_features, 2).x
    # execute
    result, graph = emit(model, tmp_path)
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: x})[0]
    # assert
    packed = [i.name for i in graph.graph.initializer if i.data_type == onnx.TensorProto.INT4]
    assert len(packed) == 4 and len(set(packed)) == 4
    assert {"rnn.W", "rnn.R"} <= set(packed)
    assert out.shape == (3, spec.horizon, len(spec.targets)) and np.isfinite(out).all()


def _payload(proto) -> int:
    """Tensor bytes of the initializers (weights, scales, biases, shapes)."""
    return sum(
        len(i.raw_data) + 4 * len(i.float_data) + 8 * len(i.int64_data)
        for i in proto.graph.initializer
    )


@pytest.mark.parametrize("arch", ["lstm", "gru", "tcn"])
def test_int4_graph_costs_little_beyond_its_tensors(tmp_path, arch):
    # setup
    model = make_model(arch)
    # execute
    _, fp32 = emit(model, tmp_path / "a", precision="fp32")
    _, int4 = emit(model, tmp_path / "b")
    # assert: int4 bytes = its tensors (int4 weights, float16 scales and biases) + structure
    # (nodes, names, attributes); the structure of the int4 graph, which adds a
    # DequantizeLinear + Cast per stored weight and a Cast per bias, stays within 1.6x the fp32
    # graph's (1.68-1.75x with the Reshape per grouped weight, node names on every weight DQ and
    # the exporter-scoped weight names)
    n_weights = sum(p.numel() for n, p in model.module.named_parameters() if "weight" in n)
    fp32_size, int4_size = len(fp32.SerializeToString()), len(int4.SerializeToString())
    assert _payload(int4) >= n_weights / 2  # the int4 weights are all there
    structure = int4_size - _payload(int4)
    assert structure <= 1.6 * (fp32_size - _payload(fp32))


def test_max_rounding_option_gives_peak_over_seven_scales(tmp_path):
    # execute
    result, graph = emit(make_model("gru"), tmp_path, int4_rounding="max", int4_group_size="16")
    # assert: every stored weight's scale is its group's peak / 7 (in float16), and recorded
    weights = {i.name: i for i in graph.graph.initializer}
    dqs = [n for n in graph.graph.node if n.op_type == "DequantizeLinear"]
    stored = [n for n in dqs if weights[n.input[0]].data_type == onnx.TensorProto.INT4]
    assert stored and result.lowering["quantization"]["rounding"] == "max"
    for node in stored:
        q = onnx.numpy_helper.to_array(weights[node.input[0]]).astype(np.int8)
        assert onnx.numpy_helper.to_array(weights[node.input[1]]).dtype == np.float16
        assert (np.abs(q).max(axis=-1) == 7).all()  # each row's peak maps to +-7: no clipping


@pytest.mark.parametrize("group", ["channel", 16, 4])
def test_dequantized_conv_weights_are_torchs_weights_rounded_in_place(group):
    from edgecomp.targets.onnx.export import export_model
    from edgecomp.targets.onnx.int4 import (
        _expand,
        block_quantize,
        channel_quantize,
        quantize_int4_graph,
    )

    # setup: each Conv's DequantizeLinear -> Cast output made a graph output, read back by ORT
    model = make_model("tcn")
    exported = export_model(model.module, model.spec.input_len, model.spec.n_features, opset=17)
    graph = quantize_int4_graph(exported, set(), 64, group)
    casts = [n.output[0] for n in graph.proto.graph.node if n.output[0].endswith(".w")]
    for name in casts:
        graph.proto.graph.output.append(
            onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
        )
    session = ort.InferenceSession(
        graph.proto.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    x = sine_windows(1, model.spec.input_len, 3, model.spec.n_features, 2).x
    # execute
    loaded = dict(zip(casts, session.run(casts, {session.get_inputs()[0].name: x}), strict=True))
    # assert: every conv weight, element by element, is torch's weight rounded in its own group
    # (a transposed block axis would group other weights); the only other rounding is the
    # float16 product of DequantizeLinear (half a float16 step)
    convs = {
        n: m.weight.detach().numpy()
        for n, m in model.module.named_modules()
        if isinstance(m, torch.nn.Conv1d)
    }
    assert casts and {c.removesuffix(".W.w") for c in casts} == set(convs)
    for name, weight in convs.items():
        size = None if group == "channel" or group >= weight.shape[1] else group
        assert graph.groups[f"{name}.W"]["group_size"] == size
        if size is None:  # one scale per output channel
            expected = _expand(*channel_quantize(weight, 0), 0, None)
        else:
            expected = _expand(*block_quantize(weight, 1, size), 0, size)
        got = loaded[f"{name}.W.w"]
        assert got.shape == weight.shape
        np.testing.assert_allclose(got, expected, rtol=2.0**-11, atol=0)
