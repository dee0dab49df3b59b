"""Load-time checks of an ONNX model file against its manifest, before any engine sees it.

The runtime has no ``onnx`` package, so this reads the protobuf wire format itself, and only the
parts it checks: the graph's inputs and outputs, its nodes (operator, domain, inputs), small
constant tensors, and whether any tensor lives outside the file.

* **I/O**: input and output names, element types and static dimensions must be the manifest's
  ``io`` (an axis the manifest fixes must be fixed to that size in the model: a variable time axis
  would take any window length and forecast wrong).
* **Operators**: only the set the backend's lowering emits (``ALLOWED_OPS``): no control flow
  (Loop, If) but the ``onnx`` backend's Scan (the recurrent ``scan`` lowering: its iterations are
  bounded by its input's length, and its one body, which may not nest another, is checked like
  the graph), no sequences, random or string operators, no other subgraphs, no model-local
  functions, no external data. Operators that allocate from a shape (ConstantOfShape, Expand,
  Tile, Range) may not ask for more than ``MAX_ELEMENTS`` elements when that shape is constant.
* **TFLite** (``tflite`` backend): the builtin operators the ARM lowering emits
  (``TFLITE_OPS``, read from the flatbuffer's operator codes); no custom operators, no control
  flow but the recurrent loop lowering's WHILE (then exactly three subgraphs: main, cond, body;
  no IF, CALL_ONCE), no random operators, otherwise one subgraph. A WHILE must have the shape
  ``targets/tflite/loop.py`` writes, so that it ends after the window's steps: one WHILE, in main,
  running cond 1 and body 2; its counter starts at the constant 0; cond is the one op
  ``LESS(counter, bound)`` with a constant bound equal to the manifest's window length (at most
  ``MAX_LOOP_STEPS``); the body's next counter is ``ADD(counter, 1)`` (no fused activation) and
  nothing else writes it; the body runs only loop.py's ops (``_LOOP_BODY_OPS``: none grows a
  carried tensor).
* **Input range**: for a quantized input (a QuantizeLinear reached from the graph input through
  layout operators), the range of scaled values it represents, for ``Model.predict`` to refuse
  inputs far outside it.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgecomp_runtime.errors import ArtifactError

MAX_ELEMENTS = 1 << 26  # 64 Mi elements (256 MB of float32) from one shape-driven operator
MAX_LOOP_STEPS = 1 << 16  # a TFLite WHILE loop's trip count (the window length) at most
_SMALL = 4096  # constant tensors up to this many elements are decoded (shapes, scales)
_STANDARD = """Abs Add And ArgMax ArgMin AveragePool BatchNormalization Cast Ceil Clip Concat
Constant ConstantOfShape Conv ConvInteger ConvTranspose Cos CumSum DequantizeLinear Div Dropout
DynamicQuantizeLinear Elu Equal Erf Exp Expand Flatten Floor GRU Gather GatherElements GatherND
Gelu Gemm GlobalAveragePool GlobalMaxPool Greater GreaterOrEqual HardSigmoid HardSwish Identity
InstanceNormalization LSTM LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax MatMul
MatMulInteger Max MaxPool Mean Min Mish Mod Mul Neg Not Or PRelu Pad Pow QLinearConv QLinearMatMul
QuantizeLinear RNN Range Reciprocal ReduceL2 ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum
ReduceSumSquare Relu Reshape Round Selu Shape Sigmoid Sign Sin Size Slice Softmax Softplus
Softsign Split Sqrt Squeeze Sub Sum Tanh Tile Transpose Trilu Unsqueeze Where Xor"""
_MICROSOFT = """DequantizeLinear DynamicQuantizeLSTM DynamicQuantizeMatMul MatMulIntegerToFloat
MatMulNBits QGemm QLinearAdd QLinearAveragePool QLinearConcat QLinearGlobalAveragePool
QLinearLeakyRelu QLinearMul QLinearSigmoid QuantizeLinear"""
_OPS = frozenset({("", op) for op in _STANDARD.split()}) | frozenset(
    ("com.microsoft", op) for op in _MICROSOFT.split()
)
# backend -> the (domain, operator) pairs its lowering may emit; "" is the ONNX domain
ALLOWED_OPS: dict[str, frozenset[tuple[str, str]]] = {
    "onnx": _OPS | {("", "Scan")},  # targets/onnx/recurrent.py's scan lowering
    "openvino": _OPS | {("", "Scan")},  # runs the onnx backend's file too
    "tensorrt": _OPS,
}
_BODY_OPS = frozenset({"Scan"})  # operators whose subgraph (one, not nested) is read and checked
# what may lie between the graph input and a Scan's scan input: ops that keep the scanned axis
# as long as their input's (or a constant's, whose size the file bounds)
_FEED = """Add Cast Clip Constant DequantizeLinear Div DynamicQuantizeLinear DynamicQuantizeMatMul
Gemm Identity MatMul MatMulInteger MatMulIntegerToFloat MatMulNBits Mul QGemm QuantizeLinear Relu
Reshape Sigmoid Slice Squeeze Sub Tanh Transpose Unsqueeze"""
_SCAN_FEED = frozenset(_FEED.split())
# TFLite builtin operator -> its BuiltinOperator code (schema.fbs; a test checks them against
# ai_edge_litert's schema): what litert-torch and ai-edge-quantizer emit for these forecasters
TFLITE_OPS: dict[str, int] = {
    "ADD": 0, "AVERAGE_POOL_2D": 1, "CONCATENATION": 2, "CONV_2D": 3, "DEPTHWISE_CONV_2D": 4,
    "DEQUANTIZE": 6, "FULLY_CONNECTED": 9, "LOGISTIC": 14, "MAX_POOL_2D": 17, "MUL": 18,
    "RELU": 19, "RELU6": 21, "RESHAPE": 22, "SOFTMAX": 25, "TANH": 28, "PAD": 34, "GATHER": 36,
    "TRANSPOSE": 39, "MEAN": 40, "SUB": 41, "DIV": 42, "SQUEEZE": 43,
    "UNIDIRECTIONAL_SEQUENCE_LSTM": 44, "STRIDED_SLICE": 45, "EXP": 47, "SPLIT": 49, "CAST": 53,
    "MAXIMUM": 55, "MINIMUM": 57, "NEG": 59, "PADV2": 60, "SELECT": 64, "SLICE": 65,
    "EXPAND_DIMS": 70, "SUM": 74, "SQRT": 75, "RSQRT": 76, "PACK": 83, "UNPACK": 88,
    "SQUARE": 92, "LEAKY_RELU": 98, "SQUARED_DIFFERENCE": 99, "SPLIT_V": 102, "ABS": 101,
    "QUANTIZE": 114, "HARD_SWISH": 117, "SELECT_V2": 123, "BATCH_MATMUL": 126, "GELU": 150,
    "BROADCAST_TO": 130,  # the graph model (stgnn): global inputs and supports over the batch
    "LESS": 58, "WHILE": 119,  # the recurrent loop lowering (targets/tflite/loop.py)
    "GATHER_ND": 107,  # litert-torch's residual of targets that are not evenly spaced features
}  # fmt: skip
_TFLITE_NAMES = {code: name for name, code in TFLITE_OPS.items()}
_LAYOUT = frozenset({"Transpose", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Flatten"})
_LAYOUT |= {"Slice", "Gather"}
_ELEM = {1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64", 10: "float16"}
_ELEM.update({11: "float64", 9: "bool"})
_INTS = {2: (0, 255), 3: (-128, 127)}


@dataclass
class _Graph:
    inputs: list[tuple[str, str, list[Any]]] = field(default_factory=list)
    outputs: list[tuple[str, str, list[Any]]] = field(default_factory=list)
    nodes: list[tuple[str, str, list[str], list[str]]] = field(default_factory=list)
    constants: dict[str, np.ndarray] = field(default_factory=dict)
    initializers: set[str] = field(default_factory=set)
    scans: dict[tuple[str, ...], int] = field(default_factory=dict)  # outputs -> scan inputs


def check_onnx(data: bytes, manifest: dict[str, Any], backend: str) -> tuple[float, float] | None:
    """Check an ONNX model file against the manifest and the backend's operator set.

    Returns:
        The range of scaled input values the model's input quantizer represents, or None when
        the input is not quantized.

    Raises:
        ArtifactError: Malformed protobuf, I/O that differs from the manifest, an operator the
            backend's lowering does not emit, a subgraph, a local function, external data, or a
            shape-driven allocation beyond ``MAX_ELEMENTS``; the message names the file and
            what differs.
    """
    where = manifest["model_file"]
    try:
        graph = _read_model(memoryview(data), where)
    except (ValueError, IndexError, struct.error) as exc:
        raise ArtifactError(f"{where}: not a readable ONNX model ({exc})") from None
    _check_io(graph, manifest["io"], where)
    _check_ops(graph, ALLOWED_OPS.get(backend, _OPS), backend, where)
    _check_scans(graph, where)
    return _input_range(graph)


def check_tflite(data: bytes, manifest: dict[str, Any]) -> None:
    """Check a TFLite flatbuffer's operators against ``TFLITE_OPS``.

    Raises:
        ArtifactError: Not a TFLite flatbuffer, more than one subgraph, a custom operator, or a
            builtin operator outside ``TFLITE_OPS``; the message names the file and operator.
            A model with a WHILE op (the recurrent loop lowering) has three subgraphs.
    """
    where = manifest["model_file"]
    try:
        if bytes(data[4:8]) != b"TFL3":
            raise ValueError("no TFL3 identifier")
        codes, subgraphs = _tflite_codes(memoryview(data))
    except (ValueError, IndexError, struct.error) as exc:
        raise ArtifactError(f"{where}: not a readable TFLite model ({exc})") from None
    loop = any(code == TFLITE_OPS["WHILE"] for code, _ in codes)
    if subgraphs != (3 if loop else 1):
        raise ArtifactError(
            f"{where}: {subgraphs} subgraphs; the ARM lowering emits one, or three with a "
            "WHILE loop (main, cond, body)"
        )
    for code, custom in codes:
        if custom is not None or code not in _TFLITE_NAMES:
            what = f"custom operator '{custom}'" if custom is not None else f"builtin code {code}"
            raise ArtifactError(
                f"{where}: {what} is not one the 'tflite' lowering emits; allowed: "
                f"{', '.join(sorted(TFLITE_OPS))}"
            )
    if loop:
        try:
            _check_loop(_FlatModel(memoryview(data), [c for c, _ in codes]), manifest, where)
        except ArtifactError:
            raise
        except (ValueError, IndexError, struct.error) as exc:
            raise ArtifactError(f"{where}: not a readable TFLite model ({exc})") from None


# --- checks -----------------------------------------------------------------------------------


def _check_io(graph: _Graph, io: dict[str, Any], where: str) -> None:
    inputs = [value for value in graph.inputs if value[0] not in graph.initializers]
    for side, values in (("inputs", inputs), ("outputs", graph.outputs)):
        names = [value[0] for value in values]
        expected = [entry["name"] for entry in io[side]]
        if names != expected:
            raise ArtifactError(
                f"{where}: the model's {side} are {names}, the manifest's io.{side} {expected}"
            )
        for (name, dtype, dims), entry in zip(values, io[side], strict=True):
            _check_value(f"{where}: {side[:-1]} '{name}'", dtype, dims, entry)


def _check_value(what: str, dtype: str, dims: list[Any], entry: dict[str, Any]) -> None:
    if dtype != entry["dtype"]:
        raise ArtifactError(f"{what} is {dtype} in the model, {entry['dtype']} in the manifest")
    shape = entry["shape"]
    if len(dims) != len(shape):
        raise ArtifactError(f"{what} has shape {dims} in the model, {shape} in the manifest")
    for axis, (got, want) in enumerate(zip(dims, shape, strict=True)):
        if isinstance(want, int) and got != want:
            raise ArtifactError(
                f"{what}: axis {axis} is {got!r} in the model, {want} in the manifest "
                "(a variable axis would take any length and forecast wrong)"
            )


def _check_ops(graph: _Graph, allowed: frozenset, backend: str, where: str) -> None:
    for domain, op, inputs, _ in graph.nodes:
        key = ("" if domain == "ai.onnx" else domain, op)
        if key not in allowed:
            names = sorted(f"{d}:{o}" if d else o for d, o in allowed)
            raise ArtifactError(
                f"{where}: operator {_name(key)} is not one the '{backend}' lowering emits; "
                f"allowed: {', '.join(names)}"
            )
        elements = _allocation(op, [graph.constants.get(name) for name in inputs])
        if elements is not None and elements > MAX_ELEMENTS:
            raise ArtifactError(
                f"{where}: {op} would allocate {elements:.3g} elements, more than {MAX_ELEMENTS}"
            )


def _check_scans(graph: _Graph, where: str) -> None:
    """A Scan runs one step per element of its scan inputs' scanned axis: each of those inputs
    must come from the graph input through ops that cannot lengthen it (``_SCAN_FEED``, and
    the scan outputs of an earlier Scan), as in the scan lowering; ArtifactError otherwise."""
    if not graph.scans:
        return
    producers: dict[str, list[tuple[str, list[str], list[str]]]] = {}
    for _, op, inputs, outputs in graph.nodes:
        for name in outputs:
            producers.setdefault(name, []).append((op, inputs, outputs))
    for _, op, inputs, outputs in graph.nodes:
        if op != "Scan":
            continue
        count = graph.scans.get(tuple(outputs), 0)
        if not 1 <= count <= len(inputs):
            raise ArtifactError(
                f"{where}: Scan '{outputs[0] if outputs else ''}' has num_scan_inputs {count} "
                f"of {len(inputs)} inputs"
            )
        _scan_feed(producers, graph.scans, inputs[len(inputs) - count :], where)


def _scan_feed(
    producers: dict[str, list[tuple[str, list[str], list[str]]]],
    scans: dict[tuple[str, ...], int],
    front: list[str],
    where: str,
) -> None:
    seen: set[str] = set()
    while front:
        name = front.pop()
        if not name or name in seen:
            continue
        seen.add(name)
        for op, inputs, outputs in producers.get(name, []):
            if op == "Scan":
                front += inputs[len(inputs) - scans.get(tuple(outputs), 0) :]
            elif op in _SCAN_FEED:
                front += inputs
            else:
                raise ArtifactError(
                    f"{where}: a Scan's scan input comes through {op} (tensor '{name}'), which "
                    "could make it longer than the window and the loop run more steps; the scan "
                    f"lowering feeds a Scan through {', '.join(sorted(_SCAN_FEED))} only"
                )


def _allocation(op: str, inputs: list[np.ndarray | None]) -> float | None:
    """Elements a shape-driven operator allocates when its shape input is constant."""
    index = {"ConstantOfShape": 0, "Expand": 1, "Tile": 1}.get(op)
    if index is not None and len(inputs) > index and inputs[index] is not None:
        return float(np.prod(np.abs(inputs[index].astype(np.float64))))
    if op == "Range" and len(inputs) == 3 and all(v is not None and v.size == 1 for v in inputs):
        start, limit, delta = (float(v.reshape(-1)[0]) for v in inputs)
        return math.inf if delta == 0 else max(0.0, math.ceil((limit - start) / delta))
    return None


def _input_range(graph: _Graph) -> tuple[float, float] | None:
    """The widest range a QuantizeLinear reached from a graph input through layout ops covers."""
    consumers: dict[str, list[tuple[str, list[str], list[str]]]] = {}
    for _, op, inputs, outputs in graph.nodes:
        for name in inputs[:1]:
            consumers.setdefault(name, []).append((op, inputs, outputs))
    front = [name for name, _, _ in graph.inputs if name not in graph.initializers]
    ranges, seen = [], set(front)
    while front:
        for op, inputs, outputs in consumers.get(front.pop(), []):
            if op == "QuantizeLinear":
                ranges.append(_quantized_range(graph.constants, inputs))
            elif op in _LAYOUT:
                front += [name for name in outputs if name not in seen]
                seen.update(outputs)
    ranges = [r for r in ranges if r is not None]
    return (min(r[0] for r in ranges), max(r[1] for r in ranges)) if ranges else None


def _quantized_range(constants: dict[str, np.ndarray], inputs: list[str]) -> Any:
    scale = constants.get(inputs[1]) if len(inputs) > 1 else None
    zero = constants.get(inputs[2]) if len(inputs) > 2 else np.zeros(1, np.uint8)
    if scale is None or zero is None or scale.size != 1 or zero.size != 1:
        return None  # per-channel or computed: no single range
    low, high = _INTS.get(3 if zero.dtype == np.int8 else 2)
    step, offset = float(scale.reshape(-1)[0]), float(zero.reshape(-1)[0])
    return ((low - offset) * step, (high - offset) * step)


def _name(key: tuple[str, str]) -> str:
    return f"{key[0]}:{key[1]}" if key[0] else key[1]


# --- flatbuffers (TFLite) ---------------------------------------------------------------------


def _tflite_codes(buf: memoryview) -> tuple[list[tuple[int, str | None]], int]:
    """The (builtin code, custom name) of each OperatorCode, and the number of subgraphs."""
    root = _uoffset(buf, 0)
    codes = []
    for table in _tables(buf, _field(buf, root, 1)):  # Model.operator_codes
        deprecated = _scalar(buf, table, 0, "<b")
        builtin = _scalar(buf, table, 3, "<i")
        custom = _field(buf, table, 1)
        codes.append((max(deprecated, builtin), None if custom is None else _string(buf, custom)))
    return codes, len(_tables(buf, _field(buf, root, 2)))  # Model.subgraphs


def _unpack(fmt: str, buf: memoryview, pos: int) -> Any:
    """One value at ``pos``; ValueError outside the file (struct would wrap a negative one)."""
    if pos < 0 or pos + struct.calcsize(fmt) > len(buf):
        raise ValueError(f"offset {pos} outside the {len(buf)}-byte file")
    return struct.unpack_from(fmt, buf, pos)[0]


def _uoffset(buf: memoryview, pos: int) -> int:
    return pos + _unpack("<I", buf, pos)


def _field(buf: memoryview, table: int, index: int) -> int | None:
    """Position of field ``index`` of the table at ``table``, or None when absent."""
    vtable = table - _unpack("<i", buf, table)
    size = _unpack("<H", buf, vtable)
    if 4 + 2 * index >= size:
        return None
    offset = _unpack("<H", buf, vtable + 4 + 2 * index)
    return table + offset if offset else None


def _scalar(buf: memoryview, table: int, index: int, fmt: str) -> int:
    position = _field(buf, table, index)
    return 0 if position is None else _unpack(fmt, buf, position)


def _tables(buf: memoryview, position: int | None) -> list[int]:
    if position is None:
        return []
    vector = _uoffset(buf, position)
    count = _unpack("<I", buf, vector)
    if count > len(buf) // 4:
        raise ValueError(f"a vector of {count} entries in {len(buf)} bytes")
    return [_uoffset(buf, vector + 4 + 4 * i) for i in range(count)]


def _string(buf: memoryview, position: int) -> str:
    start = _uoffset(buf, position)
    length = _unpack("<I", buf, start)
    return bytes(buf[start + 4 : start + 4 + length]).decode("utf-8", "replace")


# --- the TFLite WHILE loop ---------------------------------------------------------------------

_INT32, _NO_ACTIVATION = 2, 0  # TensorType.INT32; ActivationFunctionType.NONE
# what loop.py's body runs: none of these can grow a carried tensor from one step to the next
# (CONCATENATION, PACK or PAD there could double it each step)
_LOOP_BODY_OPS = frozenset({"ADD", "FULLY_CONNECTED", "GATHER", "LOGISTIC", "MUL", "SPLIT"})
_LOOP_BODY_OPS |= {"SUB", "TANH"}


@dataclass
class _Op:
    code: int
    inputs: list[int]
    outputs: list[int]
    table: int


@dataclass
class _Sub:
    index: int
    name: str
    tensors: list[int]
    inputs: list[int]
    outputs: list[int]
    ops: list[_Op]

    def label(self) -> str:
        return f"subgraph {self.index} '{self.name}'"


class _FlatModel:
    """The parts of a TFLite flatbuffer the loop check reads (schema.fbs field numbers)."""

    def __init__(self, buf: memoryview, codes: list[int]) -> None:
        self.buf, root = buf, _uoffset(buf, 0)
        self.buffers = _tables(buf, _field(buf, root, 4))  # Model.buffers
        self.subs = []
        for index, table in enumerate(_tables(buf, _field(buf, root, 2))):  # Model.subgraphs
            name = _field(buf, table, 4)
            ops = [self._op(op, codes) for op in _tables(buf, _field(buf, table, 3))]
            self.subs.append(
                _Sub(
                    index,
                    "" if name is None else _string(buf, name),
                    _tables(buf, _field(buf, table, 0)),
                    self.ints(table, 1),
                    self.ints(table, 2),
                    ops,
                )
            )

    def ints(self, table: int, index: int) -> list[int]:
        """A [int32] vector field (absent: empty)."""
        position = _field(self.buf, table, index)
        if position is None:
            return []
        vector = _uoffset(self.buf, position)
        count = _unpack("<I", self.buf, vector)
        if count > len(self.buf) // 4:
            raise ValueError(f"a vector of {count} entries in {len(self.buf)} bytes")
        return [_unpack("<i", self.buf, vector + 4 + 4 * i) for i in range(count)]

    def _op(self, table: int, codes: list[int]) -> _Op:
        index = _scalar(self.buf, table, 0, "<I")  # Operator.opcode_index
        if index >= len(codes):
            raise ValueError(f"operator code index {index} of {len(codes)}")
        return _Op(codes[index], self.ints(table, 1), self.ints(table, 2), table)

    def options(self, op: _Op) -> int | None:
        """Position of the operator's builtin options table (field 4), or None."""
        position = _field(self.buf, op.table, 4)
        return None if position is None else _uoffset(self.buf, position)

    def constant(self, sub: _Sub, index: int) -> int | None:
        """The value of a constant int32 scalar tensor (one element, data in the file, written
        by no op of ``sub``), else None."""
        if not 0 <= index < len(sub.tensors) or index in sub.inputs:
            return None
        if any(index in op.outputs for op in sub.ops):
            return None
        table = sub.tensors[index]
        shape = self.ints(table, 0)
        if _scalar(self.buf, table, 1, "<b") != _INT32 or math.prod(shape) != 1:
            return None
        buffer = _scalar(self.buf, table, 2, "<I")
        if not 0 < buffer < len(self.buffers):
            return None
        data = _field(self.buf, self.buffers[buffer], 0)  # Buffer.data
        if data is None:
            return None
        vector = _uoffset(self.buf, data)
        if _unpack("<I", self.buf, vector) != 4:
            return None
        return _unpack("<i", self.buf, vector + 4)


