"""Smaller .tflite files with the same outputs, for every precision.

Where the bytes of a litert-torch TCN went (int4, 32.9 KB; fp32 131.9 KB): 17.1 KB buffer data,
6.0 KB quantization parameters (two thirds of it int64 zero points: the schema's type, and LiteRT
refuses a per-channel scale without one zero point per channel), and 9.8 KB of graph: 62 ops and
103 tensors, 37 of the ops TRANSPOSE / RESHAPE pairs around every Conv1d (litert-torch keeps the
torch NCW layout between convolutions and moves to NHWC and back for each CONV_2D). This pass:

- keeps the activations of a Conv1d stack channels-last: each CONV_2D takes the previous one's
  NHWC output (PAD, ADD, SLICE rewritten on the NHWC tensor), and the TRANSPOSE / RESHAPE ops and
  their tensors and constants go (``channels_last``); a FULLY_CONNECTED reads the rows of its
  input without a RESHAPE to [N, K];
- writes every identical vector once (the flatbuffer format lets tables share a vector): the
  all-zero zero points of every 32-channel layer, repeated shapes, identical constants;
- drops what LiteRT does not read: internal tensor names, empty quantization tables.

(quantize.py stores an int4 FULLY_CONNECTED of 32, 64 or 128 inputs as one block: float16 scales
and no zero points.)

``shrink`` keeps the channels-last graph only if LiteRT gives the same outputs for it (float:
within 1e-6 of the output's scale; integer: the same integers) on probe windows; otherwise only the
serialization changes, which cannot change an output.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np

PROBE_WINDOWS = 4
FLOAT_RTOL = 1e-6  # of the largest output magnitude
ELEMENTWISE = frozenset({"ADD", "SUB", "MUL", "MAXIMUM", "MINIMUM", "RELU", "RELU6", "TANH"})
# ops whose only effect is their output (dropped when nothing reads it)
PURE = frozenset({"TRANSPOSE", "RESHAPE", "PAD", "SLICE"}) | ELEMENTWISE
_INT32, _INT64 = 2, 4  # schema TensorType
_BLOCKWISE = 2  # schema QuantizationDetails


def shrink(model: bytes) -> bytes:
    """``model`` rewritten smaller (see the module docstring); outputs unchanged."""
    from ai_edge_litert.tools import flatbuffer_utils

    flat = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
    _strip(flat)
    plain = serialize(flat)
    if not prunable(flat) or not channels_last(flat):
        return plain
    prune(flat)
    candidate = serialize(flat)
    return candidate if len(candidate) < len(plain) and same_outputs(plain, candidate) else plain


def serialize(flat: Any) -> bytes:
    """The model object as .tflite bytes, each distinct vector written once."""
    import flatbuffers

    class _Builder(flatbuffers.Builder):
        def __init__(self) -> None:
            super().__init__(1024)
            self.vectors: dict[tuple[str, bytes], int] = {}

        def CreateNumpyVector(self, x: np.ndarray) -> int:  # noqa: N802 (flatbuffers' name)
            key = (x.dtype.str, x.tobytes())
            if key not in self.vectors:
                self.vectors[key] = super().CreateNumpyVector(x)
            return self.vectors[key]

    for graph in flat.subgraphs:  # lists are written element by element: make them vectors
        graph.inputs, graph.outputs = _i32(graph.inputs), _i32(graph.outputs)
        for tensor in graph.tensors:
            tensor.shape, tensor.shapeSignature = _i32(tensor.shape), _i32(tensor.shapeSignature)
        for op in graph.operators:
            op.inputs, op.outputs = _i32(op.inputs), _i32(op.outputs)
            op.intermediates = _i32(op.intermediates)
    builder = _Builder()
    builder.Finish(flat.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _i32(values: Any) -> np.ndarray | None:
    return None if values is None else np.asarray(values, dtype=np.int32)


def _strip(flat: Any) -> None:
    """No names on internal tensors, no empty quantization tables."""
    for graph in flat.subgraphs:
        keep = {*graph.inputs, *graph.outputs}
        for index, tensor in enumerate(graph.tensors):
            if index not in keep:
                tensor.name = None
            if _empty(tensor.quantization):
                tensor.quantization = None


def _empty(quant: Any) -> bool:
    return (
        quant is not None
        and not any(
            value is not None and len(value)
            for value in (quant.scale, quant.zeroPoint, quant.min, quant.max)
        )
        and quant.details is None
    )


def same_outputs(a: bytes, b: bytes) -> bool:
    """LiteRT gives ``b`` the outputs of ``a`` on probe inputs (float: within FLOAT_RTOL of the
    largest output; integer outputs: the same integers); False if LiteRT refuses ``b``."""
    from .convert import quiet

    try:
        with quiet():
            (run_a, io_a), (run_b, io_b) = _runner(a), _runner(b)
        if io_a != io_b:
            return False
        inputs_a = io_a[0]
        rng = np.random.default_rng(0)
        return all(
            _same(run_a(xs), run_b(xs))
            for xs in ([_probe(rng, *spec) for spec in inputs_a] for _ in range(PROBE_WINDOWS))
        )
    except (RuntimeError, ValueError):
        return False


def _probe(rng: np.random.Generator, shape: tuple, dtype: np.dtype) -> np.ndarray:
    x = rng.standard_normal(shape) * 3
    return (np.clip(np.round(x * 20), -128, 127) if dtype.kind in "iu" else x).astype(dtype)


def _same(want: list[np.ndarray], got: list[np.ndarray]) -> bool:
    for w, g in zip(want, got, strict=True):
        if w.shape != g.shape or w.dtype != g.dtype:
            return False
        tol = 0 if w.dtype.kind in "iub" else FLOAT_RTOL * max(1.0, float(abs(w).max()))
        if not np.abs(w.astype(np.float64) - g).max() <= tol:
            return False
    return True


def _runner(model: bytes) -> tuple[Callable[[list], list], tuple[list[tuple], int]]:
    """A LiteRT call on raw tensors (inputs in order -> outputs in order), each input's
    (shape, dtype) and the number of outputs."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model, num_threads=1)
    interpreter.allocate_tensors()
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()

    def run(xs: list[np.ndarray]) -> list[np.ndarray]:
        for detail, x in zip(inputs, xs, strict=True):
            interpreter.set_tensor(detail["index"], x)
        interpreter.invoke()
        return [interpreter.get_tensor(detail["index"]).copy() for detail in outputs]

    specs = [(tuple(d["shape"]), np.dtype(d["dtype"])) for d in inputs]
    return run, (specs, len(outputs))


