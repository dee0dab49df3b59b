"""Where an int4 TCN's bytes go on the tflite target, and the cuts (targets/tflite/shrink.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from edgecomp.models import build_model
from edgecomp.spec import Model
from edgecomp.targets import get_profile
from edgecomp.targets.tflite import TfliteTarget
from helpers.testing import assert_close, sine_windows, tiny_spec

pytest.importorskip("litert_torch", reason=TfliteTarget.missing_reason())
pytestmark = [
    pytest.mark.target,
    pytest.mark.skipif(not TfliteTarget.is_available(), reason=TfliteTarget.missing_reason()),
]

PROFILE = get_profile("arm64-gateway")
QUANT_TABLE_ALLOWANCE = 64  # bytes per quantized weight: its table, vtable and vector headers
_CACHE: dict[str, Any] = {}


@pytest.fixture(scope="module")
def tcn() -> Model:
    """A TCN of 32 channels: 32-channel convolutions and a head reading 32 inputs."""
    spec = dataclasses.replace(tiny_spec("tcn", input_len=16), hparams={"channels": 32})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return Model(module=build_model(spec).eval(), spec=spec, source="test")


def windows(model: Model, n: int = 32, seed: int = 0) -> np.ndarray:
    spec = model.spec
    return sine_windows(n, spec.input_len, spec.horizon, spec.n_features, 2, seed).x


def emit(model: Model, precision: str, tmp: Path) -> tuple[Any, bytes]:
    """The emitted result and model bytes (cached per precision)."""
    if precision not in _CACHE:
        out = tmp / precision
        out.mkdir()
        calibration = windows(model, 64, seed=1) if precision == "int8" else None
        result = TfliteTarget().emit(
            model, PROFILE, out, precision=precision, calibration=calibration
        )
        _CACHE[precision] = (result, (out / result.model_file).read_bytes())
    return _CACHE[precision]


def unshrunk(model: Model, precision: str, *, channel_head: bool = False) -> bytes:
    """What the build writes without shrink.py: litert-torch, ai-edge-quantizer (the profile's
    settings), names dropped; ``channel_head``: int4 FULLY_CONNECTED per channel, as before."""
    from edgecomp.targets.tflite.convert import compact, convert_module
    from edgecomp.targets.tflite.graph import Graph
    from edgecomp.targets.tflite.lowering import rewrite
    from edgecomp.targets.tflite.quantize import QuantSettings, quantize

    spec, settings = model.spec, QuantSettings.from_options(PROFILE.options)
    module = rewrite(model.module) or model.module  # the TCN's receptive cone, as the build
    source = convert_module(module, spec.input_len, spec.n_features)
    if precision == "fp32":
        return compact(source)
    graph = Graph(source)
    layers = graph.layers(model.module)
    groups = {} if channel_head else settings.groups(graph, layers, {})
    grouped = {la.op.scope: groups[la.name] for la in layers if la.name in groups}
    calibration = windows(model, 64, seed=1) if precision == "int8" else None
    return compact(quantize(source, precision, calibration, settings, [], grouped))


def torch_forward(model: Model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model.module(torch.from_numpy(x)).numpy()


def run(result: Any, data: bytes, x: np.ndarray) -> np.ndarray:
    from edgecomp_runtime.engines.litert import LiteRtEngine

    manifest = {"model_file": result.model_file, "io": result.io, "recipe": {"lowering": {}}}
    return LiteRtEngine(data, manifest, threads=1).run(x)


def ops(data: bytes) -> list[str]:
    from ai_edge_litert.tools import flatbuffer_utils

    from edgecomp.targets.tflite.shrink import _Graph

    graph = _Graph(flatbuffer_utils.read_model_from_bytearray(bytearray(data)))
    return [graph.code(op) for op in graph.graph.operators]


def weights(model: Model) -> dict[str, list[tuple[int, int, int]]]:
    """Per kind ("conv", "linear"): (weight elements, output channels, inputs) of each layer."""
    layers: dict[str, list[tuple[int, int, int]]] = {"conv": [], "linear": []}
    for module in model.module.modules():
        if isinstance(module, torch.nn.Conv1d | torch.nn.Linear):
            kind = "conv" if isinstance(module, torch.nn.Conv1d) else "linear"
            w = module.weight
            layers[kind].append((w.numel(), w.shape[0], w[0].numel()))
    return layers


# --- the size -----------------------------------------------------------------------------------


def test_int4_file_fits_the_bound_of_its_weights_and_matches_torch(tcn, tmp_path_factory):
    # setup: fp32 and int4 artifacts of the same TCN
    tmp = tmp_path_factory.mktemp("size")
    fp32_result, fp32 = emit(tcn, "fp32", tmp)
    result, int4 = emit(tcn, "int4", tmp)
    layers = weights(tcn)
    n_weights = sum(n for kind in layers.values() for n, _, _ in kind)
    n_bias = sum(p.numel() for name, p in tcn.module.named_parameters() if name.endswith("bias"))
    # execute: the bound: the fp32 file's graph (all but its float32 weights and biases), int4
    # weights, float32 biases, a float32 scale per conv channel and one int64 zero-point vector
    # per distinct conv width (shared), a float16 scale per head row (blockwise, no zero point)
    graph = len(fp32) - 4 * (n_weights + n_bias)
    payload = sum((n + 1) // 2 for kind in layers.values() for n, _, _ in kind) + 4 * n_bias
    scales = 4 * sum(out for _, out, _ in layers["conv"]) + 2 * sum(
        out * (inputs // 32) for _, out, inputs in layers["linear"]
    )
    zero_points = 8 * sum({out for _, out, _ in layers["conv"]})
    n_quantized = sum(map(len, layers.values()))
    bound = graph + payload + scales + zero_points + QUANT_TABLE_ALLOWANCE * n_quantized
    # assert: within the bound, which a file with one int64 zero point per channel would miss
    assert len(int4) <= bound
    per_channel_zero_points = 8 * sum(out for kind in layers.values() for _, out, _ in kind)
    assert len(int4) - zero_points + per_channel_zero_points > bound
    assert all(inputs == 32 for _, _, inputs in layers["linear"])
    assert result.lowering["quantization"]["int4_groups"] == {
        "32": 1,
        "channel": len(layers["conv"]),
    }
    # ... smaller than what the build wrote before (less at least the head's zero points)
    head_rows = sum(out for _, out, _ in layers["linear"])
    assert len(int4) < len(unshrunk(tcn, "int4", channel_head=True)) - 8 * head_rows
    # ... and still the model: LiteRT through the runtime engine against torch
    x = windows(tcn, 8, seed=4)
    assert_close(torch_forward(tcn, x), run(result, int4, x), dtype="int4")
    assert_close(torch_forward(tcn, x), run(fp32_result, fp32, x), dtype="fp32")


@pytest.mark.parametrize("precision", ["fp32", "int8", "int4"])
def test_convolutions_read_channels_last_tensors_and_every_output_is_kept(
    precision, tcn, tmp_path_factory
):
    from edgecomp.targets.tflite.shrink import same_outputs

    # setup / execute
    result, data = emit(tcn, precision, tmp_path_factory.mktemp(precision))
    before = unshrunk(tcn, precision)
    # assert: no layout op left, one CONV_2D per Conv1d, fewer ops and bytes
    n_conv = len(weights(tcn)["conv"])
    assert "TRANSPOSE" in ops(before) and "TRANSPOSE" not in ops(data)
    assert ops(data).count("CONV_2D") == n_conv == ops(before).count("CONV_2D")
    assert len(ops(data)) < len(ops(before)) and len(data) < len(before)
    # ... LiteRT's outputs of the written file are the ones of the file before, and torch's
    assert same_outputs(before, data)
    x = windows(tcn, 8, seed=5)
    assert_close(torch_forward(tcn, x), run(result, data, x), dtype=precision)


def test_the_outputs_check_tells_models_apart(tcn, tmp_path_factory):
    from edgecomp.targets.tflite.shrink import same_outputs

    tmp = tmp_path_factory.mktemp("apart")
    (_, fp32), (_, int4) = emit(tcn, "fp32", tmp), emit(tcn, "int4", tmp)
    assert same_outputs(fp32, fp32) and not same_outputs(fp32, int4)
    assert not same_outputs(fp32, fp32[: len(fp32) // 2])  # LiteRT refuses it


def test_a_rewrite_whose_outputs_differ_is_not_kept(tcn, monkeypatch):
    from edgecomp.targets.tflite import shrink as module

    # setup: the converted file, and an outputs check that says they differ
    before = unshrunk(tcn, "fp32")
    monkeypatch.setattr(module, "same_outputs", lambda a, b: False)
    # execute
    after = module.shrink(before)
    # assert: the layout ops stay; only the writing changed (no larger, same outputs)
    assert ops(after) == ops(before) and len(after) <= len(before)
    monkeypatch.undo()
    assert module.same_outputs(before, after)


def test_identical_vectors_are_written_once(tcn, tmp_path_factory):
    from ai_edge_litert.tools import flatbuffer_utils

    from edgecomp.targets.tflite.shrink import serialize

    # setup: the written int4 file read back as objects
    _, data = emit(tcn, "int4", tmp_path_factory.mktemp("vectors"))
    convs = weights(tcn)["conv"]
    # execute: written by flatbuffer_utils (every vector its own copy) and by serialize
    each = len(flatbuffer_utils.convert_object_to_bytearray(_read(data)))
    once = len(serialize(_read(data)))
    # assert: the conv layers share one zero-point vector: the others' 8 bytes per channel go
    assert once == len(data)
    assert each - once >= 8 * sum(out for _, out, _ in convs[1:])


def _read(data: bytes) -> Any:
    from ai_edge_litert.tools import flatbuffer_utils

    return flatbuffer_utils.read_model_from_bytearray(bytearray(data))


def test_the_head_is_blockwise_with_a_float16_scale_tensor_renumbered_with_the_graph(
    tcn, tmp_path_factory
):
    from ai_edge_litert import schema_py_generated as schema

    _, data = emit(tcn, "int4", tmp_path_factory.mktemp("head"))
    graph = _read(data).subgraphs[0]
    (head,) = [t for t in graph.tensors if t.quantization and t.quantization.detailsType == 2]
    scales = graph.tensors[head.quantization.details.scales]
    assert scales.type == schema.TensorType.FLOAT16
    assert list(scales.shape) == [head.shape[0], head.shape[1] // 32]


# --- the group rule -----------------------------------------------------------------------------


def test_a_layer_of_32_64_or_128_inputs_gets_one_group_else_the_largest_two_group_size():
    from edgecomp.targets.tflite.graph import Layer, Op
    from edgecomp.targets.tflite.quantize import QuantSettings

    class _Graph:
        shapes = [[], [8, 32], [8, 128], [8, 48], [8, 256], [8, 22]]

    layers = [Layer(f"l{i}", Op(i, "FULLY_CONNECTED", "", (0, i), (9,))) for i in range(1, 6)]
    auto = QuantSettings().groups(_Graph(), layers, kept={})
    assert auto == {"l1": 32, "l2": 64, "l4": 128}
    assert QuantSettings(int4_group_size="128").groups(_Graph(), layers, kept={}) == {
        "l2": 128,
        "l4": 128,
    }
    assert QuantSettings(int4_group_size="channel").groups(_Graph(), layers, kept={}) == {}