def _check_loop(flat: _FlatModel, manifest: dict[str, Any], where: str) -> None:
    """Refuse a WHILE loop that is not the shape loop.py writes (see the module docstring): it
    could run forever, or for another number of steps than the window has."""
    whiles = [(sub, op) for sub in flat.subs for op in sub.ops if op.code == TFLITE_OPS["WHILE"]]
    if not whiles:  # nothing runs the cond and body subgraphs
        return
    if len(whiles) != 1 or whiles[0][0].index != 0:
        places = [sub.label() for sub, _ in whiles]
        raise ArtifactError(
            f"{where}: WHILE ops in {places}; the loop lowering writes one, in subgraph 0"
        )
    main, cond, body = flat.subs
    ((_, op),) = whiles
    position = flat.options(op)
    indices = tuple(_scalar(flat.buf, position, i, "<i") for i in (0, 1)) if position else None
    if indices != (1, 2):
        raise ArtifactError(
            f"{where}: the WHILE in {main.label()} runs (cond, body) subgraphs {indices}; the "
            "loop lowering writes (1, 2)"
        )
    n = len(op.inputs)
    sizes = [len(op.outputs), len(cond.inputs), len(body.inputs), len(body.outputs)]
    if n < 1 or sizes != [n] * 4 or len(cond.outputs) != 1:
        raise ArtifactError(
            f"{where}: the WHILE in {main.label()} carries {n} values, its outputs, the cond's "
            f"and the body's inputs and outputs number {sizes}"
        )
    start = flat.constant(main, op.inputs[0])
    if start != 0:
        raise ArtifactError(
            f"{where}: the WHILE in {main.label()} starts its counter (input 0) at "
            f"{'a computed value' if start is None else start}; the loop lowering starts at the "
            "constant 0"
        )
    _check_cond(flat, cond, _window_length(manifest, where), where)
    _check_body(flat, body, where)