class _Graph:
    """Op codes, constants and tensor / op factories over one subgraph of a model object."""

    def __init__(self, flat: Any) -> None:
        from ai_edge_litert import schema_py_generated as schema

        self.flat, self.schema, self.graph = flat, schema, flat.subgraphs[0]
        names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
        self.names = names
        self.ops: list[Any] = []
        self.consts: dict[tuple, int] = {}

    def code(self, op: Any) -> str:
        code = self.flat.operatorCodes[op.opcodeIndex]
        return self.names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "?")

    def code_index(self, name: str) -> int:
        value = getattr(self.schema.BuiltinOperator, name)
        for index, code in enumerate(self.flat.operatorCodes):
            if max(code.builtinCode, code.deprecatedBuiltinCode) == value:
                return index
        code = self.schema.OperatorCodeT()
        code.builtinCode, code.deprecatedBuiltinCode, code.version = value, min(value, 127), 1
        self.flat.operatorCodes.append(code)
        return len(self.flat.operatorCodes) - 1

    def shape(self, index: int) -> list[int]:
        return [int(n) for n in self.graph.tensors[index].shape]

    def const(self, index: int) -> np.ndarray | None:
        tensor = self.graph.tensors[index]
        data = self.flat.buffers[tensor.buffer].data
        if data is None or tensor.type not in (_INT32, _INT64):
            return None
        dtype = np.int64 if tensor.type == _INT64 else np.int32
        return np.frombuffer(bytes(data), dtype=dtype).reshape(self.shape(index))

    def new_const(self, values: list[int], shape: list[int] | None = None) -> int:
        """An int32 constant tensor (one per distinct value and shape)."""
        shape = shape or [len(values)]
        key = (tuple(values), tuple(shape))
        if key in self.consts:
            return self.consts[key]
        buffer = self.schema.BufferT()
        buffer.data = np.asarray(values, dtype="<i4").view(np.uint8)
        self.flat.buffers.append(buffer)
        tensor = self.schema.TensorT()
        tensor.shape, tensor.type, tensor.buffer = shape, _INT32, len(self.flat.buffers) - 1
        self.consts[key] = self._add(tensor)
        return self.consts[key]

    def new_like(self, like: int, shape: list[int]) -> int | None:
        """A new activation of ``like``'s type and (per-tensor) quantization, or None."""
        source = self.graph.tensors[like]
        quant = source.quantization
        if quant is not None and quant.scale is not None and len(quant.scale) > 1:
            return None
        tensor = self.schema.TensorT()
        tensor.shape, tensor.type, tensor.buffer = shape, source.type, 0
        tensor.quantization = copy.deepcopy(quant)
        return self._add(tensor)

    def emit(self, like: Any, code: str, inputs: list[int], output: int) -> None:
        """Append an op (options copied from ``like``, if given)."""
        op = self.schema.OperatorT()
        op.opcodeIndex = self.code_index(code) if like is None else like.opcodeIndex
        if like is not None:
            op.builtinOptionsType = like.builtinOptionsType
            op.builtinOptions = copy.deepcopy(like.builtinOptions)
        op.inputs, op.outputs = list(inputs), [output]
        self.ops.append(op)

    def same_kind(self, a: int, b: int) -> bool:
        """The same dtype and quantization (a view of one as the other changes no value)."""
        ta, tb = self.graph.tensors[a], self.graph.tensors[b]
        return ta.type == tb.type and _quant_key(ta.quantization) == _quant_key(tb.quantization)

    def _add(self, tensor: Any) -> int:
        self.graph.tensors.append(tensor)
        return len(self.graph.tensors) - 1


