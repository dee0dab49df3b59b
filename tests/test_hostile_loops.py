"""Hostile TFLite WHILE loops: a real loop artifact (targets/tflite/loop.py) patched so that its
loop would never end, would run another number of steps than the window has, would recurse or
nest, must be refused by the runtime's load-time check (``opcheck.check_tflite``) with an
ArtifactError naming the file and the subgraph, before any interpreter runs it.

Unpatched, an increment of 0 makes LiteRT's invoke spin forever (measured: killed after 15 s).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from edgecomp_runtime.errors import ArtifactError
from edgecomp_runtime.opcheck import MAX_LOOP_STEPS, check_tflite

pytest.importorskip("ai_edge_litert")
from ai_edge_litert import schema_py_generated as schema  # noqa: E402
from ai_edge_litert.tools import flatbuffer_utils  # noqa: E402

LENGTH, FEATURES = 6, 3


def _module(arch: str, layers: int = 1) -> Any:
    from edgecomp.models import GRUForecaster, LSTMForecaster

    torch.set_num_threads(1)
    cls = LSTMForecaster if arch == "lstm" else GRUForecaster
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return cls(FEATURES, 2, LENGTH, 2, hidden=8, layers=layers, target_index=[0, 2]).eval()


_DATA: dict[tuple[str, int], bytes] = {}


def _loop(arch: str = "lstm", layers: int = 1) -> bytes:
    from edgecomp.targets.tflite.loop import emit_loop

    if (arch, layers) not in _DATA:
        _DATA[(arch, layers)] = emit_loop(_module(arch, layers), "int8")
    return _DATA[(arch, layers)]


def _manifest(length: int = LENGTH) -> dict[str, Any]:
    entry = {"name": "args_0", "shape": ["batch", length, FEATURES], "dtype": "float32"}
    return {"model_file": "model.tflite", "io": {"inputs": [entry], "outputs": []}}


def _patched(change: Callable[[Any], None], arch: str = "lstm") -> bytes:
    flat = flatbuffer_utils.read_model_from_bytearray(bytearray(_loop(arch)))
    change(flat)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(flat))


def _set_int(flat: Any, subgraph: int, tensor: int, value: int) -> None:
    """Give the constant int32 tensor a buffer of its own holding ``value``."""
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(np.array(value, np.int32).tobytes(), np.uint8).copy()
    flat.buffers.append(buffer)
    flat.subgraphs[subgraph].tensors[tensor].buffer = len(flat.buffers) - 1


def _code(flat: Any, name: str) -> int:
    value = getattr(schema.BuiltinOperator, name)
    return next(i for i, c in enumerate(flat.operatorCodes) if c.builtinCode == value)


def _while(flat: Any) -> Any:
    code = _code(flat, "WHILE")
    return next(op for op in flat.subgraphs[0].operators if op.opcodeIndex == code)


def _increment(flat: Any) -> Any:
    body = flat.subgraphs[2]
    return next(op for op in body.operators if op.outputs[0] == body.outputs[0])


def bound(value: int) -> Callable[[Any], None]:
    return lambda flat: _set_int(flat, 1, flat.subgraphs[1].operators[0].inputs[1], value)


def step(value: int) -> Callable[[Any], None]:
    return lambda flat: _set_int(flat, 2, _increment(flat).inputs[1], value)


def start(value: int) -> Callable[[Any], None]:
    return lambda flat: _set_int(flat, 0, _while(flat).inputs[0], value)


def subgraphs(cond: int, body: int) -> Callable[[Any], None]:
    def change(flat: Any) -> None:
        options = _while(flat).builtinOptions
        options.condSubgraphIndex, options.bodySubgraphIndex = cond, body

    return change


def swap_less(flat: Any) -> None:  # LESS(bound, counter): false at once, no step runs
    less = flat.subgraphs[1].operators[0]
    less.inputs = less.inputs[::-1]


def relu_n1_to_1(flat: Any) -> None:  # i + 1 clamped to 1: the counter stops at 1
    add = _increment(flat)
    add.builtinOptionsType = schema.BuiltinOptions.AddOptions
    add.builtinOptions = schema.AddOptionsT()
    add.builtinOptions.fusedActivationFunction = schema.ActivationFunctionType.RELU_N1_TO_1


def pass_through(flat: Any) -> None:  # the body hands its counter back unchanged
    body = flat.subgraphs[2]
    body.outputs[0] = body.inputs[0]


def second_writer(flat: Any) -> None:  # another op (the first GATHER) also writes the counter
    body = flat.subgraphs[2]
    body.operators[0].outputs = [body.outputs[0]]


def extra_cond_op(flat: Any) -> None:  # cond with a second op (a side effect in the condition)
    cond = flat.subgraphs[1]
    add = schema.OperatorT()
    add.opcodeIndex = _code(flat, "ADD")
    add.inputs, add.outputs = [cond.inputs[0], cond.operators[0].inputs[1]], [cond.inputs[0]]
    cond.operators.append(add)


def nested_while(flat: Any) -> None:  # the body runs the loop again
    body, op = flat.subgraphs[2], _while(flat)
    inner = schema.OperatorT()
    inner.opcodeIndex, inner.builtinOptionsType = op.opcodeIndex, op.builtinOptionsType
    inner.builtinOptions = op.builtinOptions
    inner.inputs, inner.outputs = list(body.inputs), list(body.inputs)
    body.operators.insert(0, inner)


def two_whiles(flat: Any) -> None:
    main, op = flat.subgraphs[0], _while(flat)
    main.operators.append(main.operators[main.operators.index(op)])


def doubling_state(flat: Any) -> None:  # the body hands back x concatenated with itself
    body = flat.subgraphs[2]
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CONCATENATION
    code.version = 1
    flat.operatorCodes.append(code)
    x = body.inputs[1]
    grown = schema.TensorT()
    grown.shape, grown.type = [1, 2 * LENGTH, FEATURES], schema.TensorType.FLOAT32
    body.tensors.append(grown)
    concat = schema.OperatorT()
    concat.opcodeIndex, concat.inputs = len(flat.operatorCodes) - 1, [x, x]
    concat.outputs = [len(body.tensors) - 1]
    concat.builtinOptionsType = schema.BuiltinOptions.ConcatenationOptions
    concat.builtinOptions = schema.ConcatenationOptionsT()
    concat.builtinOptions.axis = 1
    body.operators.append(concat)
    body.outputs[1] = concat.outputs[0]


def fourth_subgraph(flat: Any) -> None:
    flat.subgraphs.append(flat.subgraphs[2])


def computed_start(flat: Any) -> None:  # the counter starts from a tensor no buffer holds
    flat.subgraphs[0].tensors[_while(flat).inputs[0]].buffer = 0


HOSTILE = {  # name -> (patch, what the message must name)
    "huge bound": (bound(2**31 - 1), "subgraph 1 'cond'"),
    "bound over the window": (bound(LENGTH + 1), "subgraph 1 'cond'"),
    "bound under the window": (bound(1), "subgraph 1 'cond'"),
    "negative bound": (bound(-5), "subgraph 1 'cond'"),
    "LESS arguments swapped": (swap_less, "subgraph 1 'cond'"),
    "side effect in cond": (extra_cond_op, "subgraph 1 'cond'"),
    "increment 0": (step(0), "subgraph 2 'body'"),
    "increment -1": (step(-1), "subgraph 2 'body'"),
    "increment 2": (step(2), "subgraph 2 'body'"),
    "increment clamped by activation": (relu_n1_to_1, "subgraph 2 'body'"),
    "counter passed through": (pass_through, "subgraph 2 'body'"),
    "counter written twice": (second_writer, "subgraph 2 'body'"),
    "start far below 0": (start(-(2**31)), "subgraph 0 'main'"),
    "start computed": (computed_start, "subgraph 0 'main'"),
    "WHILE runs itself as body": (subgraphs(1, 0), "subgraph 0 'main'"),
    "WHILE runs itself as cond": (subgraphs(0, 2), "subgraph 0 'main'"),
    "cond and body swapped": (subgraphs(2, 1), "subgraph 0 'main'"),
    "subgraph index out of range": (subgraphs(1, 7), "subgraph 0 'main'"),
    "negative subgraph index": (subgraphs(-1, 2), "subgraph 0 'main'"),
    "WHILE nested in the body": (nested_while, "subgraph 2 'body'"),
    "two WHILE ops": (two_whiles, "subgraph 0 'main'"),
    "fourth subgraph": (fourth_subgraph, "4 subgraphs"),
    "carried tensor doubled each step": (doubling_state, "subgraph 2 'body' runs CONCATENATION"),
}


@pytest.mark.parametrize("arch", ["lstm", "gru"])
@pytest.mark.parametrize("layers", [1, 2])
def test_the_loops_edgecomp_writes_pass(arch, layers):
    from edgecomp.targets.tflite.loop import emit_loop, int4_groups, loop_layers

    # setup: hidden 64, so that int4 stores groups of 32 with float16 scales
    module = _module(arch, layers)
    wide = type(module)(FEATURES, 2, LENGTH, 2, hidden=64, layers=layers).eval()
    groups = int4_groups("auto", loop_layers(wide), {})
    # execute / assert: LSTM and GRU, one and two layers, every precision's weights
    check_tflite(_loop(arch, layers), _manifest())
    for precision in ("fp32", "int8-dynamic", "int4"):
        check_tflite(emit_loop(module, precision), _manifest())
    check_tflite(emit_loop(wide, "int4", frozenset({"head"}), groups), _manifest())


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_loop_of_another_shape_is_refused_naming_the_subgraph(name):
    # setup
    change, where = HOSTILE[name]
    data = _patched(change)
    # execute / assert: refused at load, the message names the file and the subgraph
    with pytest.raises(ArtifactError, match="model.tflite") as caught:
        check_tflite(data, _manifest())
    assert where in str(caught.value)


def test_a_loop_over_another_window_than_the_manifest_is_refused():
    # execute / assert: the file's bound (6) against a manifest window of 7, and a manifest
    # whose window is not a number
    with pytest.raises(ArtifactError, match=r"bounds the loop at 6.*window length 7"):
        check_tflite(_loop(), _manifest(LENGTH + 1))
    with pytest.raises(ArtifactError, match="window length L"):
        check_tflite(_loop(), _manifest("L"))  # type: ignore[arg-type]


def test_a_loop_longer_than_the_limit_is_refused_even_when_the_manifest_agrees():
    # setup: bound and manifest both past MAX_LOOP_STEPS
    data = _patched(bound(MAX_LOOP_STEPS + 1))
    # execute / assert
    with pytest.raises(ArtifactError, match=f"at most {MAX_LOOP_STEPS}"):
        check_tflite(data, _manifest(MAX_LOOP_STEPS + 1))


def test_corrupt_loop_bytes_give_an_artifact_error_never_another_exception():
    # setup: 400 single-byte and 4-byte corruptions of a real loop file
    data, rng = _loop("gru", 2), np.random.default_rng(0)
    outcomes = {"accepted": 0, "refused": 0}
    for trial in range(400):
        bad = bytearray(data)
        at = int(rng.integers(8, len(bad) - 4))
        width = 1 if trial % 2 else 4
        bad[at : at + width] = rng.integers(0, 256, width, dtype=np.uint8).tobytes()
        # execute / assert: either accepted or an ArtifactError naming the file
        try:
            check_tflite(bytes(bad), _manifest())
            outcomes["accepted"] += 1
        except ArtifactError as exc:
            assert "model.tflite" in str(exc)
            outcomes["refused"] += 1
    assert outcomes["refused"] > 0 and outcomes["accepted"] > 0


def test_an_int4_group_scale_past_float16_is_refused_naming_the_layer():
    from edgecomp.models import GRUForecaster
    from edgecomp.targets.base import TargetError
    from edgecomp.targets.tflite.loop import emit_loop, int4_groups, loop_layers

    # setup: a GRU whose W_hh (64 inputs: groups of 32, float16 scales) holds a 2e6 weight
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = GRUForecaster(4, 2, LENGTH, 2, hidden=64, layers=1).eval()
    with torch.no_grad():
        module.rnn.weight_hh_l0.view(-1)[0] = 2e6
    groups = int4_groups("auto", loop_layers(module), {})
    # execute / assert: grouped int4 refused naming the layer (LiteRT refused the inf scale at
    # load before); per channel (float32 scales) it still builds and passes the runtime check
    assert groups["rnn[1]"] == 32
    with pytest.raises(TargetError, match=r"loop layer 'rnn\[1\]' \(rnn.weight_hh_l0\).*float16"):
        emit_loop(module, "int4", groups=groups)
    check_tflite(emit_loop(module, "int4"), _manifest())


# --- ONNX Scan (the onnx backend's scan lowering) ----------------------------------------------


def _scan_model(body_nodes: list[Any], *, outer: list[Any] = (), scan_input: str = "xt") -> bytes:
    """[B, L, F] -> Transpose to time-major -> Scan (state [B, F], one step: ``body_nodes``
    from (s, x) to s_out) -> the last state [B, F]."""
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    body = helper.make_graph(
        list(body_nodes),
        "body",
        [
            helper.make_tensor_value_info("s", TensorProto.FLOAT, ["B", FEATURES]),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", FEATURES]),
        ],
        [helper.make_tensor_value_info("s_out", TensorProto.FLOAT, ["B", FEATURES])],
    )
    nodes = [
        helper.make_node("Transpose", ["window"], ["xt"], perm=[1, 0, 2]),
        helper.make_node("Mul", ["window_first", "zero"], ["s0"]),
        *outer,
        helper.make_node("Scan", ["s0", scan_input], ["forecast"], body=body, num_scan_inputs=1),
    ]
    nodes.insert(1, helper.make_node("Gather", ["window", "i0"], ["window_first"], axis=1))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("window", TensorProto.FLOAT, ["batch", LENGTH, FEATURES])],
        [helper.make_tensor_value_info("forecast", TensorProto.FLOAT, ["batch", FEATURES])],
        [
            helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
            helper.make_tensor("i0", TensorProto.INT64, [], [0]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return model.SerializeToString()


def _onnx_manifest() -> dict[str, Any]:
    io = {
        "inputs": [{"name": "window", "shape": ["batch", LENGTH, FEATURES], "dtype": "float32"}],
        "outputs": [{"name": "forecast", "shape": ["batch", FEATURES], "dtype": "float32"}],
    }
    return {"model_file": "model.onnx", "io": io}


def _step() -> Any:
    from onnx import helper

    return helper.make_node("Add", ["s", "x"], ["s_out"])


def test_a_plain_scan_passes_and_runs():
    from edgecomp_runtime.opcheck import check_onnx

    ort = pytest.importorskip("onnxruntime")
    # setup
    data = _scan_model([_step()])
    x = np.random.default_rng(0).standard_normal((2, LENGTH, FEATURES)).astype(np.float32)
    # execute
    check_onnx(data, _onnx_manifest(), "onnx")
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    # assert: the sum over the window (the test's own model runs, so the refusals below are of
    # a runnable graph)
    np.testing.assert_allclose(session.run(None, {"window": x})[0], x.sum(axis=1), rtol=1e-5)


def _hostile_scans() -> dict[str, tuple[bytes, str, str]]:
    """name -> (model bytes, backend, what the message must say)."""
    from onnx import TensorProto, helper

    inner = helper.make_graph(
        [helper.make_node("Identity", ["a"], ["b"])],
        "inner",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["B", FEATURES])],
        [helper.make_tensor_value_info("b", TensorProto.FLOAT, ["B", FEATURES])],
    )
    nested = helper.make_node("Scan", ["s"], ["s_out"], body=inner, num_scan_inputs=1)
    loop = helper.make_node("Loop", ["", "", "s"], ["s_out"], body=inner)
    big = helper.make_tensor("reps", TensorProto.INT64, [3], [1 << 20, 1, 1])
    huge = [
        helper.make_node("Constant", [], ["reps"], value=big),
        helper.make_node("Tile", ["xt", "reps"], ["xt_long"]),
    ]
    doubled = [helper.make_node("Concat", ["xt", "xt"], ["xt_long"], axis=0)]
    repeat = helper.make_tensor("steps", TensorProto.INT64, [4], [0, 1, 2, 3])
    gathered = [
        helper.make_node("Constant", [], ["steps"], value=repeat),
        helper.make_node("Gather", ["xt", "steps"], ["xt_long"], axis=0),
    ]
    feed = "scan input comes through"
    return {
        "Scan over a concatenated input": (
            _scan_model([_step()], outer=doubled, scan_input="xt_long"),
            "onnx",
            f"{feed} Concat",
        ),
        "Scan over gathered steps": (
            _scan_model([_step()], outer=gathered, scan_input="xt_long"),
            "onnx",
            f"{feed} Gather",
        ),
        "Scan nested in the body": (_scan_model([nested]), "onnx", "subgraph"),
        "Loop in the body": (_scan_model([loop]), "onnx", "subgraph"),
        "Scan on tensorrt": (_scan_model([_step()]), "tensorrt", "operator Scan"),
        "Scan over a tiled input": (
            _scan_model([_step()], outer=huge, scan_input="xt_long"),
            "onnx",
            f"{feed} Tile",
        ),
    }


@pytest.mark.parametrize(
    "name",
    [
        "Scan nested in the body",
        "Loop in the body",
        "Scan on tensorrt",
        "Scan over a tiled input",
        "Scan over a concatenated input",
        "Scan over gathered steps",
    ],
)
def test_a_scan_of_another_shape_is_refused(name):
    from edgecomp_runtime.opcheck import check_onnx

    # setup
    data, backend, message = _hostile_scans()[name]
    # execute / assert
    with pytest.raises(ArtifactError, match=f"model.onnx: .*{message}"):
        check_onnx(data, _onnx_manifest(), backend)