def _window_length(manifest: dict[str, Any], where: str) -> int:
    shape = manifest["io"]["inputs"][0].get("shape") if manifest["io"]["inputs"] else None
    length = shape[1] if isinstance(shape, list) and len(shape) == 3 else None
    if not isinstance(length, int) or isinstance(length, bool) or length < 1:
        raise ArtifactError(
            f"{where}: a WHILE loop needs the manifest's io.inputs[0].shape [batch, L, F] with "
            f"a window length L, got {shape!r}"
        )
    return length


def _check_cond(flat: _FlatModel, cond: _Sub, length: int, where: str) -> None:
    ops = cond.ops
    if (
        len(ops) != 1
        or ops[0].code != TFLITE_OPS["LESS"]
        or len(ops[0].inputs) != 2
        or ops[0].inputs[0] != cond.inputs[0]
        or ops[0].outputs != cond.outputs
        or cond.outputs[0] in cond.inputs
    ):
        raise ArtifactError(
            f"{where}: {cond.label()} has ops {[_TFLITE_NAMES.get(o.code, o.code) for o in ops]}; "
            "the loop lowering's cond is one LESS(counter, bound), its only output"
        )
    bound = flat.constant(cond, ops[0].inputs[1])
    if bound != length or bound > MAX_LOOP_STEPS:
        raise ArtifactError(
            f"{where}: the LESS in {cond.label()} bounds the loop at "
            f"{'a computed value' if bound is None else bound}; the loop lowering's bound is the "
            f"constant window length {length} (at most {MAX_LOOP_STEPS})"
        )