def _quant_key(quant: Any) -> tuple:
    if quant is None or _empty(quant):
        return ()
    return tuple(
        None if v is None else tuple(np.asarray(v).tolist()) for v in (quant.scale, quant.zeroPoint)
    )


class _ChannelsLast:
    """NCW tensors [1, C, W] get NHWC twins [1, 1, W, C]; ops read the twins where they can.

    ``twin``: NCW tensor -> its NHWC twin; ``nchw``: an NCHW view [1, C, 1, W] -> the NHWC
    tensor it holds; ``alias``: a tensor -> an equal one read in its place. Every original op is
    kept (the ones nobody reads any more are pruned after), so an op the pass does not know only
    keeps the NCW chain it reads alive.
    """

    def __init__(self, graph: _Graph) -> None:
        self.g = graph
        self.twin: dict[int, int] = {}
        self.nchw: dict[int, int] = {}
        self.alias: dict[int, int] = {}
        self.rows: dict[int, int] = {}  # a [N, K] reshape -> its input [..., K] (N rows of K)
        self.changed = False
        self.rules: dict[str, Callable[[Any], None]] = {
            "TRANSPOSE": self._transpose,
            "RESHAPE": self._reshape,
            "PAD": self._pad,
            "SLICE": self._slice,
            "FULLY_CONNECTED": self._fully_connected,
        } | dict.fromkeys(ELEMENTWISE, self._elementwise)

    def run(self) -> bool:
        for op in self.g.graph.operators:
            op.inputs = [self.alias.get(i, i) for i in op.inputs]
            self.g.ops.append(op)
            rule = self.rules.get(self.g.code(op))
            if rule is not None and len(op.outputs) == 1:
                rule(op)
        self.g.graph.operators = self.g.ops
        return bool(self.alias) or self.changed

    def _transpose(self, op: Any) -> None:
        x, out = op.inputs[0], op.outputs[0]
        perm, shape = self.g.const(op.inputs[1]), self.g.shape(x)
        if perm is None or not self.g.same_kind(x, out):
            return
        perm = perm.tolist()
        if perm == [0, 2, 1] and len(shape) == 3 and shape[0] == 1:  # [1, W, C] -> NCW
            twin = self.g.new_like(x, [1, 1, *shape[1:]])
            if twin is not None:
                self.g.emit(None, "RESHAPE", [x, self.g.new_const([1, 1, *shape[1:]])], twin)
                self.twin[out] = twin
        elif perm == [0, 3, 1, 2] and len(shape) == 4 and shape[:2] == [1, 1]:  # NHWC -> NCHW
            self.nchw[out] = x
        elif perm == [0, 2, 3, 1] and x in self.nchw and self.g.same_kind(self.nchw[x], out):
            self.alias[out] = self.nchw[x]  # back to NHWC: the tensor it came from

    def _reshape(self, op: Any) -> None:
        self._layout(op)
        x, out = op.inputs[0], op.outputs[0]
        shape, into = self.g.shape(x), self.g.shape(out)
        flat = len(into) == 2 and shape and int(np.prod(shape[:-1])) == into[0]
        if flat and shape[-1] == into[1] and self.g.same_kind(x, out):
            self.rows[out] = x

    def _fully_connected(self, op: Any) -> None:
        """FULLY_CONNECTED without keep_num_dims reads any input as rows of its K inputs: no
        reshape to [N, K] (keep_num_dims on an [N, K] input gives the same [N, units])."""
        if op.inputs[0] in self.rows and op.builtinOptions is not None:
            op.inputs[0], self.changed = self.rows[op.inputs[0]], True
            op.builtinOptions.keepNumDims = False

    def _layout(self, op: Any) -> None:
        x, out = op.inputs[0], op.outputs[0]
        shape, into = self.g.shape(x), self.g.shape(out)
        view = self.twin.get(x, self.nchw.get(x))
        if view is None or not self.g.same_kind(view, out):
            return
        if x in self.nchw and into == [shape[0], shape[1], shape[3]]:  # [1, C, 1, W] -> NCW
            self.twin[out] = self.nchw[x]
        elif x in self.twin and into == [shape[0], shape[1], 1, shape[2]]:  # NCW -> NCHW
            self.nchw[out] = self.twin[x]
        elif x in self.twin and 1 in shape[1:]:  # the same element order: reshape the twin
            op.inputs[0] = self.twin[x]

    def _pad(self, op: Any) -> None:
        x, out = op.inputs[0], op.outputs[0]
        pads = self.g.const(op.inputs[1]) if len(op.inputs) == 2 else None
        if x not in self.twin or pads is None or pads.shape != (3, 2) or pads[:2].any():
            return
        (_, channels, width) = self.g.shape(out)
        twin = self.g.new_like(out, [1, 1, width, channels])
        if twin is not None:
            pads4 = self.g.new_const([0, 0, 0, 0, *pads[2].tolist(), 0, 0], [4, 2])
            self.g.emit(op, "PAD", [self.twin[x], pads4], twin)
            self.twin[out] = twin

    def _slice(self, op: Any) -> None:
        x, out = op.inputs[0], op.outputs[0]
        begin, size = self.g.const(op.inputs[1]), self.g.const(op.inputs[2])
        if x not in self.twin or begin is None or size is None or len(begin) != 3:
            return
        (n, channels, width) = self.g.shape(out)
        twin = self.g.new_like(out, [n, 1, width, channels])
        if twin is not None:
            b = begin.tolist()
            inputs = [
                self.g.new_const([b[0], 0, b[2], b[1]]),
                self.g.new_const([n, 1, width, channels]),
            ]
            self.g.emit(op, "SLICE", [self.twin[x], *inputs], twin)
            self.twin[out] = twin

    def _elementwise(self, op: Any) -> None:
        out = op.outputs[0]
        shapes = {tuple(self.g.shape(i)) for i in op.inputs}
        if len(shapes) != 1 or not all(i in self.twin for i in op.inputs):
            return
        (_, channels, width) = self.g.shape(out)
        twin = self.g.new_like(out, [1, 1, width, channels])
        if twin is not None:
            self.g.emit(op, "", [self.twin[i] for i in op.inputs], twin)
            self.twin[out] = twin