def _check_body(flat: _FlatModel, body: _Sub, where: str) -> None:
    other = sorted({_TFLITE_NAMES[op.code] for op in body.ops} - _LOOP_BODY_OPS)
    if other:
        raise ArtifactError(
            f"{where}: {body.label()} runs {', '.join(other)}; the loop lowering's body runs "
            f"{', '.join(sorted(_LOOP_BODY_OPS))} only"
        )
    counter, after = body.inputs[0], body.outputs[0]
    writers = [op for op in body.ops if after in op.outputs or counter in op.outputs]
    step = None
    if len(writers) == 1 and writers[0].code == TFLITE_OPS["ADD"]:
        add = writers[0]
        if add.outputs == [after] and len(add.inputs) == 2 and add.inputs[0] == counter:
            step = flat.constant(body, add.inputs[1])
            position = flat.options(add)  # AddOptions.fused_activation_function
            if position is not None and _scalar(flat.buf, position, 0, "<b") != _NO_ACTIVATION:
                step = None
    if step != 1 or after == counter:
        raise ArtifactError(
            f"{where}: {body.label()} does not compute its next counter (output 0) as one "
            "ADD(counter, constant 1) without activation, as the loop lowering does: the loop "
            "might never end"
        )


# --- protobuf wire format ---------------------------------------------------------------------


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def _fields(buf: memoryview) -> Iterator[tuple[int, int, Any]]:
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, pos = buf[pos : pos + size], pos + size
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + size], pos + size
        else:
            raise ValueError(f"wire type {wire} of field {number}")
        if pos > end:
            raise ValueError("truncated message")
        yield number, wire, value


def _text(value: memoryview) -> str:
    return bytes(value).decode("utf-8", "replace")


def _read_model(buf: memoryview, where: str) -> _Graph:
    graph = None
    for number, _, value in _fields(buf):
        if number == 7:
            graph = _read_graph(value, where)
        elif number == 25:
            raise ArtifactError(f"{where}: the model defines local functions; none is allowed")
    if graph is None:
        raise ValueError("no graph")
    return graph


def _read_graph(buf: memoryview, where: str, *, body: bool = False) -> _Graph:
    graph = _Graph()
    for number, _, value in _fields(buf):
        if number == 1:
            graph.nodes.append(_read_node(value, graph, where, body=body))
        elif number in (5, 15):  # initializer, sparse_initializer
            name, array = _read_tensor(value, where)
            graph.initializers.add(name)
            if array is not None:
                graph.constants[name] = array
        elif number in (11, 12):
            (graph.inputs if number == 11 else graph.outputs).append(_read_value_info(value))
    return graph


def _read_node(
    buf: memoryview, graph: _Graph, where: str, *, body: bool = False
) -> tuple[str, str, list, list]:
    inputs, outputs, op, domain, value, bodies = [], [], "", "", None, []
    for number, _, item in _fields(buf):
        if number == 1:
            inputs.append(_text(item))
        elif number == 2:
            outputs.append(_text(item))
        elif number == 4:
            op = _text(item)
        elif number == 7:
            domain = _text(item)
        elif number == 5:
            tensor, subgraph = _read_attribute(item, where)
            value = tensor if value is None else value
            bodies += [] if subgraph is None else [subgraph]
            if op == "Scan" and (count := _int_attribute(item, "num_scan_inputs")) is not None:
                graph.scans[tuple(outputs)] = count
    if op == "Constant" and value is not None and outputs:
        graph.constants[outputs[0]] = value
    if op == "Scan":
        graph.scans.setdefault(tuple(outputs), 0)
    for subgraph in bodies:  # its nodes join the graph's: the operator check covers them
        if body or domain not in ("", "ai.onnx") or op not in _BODY_OPS or len(bodies) > 1:
            raise ArtifactError(f"{where}: a node carries a subgraph (control flow): not allowed")
        inner = _read_graph(subgraph, where, body=True)
        graph.nodes += inner.nodes
        graph.constants.update(inner.constants)
    return domain, op, inputs, outputs