def channels_last(flat: Any) -> bool:
    """Rewrite the single subgraph of ``flat`` so its convolutions read NHWC tensors directly;
    False when nothing changed."""
    return _ChannelsLast(_Graph(flat)).run()


def prune(flat: Any) -> None:
    """Drop pure ops nobody reads, then unreferenced tensors and buffers (indices renumbered)."""
    graph = _Graph(flat)
    sub = graph.graph
    live = set(sub.outputs)
    kept = []
    for op in reversed(sub.operators):
        if graph.code(op) in PURE and not live.intersection(op.outputs):
            continue
        kept.append(op)
        live.update(i for i in op.inputs if i >= 0)
    sub.operators = kept[::-1]
    _renumber_tensors(flat, sub)
    _renumber_buffers(flat)
    _renumber_codes(flat)


def _renumber_codes(flat: Any) -> None:
    ops = [op for graph in flat.subgraphs for op in graph.operators]
    new = {old: k for k, old in enumerate(sorted({op.opcodeIndex for op in ops}))}
    flat.operatorCodes = [flat.operatorCodes[old] for old in sorted(new)]
    for op in ops:
        op.opcodeIndex = new[op.opcodeIndex]


def _renumber_tensors(flat: Any, sub: Any) -> None:
    used = {*sub.inputs, *sub.outputs}
    for op in sub.operators:
        used.update(i for i in (*op.inputs, *op.outputs, *(op.intermediates or ())) if i >= 0)
    for signature in flat.signatureDefs or ():
        used.update(t.tensorIndex for t in (*signature.inputs, *signature.outputs))
    blocks = [t.quantization.details for t in sub.tensors if _blockwise(t.quantization)]
    used.update(i for b in blocks for i in (b.scales, b.zeroPoints) if i >= 0)
    new = {old: k for k, old in enumerate(sorted(used))}
    sub.tensors = [sub.tensors[old] for old in sorted(used)]
    remap = lambda values: [new[i] if i >= 0 else i for i in values]  # noqa: E731
    sub.inputs, sub.outputs = remap(sub.inputs), remap(sub.outputs)
    for op in sub.operators:
        op.inputs, op.outputs = remap(op.inputs), remap(op.outputs)
        op.intermediates = None if op.intermediates is None else remap(op.intermediates)
    for signature in flat.signatureDefs or ():
        for entry in (*signature.inputs, *signature.outputs):
            entry.tensorIndex = new[entry.tensorIndex]
    for block in blocks:  # blockwise weights name their scale / zero point tensors
        block.scales = new[block.scales]
        block.zeroPoints = new[block.zeroPoints] if block.zeroPoints >= 0 else block.zeroPoints


def _blockwise(quant: Any) -> bool:
    return quant is not None and quant.detailsType == _BLOCKWISE


def prunable(flat: Any) -> bool:
    """One subgraph, and no quantization details other than blockwise (whose tensor references
    ``prune`` renumbers)."""
    tensors = [t for g in flat.subgraphs for t in g.tensors]
    details = {t.quantization.detailsType for t in tensors if t.quantization is not None}
    return len(flat.subgraphs) == 1 and details <= {0, _BLOCKWISE}


def _renumber_buffers(flat: Any) -> None:
    used = {0} | {t.buffer for g in flat.subgraphs for t in g.tensors}
    used |= {m.buffer for m in flat.metadata or ()}
    new = {old: k for k, old in enumerate(sorted(used))}
    flat.buffers = [flat.buffers[old] for old in sorted(used)]
    for graph in flat.subgraphs:
        for tensor in graph.tensors:
            tensor.buffer = new[tensor.buffer]
    for entry in flat.metadata or ():
        entry.buffer = new[entry.buffer]