def _read_attribute(buf: memoryview, where: str) -> tuple[np.ndarray | None, memoryview | None]:
    """A Constant's tensor value and a graph attribute's bytes; ArtifactError for a list of
    subgraphs (control flow)."""
    tensor, subgraph = None, None
    for number, _, value in _fields(buf):
        if number == 11 or (number == 6 and subgraph is not None):
            raise ArtifactError(f"{where}: a node carries a subgraph (control flow): not allowed")
        if number == 6:
            subgraph = value
        if number == 5:
            tensor = _read_tensor(value, where)[1]
    return tensor, subgraph


def _int_attribute(buf: memoryview, name: str) -> int | None:
    """The int value of an AttributeProto (``i``, field 3) when its name is ``name``."""
    found, value = False, None
    for number, _, item in _fields(buf):
        if number == 1:
            found = _text(item) == name
        elif number == 3:
            value = _signed(item)
    return value if found else None


def _read_tensor(buf: memoryview, where: str) -> tuple[str, np.ndarray | None]:
    dims, dtype, name, raw, ints = [], 0, "", None, []
    for number, wire, value in _fields(buf):
        if number == 1:
            dims += _ints(wire, value)
        elif number == 2:
            dtype = value
        elif number == 8:
            name = _text(value)
        elif number == 9 or (number == 4 and wire == 2):  # raw_data, packed float_data
            raw = bytes(value)
        elif number == 4:  # one float_data value
            raw = (raw or b"") + bytes(value)
        elif number in (5, 7):
            ints += _ints(wire, value)
        elif number in (13, 14) and (number == 13 or value == 1):
            raise ArtifactError(f"{where}: tensor '{name}' keeps its data outside the file")
    return name, _small_array(dtype, dims, raw, ints)


def _small_array(dtype: int, dims: list[int], raw: bytes | None, ints: list[int]) -> Any:
    numpy_type = {1: np.float32, 2: np.uint8, 3: np.int8, 6: np.int32, 7: np.int64}.get(dtype)
    size = int(np.prod(dims, dtype=np.float64)) if dims else 1
    if numpy_type is None or size > _SMALL:
        return None
    if raw is not None:
        array = np.frombuffer(raw, dtype=np.dtype(numpy_type).newbyteorder("<"))
    else:
        array = np.array([_signed(v) for v in ints], dtype=np.int64).astype(numpy_type)
    return array.reshape(dims) if array.size == size else None


def _ints(wire: int, value: Any) -> list[int]:
    if wire == 0:
        return [_signed(value)]
    out, pos = [], 0
    while pos < len(value):
        number, pos = _varint(value, pos)
        out.append(_signed(number))
    return out


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _read_value_info(buf: memoryview) -> tuple[str, str, list[Any]]:
    name, dtype, dims = "", "undefined", []
    for number, _, value in _fields(buf):
        if number == 1:
            name = _text(value)
        elif number == 2:
            for kind, _, tensor in _fields(value):
                if kind == 1:
                    dtype, dims = _read_tensor_type(tensor)
    return name, dtype, dims


def _read_tensor_type(buf: memoryview) -> tuple[str, list[Any]]:
    dtype, dims = "undefined", []
    for number, _, value in _fields(buf):
        if number == 1:
            dtype = _ELEM.get(value, f"onnx type {value}")
        elif number == 2:
            dims = [_read_dim(dim) for kind, _, dim in _fields(value) if kind == 1]
    return dtype, dims


def _read_dim(buf: memoryview) -> Any:
    for number, _, value in _fields(buf):
        if number == 1:
            return _signed(value)
        if number == 2:
            return _text(value)
    return None
