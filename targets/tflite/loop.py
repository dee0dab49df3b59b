"""LSTM / GRU forecasters written as a TFLite WHILE loop: every weight and every op exists once.

litert-torch unrolls a recurrence (and so did ``lowering.UnrolledRecurrent``): about 16 ops per step
and layer, each output tensor with its own quantization parameters, which outweighed the weights
of a 2x64 model in an int8 file. This module writes the flatbuffer itself (ai_edge_litert's schema
object API), straight from the torch module's weights:

- main: ``WHILE(i=0, x, h_k=0, c_k=0)`` -> the last layer's ``h`` -> ``FULLY_CONNECTED`` head ->
  ``RESHAPE`` [B, horizon, targets] -> ``+`` the last observed targets (residual).
- cond: ``LESS(i, L)``.
- body: ``x_t = GATHER(x, i, axis=1)`` then, per layer, ``FULLY_CONNECTED(in, W_ih, b)`` +
  ``FULLY_CONNECTED(h, W_hh)`` and the gates; outputs ``i + 1`` and the new states.

The batch is symbolic (shape signature -1, shape 1): ``resize_tensor_input`` runs any batch in one
invoke. The zero initial state is ``x[:, 0, :1] * 0`` broadcast to [B, H], so no op names a batch
size. Quantized precisions store FULLY_CONNECTED weights as int8 or int4 with one scale per output
channel (symmetric, numpy, below; the int64 zero points TFLite needs are one shared vector per
length) or, for int4, one float16 scale per group of inputs (LiteRT's blockwise int4), and float
activations that the kernel quantizes per row at run time (``asymmetric_quantize_inputs``):
TFLite's hybrid path, run by XNNPACK's qd8 kernels. Layers in ``kept`` keep float weights. Every
operator code is written at version 1 (LiteRT resolves each version of these builtins to one
kernel, which checks the tensor types when the model is prepared).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

DESCRIPTION = (
    "TFLite WHILE loop written by edgecomp: one body subgraph holds each layer's two matmuls "
    "and its gates once, the head and residual run once after the loop"
)
PRECISIONS = ("fp32", "int8", "int8-dynamic", "int4")
_BITS = {"int8": 8, "int8-dynamic": 8, "int4": 4}


@dataclass(frozen=True)
class LoopLayer:
    """A FULLY_CONNECTED weight of the loop model: record name, weight, bias, where it runs."""

    name: str
    weight: np.ndarray  # [out, in]
    bias: np.ndarray | None
    where: str  # "body" or "main"
    what: str  # e.g. "rnn.weight_ih_l0"


def supports(module: Any) -> bool:
    """Whether ``module`` is an LSTM / GRU forecaster the loop emitter writes."""
    from edgecomp.models import GRUForecaster, LSTMForecaster

    return isinstance(module, LSTMForecaster | GRUForecaster)


def loop_layers(module: Any) -> list[LoopLayer]:
    """The compute layers in graph order: ``rnn[2k]`` (W_ih of layer k), ``rnn[2k+1]``
    (W_hh), ``head``."""
    rnn, kind = module.rnn, _kind(module)
    size, layers = rnn.hidden_size, []
    for k in range(rnn.num_layers):
        w_ih, w_hh = (_np(getattr(rnn, f"weight_{s}_l{k}")) for s in ("ih", "hh"))
        b_ih, b_hh = (_bias(rnn, f"bias_{s}_l{k}", len(w_ih)) for s in ("ih", "hh"))
        if kind == "lstm":
            b_in, b_h = b_ih + b_hh, None
        else:  # b_hn sits inside r * (W_hn h + b_hn): the body adds it to W_hn h alone
            b_in = b_ih + np.concatenate([b_hh[: 2 * size], np.zeros(size, np.float32)])
            b_h = None
        layers.append(LoopLayer(f"rnn[{2 * k}]", w_ih, b_in, "body", f"rnn.weight_ih_l{k}"))
        layers.append(LoopLayer(f"rnn[{2 * k + 1}]", w_hh, b_h, "body", f"rnn.weight_hh_l{k}"))
    head = module.head
    layers.append(
        LoopLayer("head", _np(head.weight), _bias(head, "bias", head.out_features), "main", "head")
    )
    return layers


def emit_loop(
    module: Any,
    precision: str,
    kept: frozenset[str] = frozenset(),
    groups: dict[str, int] | None = None,
    int8: frozenset[str] = frozenset(),
) -> bytes:
    """The .tflite bytes of ``module`` as a WHILE loop at ``precision`` (see the module docstring).

    Args:
        module: An LSTM or GRU forecaster (``supports``).
        precision: "fp32", "int8" / "int8-dynamic" (int8 weights per channel) or "int4".
        kept: Record names (``rnn[1]``, ``head``) whose weights stay float.
        groups: int4: record name -> inputs per scale (TFLite's blockwise int4, float16
            scales); the other int4 weights get one float32 scale per output channel.
        int8: Record names whose weights are int8 per channel in an int4 build (keep_int8).

    Raises:
        ValueError: An unknown precision or module.
    """
    if precision not in PRECISIONS or not supports(module):
        raise ValueError(f"loop lowering: cannot emit {type(module).__name__} at {precision!r}")
    bits = _BITS.get(precision)
    weights = {la.name: la for la in loop_layers(module)}
    schemes = {
        n: None
        if n in kept or bits is None
        else (8, None)
        if n in int8
        else (bits, (groups or {}).get(n))
        for n in weights
    }
    return _Emitter(module, schemes, weights).model()


def int4_groups(option: str, layers: list[LoopLayer], kept: dict[str, str]) -> dict[str, int]:
    """Record name -> int4 group size under option ``int4_group_size`` (see quantize.py): the
    largest allowed size that splits the weight's inputs into at least two groups, else one
    group of all of them when that is an allowed size; per channel otherwise."""
    from .quantize import AUTO_GROUPS

    if option == "channel":
        return {}
    sizes = AUTO_GROUPS if option == "auto" else (int(option),)
    chosen = {}
    for layer in layers:
        n = layer.weight.shape[1]
        size = next((g for g in sizes if n % g == 0 and n >= 2 * g), n if n in sizes else 0)
        if size and layer.name not in kept:
            chosen[layer.name] = size
    return chosen


# --- the flatbuffer ---------------------------------------------------------------------------


@dataclass
class _Graph:
    """One subgraph under construction."""

    model: _Model
    tensors: list[Any] = field(default_factory=list)
    operators: list[Any] = field(default_factory=list)
    io: tuple[list[int], list[int]] = ([], [])  # cond / body: (inputs, outputs)

    def tensor(
        self,
        shape: list[int],
        dtype: str = "FLOAT32",
        data: np.ndarray | bytes | None = None,
        quant: Any = None,
        batched: bool = False,
    ) -> int:
        from ai_edge_litert import schema_py_generated as schema

        tensor = schema.TensorT()
        tensor.shape = list(shape)
        if batched:  # leading batch: 1 as written, -1 in the signature (resizable)
            tensor.shapeSignature = [-1, *shape[1:]]
        tensor.type = getattr(schema.TensorType, dtype)
        tensor.buffer = 0 if data is None else self.model.buffer(data)
        tensor.quantization = quant
        self.tensors.append(tensor)
        return len(self.tensors) - 1

    def const(self, array: np.ndarray) -> int:
        dtype = {np.float32: "FLOAT32", np.int32: "INT32"}[array.dtype.type]
        return self.tensor(list(array.shape), dtype, np.ascontiguousarray(array))

    def op(self, code: str, inputs: list[int], outputs: list[int], options: Any = None) -> None:
        from ai_edge_litert import schema_py_generated as schema

        op = schema.OperatorT()
        op.opcodeIndex = self.model.opcode(code)
        op.inputs, op.outputs = list(inputs), list(outputs)
        if options is not None:
            kind = type(options).__name__.removesuffix("T")
            op.builtinOptionsType = getattr(schema.BuiltinOptions, kind)
            op.builtinOptions = options
        self.operators.append(op)

    def unary(self, code: str, x: int, shape: list[int]) -> int:
        out = self.tensor(shape)
        self.op(code, [x], [out])
        return out

    def binary(self, code: str, a: int, b: int, shape: list[int]) -> int:
        out = self.tensor(shape)
        self.op(code, [a, b], [out])
        return out


@dataclass
class _Model:
    buffers: list[Any] = field(default_factory=list)
    codes: dict[str, int] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    zero_points: dict[tuple[int, int], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from ai_edge_litert import schema_py_generated as schema

        self.buffers.append(schema.BufferT())  # buffer 0: no data

    def buffer(self, data: np.ndarray | bytes) -> int:
        from ai_edge_litert import schema_py_generated as schema

        buffer = schema.BufferT()
        raw = data if isinstance(data, bytes) else data.tobytes()
        buffer.data = np.frombuffer(raw, np.uint8).copy()
        self.buffers.append(buffer)
        return len(self.buffers) - 1

    def opcode(self, code: str, version: int = 1) -> int:
        self.versions[code] = max(self.versions.get(code, 1), version)
        return self.codes.setdefault(code, len(self.codes))


class _Emitter:
    """Writes main, cond and body (see the module docstring)."""

    def __init__(self, module: Any, schemes: dict[str, Any], weights: dict[str, LoopLayer]):
        self.module, self.schemes, self.weights = module, schemes, weights
        self.kind = _kind(module)
        self.n_layers, self.size = module.rnn.num_layers, module.rnn.hidden_size
        self.length, self.features = module.input_len, module.n_features
        self.flat = _Model()

    def model(self) -> bytes:
        from ai_edge_litert import schema_py_generated as schema
        from ai_edge_litert.tools import flatbuffer_utils

        main, cond, body = (_Graph(self.flat) for _ in range(3))
        state = self._state_shapes()
        self._cond(cond, state)
        self._body(body, state)
        x, y = self._main(main, state)
        model = schema.ModelT()
        model.version = 3
        model.description = b"edgecomp loop lowering"
        model.buffers = self.flat.buffers
        model.subgraphs = []
        for graph, name, (inputs, outputs) in zip(
            (main, cond, body),
            (b"main", b"cond", b"body"),
            (([x], [y]), cond.io, body.io),
            strict=True,
        ):
            sub = schema.SubGraphT()
            sub.tensors, sub.operators, sub.name = graph.tensors, graph.operators, name
            sub.inputs, sub.outputs = list(inputs), list(outputs)
            model.subgraphs.append(sub)
        model.operatorCodes = []
        for code in sorted(self.flat.codes, key=self.flat.codes.get):
            entry = schema.OperatorCodeT()
            value = getattr(schema.BuiltinOperator, code)
            entry.builtinCode, entry.deprecatedBuiltinCode = value, min(value, 127)
            entry.version = self.flat.versions[code]
            model.operatorCodes.append(entry)
        model.signatureDefs = [_signature(main.tensors, x, y)]
        return bytes(flatbuffer_utils.convert_object_to_bytearray(model))

    def _state_shapes(self) -> list[tuple[str, list[int], str]]:
        """The loop variables: (role, shape, dtype)."""
        state = [("i", [], "INT32"), ("x", [1, self.length, self.features], "FLOAT32")]
        for _ in range(self.n_layers):
            state.append(("h", [1, self.size], "FLOAT32"))
            if self.kind == "lstm":
                state.append(("c", [1, self.size], "FLOAT32"))
        return state

    def _inputs(self, graph: _Graph, state: list) -> list[int]:
        return [graph.tensor(shape, dtype) for _, shape, dtype in state]

    def _cond(self, graph: _Graph, state: list) -> None:
        inputs = self._inputs(graph, state)
        done = graph.tensor([], "BOOL")
        graph.op("LESS", [inputs[0], graph.const(np.array(self.length, np.int32))], [done])
        graph.io = (inputs, [done])

    def _body(self, graph: _Graph, state: list) -> None:
        inputs = self._inputs(graph, state)
        i, x = inputs[0], inputs[1]
        step = graph.tensor([1, self.features])
        graph.op("GATHER", [x, i], [step], _gather(1))
        nxt = graph.tensor([], "INT32")
        graph.op("ADD", [i, graph.const(np.array(1, np.int32))], [nxt])
        per = 2 if self.kind == "lstm" else 1
        outputs, layer_in = [nxt, x], step
        for k in range(self.n_layers):
            carried = inputs[2 + per * k : 2 + per * (k + 1)]
            new = (self._lstm if self.kind == "lstm" else self._gru)(graph, k, layer_in, carried)
            outputs.extend(new)
            layer_in = new[0]
        graph.io = (inputs, outputs)

    def _main(self, graph: _Graph, state: list) -> tuple[int, int]:
        """Input -> WHILE -> head -> [B, horizon, targets] (+ residual); (input, output)."""
        from ai_edge_litert import schema_py_generated as schema

        x = graph.tensor([1, self.length, self.features], batched=True)
        zeros = self._zero_state(graph, x)
        inputs = [graph.const(np.array(0, np.int32)), x] + [zeros] * (len(state) - 2)
        outputs = self._inputs(graph, state)
        options = schema.WhileOptionsT()
        options.condSubgraphIndex, options.bodySubgraphIndex = 1, 2
        graph.op("WHILE", inputs, outputs, options)
        last = outputs[-2] if self.kind == "lstm" else outputs[-1]
        m = self.module
        shape = [-1, m.horizon, m.n_targets]
        y = graph.tensor([1, m.horizon, m.n_targets], batched=True)
        flat = self._fc(graph, "head", last)
        graph.op("RESHAPE", [flat, graph.const(np.array(shape, np.int32))], [y], _reshape(shape))
        return x, self._residual(graph, x, y) if m.residual else y

    def _zero_state(self, graph: _Graph, x: int) -> int:
        """[B, H] zeros as ``x[:, 0, :1] * 0`` (a non-finite first reading gives NaN, as the
        forecast of such a window would be anyway)."""
        first = graph.tensor([1, 1, 1], batched=True)
        begin, size = np.zeros(3, np.int32), np.array([-1, 1, 1], np.int32)
        graph.op("SLICE", [x, graph.const(begin), graph.const(size)], [first])
        column = graph.tensor([1, 1], batched=True)
        shape = np.array([-1, 1], np.int32)
        graph.op("RESHAPE", [first, graph.const(shape)], [column], _reshape([-1, 1]))
        zeros = graph.const(np.zeros((1, self.size), np.float32))
        return graph.binary("MUL", column, zeros, [1, self.size])

    def _residual(self, graph: _Graph, x: int, y: int) -> int:
        """``y`` plus the last observed value of each target."""
        m = self.module
        index = m.target_index.tolist()
        recent = graph.tensor([1, 1, self.features], batched=True)
        begin = np.array([0, self.length - 1, 0], np.int32)
        size = np.array([-1, 1, -1], np.int32)
        graph.op("SLICE", [x, graph.const(begin), graph.const(size)], [recent])
        if index != list(range(self.features)):
            picked = graph.tensor([1, 1, len(index)], batched=True)
            positions = graph.const(np.array(index, np.int32))
            graph.op("GATHER", [recent, positions], [picked], _gather(2))
            recent = picked
        return graph.binary("ADD", y, recent, [1, m.horizon, m.n_targets])

    def _gates(self, graph: _Graph, k: int, layer_in: int, h: int) -> tuple[int, int]:
        return self._fc(graph, f"rnn[{2 * k}]", layer_in), self._fc(graph, f"rnn[{2 * k + 1}]", h)

    def _lstm(self, graph: _Graph, k: int, layer_in: int, carried: list[int]) -> list[int]:
        h, c = carried
        a, b = self._gates(graph, k, layer_in, h)
        gates = graph.binary("ADD", a, b, [1, 4 * self.size])
        i, f, g, o = self._split(graph, gates, 4)
        i, f, o = (graph.unary("LOGISTIC", t, [1, self.size]) for t in (i, f, o))
        g = graph.unary("TANH", g, [1, self.size])
        shape = [1, self.size]
        c_new = graph.binary(
            "ADD", graph.binary("MUL", f, c, shape), graph.binary("MUL", i, g, shape), shape
        )
        h_new = graph.binary("MUL", o, graph.unary("TANH", c_new, shape), shape)
        return [h_new, c_new]

    def _gru(self, graph: _Graph, k: int, layer_in: int, carried: list[int]) -> list[int]:
        (h,) = carried
        a, b = self._gates(graph, k, layer_in, h)
        x_r, x_z, x_n = self._split(graph, a, 3)
        h_r, h_z, h_n = self._split(graph, b, 3)
        shape = [1, self.size]
        b_hn = _bias(self.module.rnn, f"bias_hh_l{k}", 3 * self.size)[2 * self.size :]
        h_n = graph.binary("ADD", h_n, graph.const(b_hn), shape)
        r = graph.unary("LOGISTIC", graph.binary("ADD", x_r, h_r, shape), shape)
        z = graph.unary("LOGISTIC", graph.binary("ADD", x_z, h_z, shape), shape)
        n = graph.unary(
            "TANH", graph.binary("ADD", x_n, graph.binary("MUL", r, h_n, shape), shape), shape
        )
        h_new = graph.binary(
            "ADD", n, graph.binary("MUL", z, graph.binary("SUB", h, n, shape), shape), shape
        )
        return [h_new]

    def _split(self, graph: _Graph, x: int, n: int) -> list[int]:
        from ai_edge_litert import schema_py_generated as schema

        outs = [graph.tensor([1, self.size]) for _ in range(n)]
        options = schema.SplitOptionsT()
        options.numSplits = n
        graph.op("SPLIT", [graph.const(np.array(1, np.int32)), x], outs, options)
        return outs

    def _fc(self, graph: _Graph, name: str, x: int) -> int:
        from ai_edge_litert import schema_py_generated as schema

        from edgecomp.targets.base import TargetError

        layer, scheme = self.weights[name], self.schemes[name]
        try:
            weight = _weight(graph, layer.weight, scheme)
        except ValueError as exc:
            raise TargetError(f"tflite: loop layer '{name}' ({layer.what}): {exc}") from None
        inputs = [
            x,
            weight,
            -1 if layer.bias is None else graph.const(layer.bias.astype(np.float32)),
        ]
        out = graph.tensor([1, len(layer.weight)])
        options = schema.FullyConnectedOptionsT()
        options.asymmetricQuantizeInputs = scheme is not None
        graph.op("FULLY_CONNECTED", inputs, [out], options)
        return out


def _weight(graph: _Graph, weight: np.ndarray, scheme: tuple[int, int | None] | None) -> int:
    """A float weight, an int4 one with a float16 scale per group of inputs (blockwise), or an
    int8 / int4 one with a symmetric scale per output channel."""
    if scheme is None:
        return graph.const(weight.astype(np.float32))
    bits, group = scheme
    if group:
        return _blockwise(graph, weight, group)
    q, scale = quantize_channels(weight, bits)
    data = q.astype(np.int8).tobytes() if bits == 8 else pack_int4(q)
    quant = _ChannelScales(scale, graph.model.zero_points)
    return graph.tensor(list(weight.shape), "INT8" if bits == 8 else "INT4", data, quant)


def _blockwise(graph: _Graph, weight: np.ndarray, group: int) -> int:
    """int4 weights with one float16 scale per ``group`` inputs of each output channel (LiteRT's
    BlockwiseQuantization: a scales tensor, no zero points)."""
    from ai_edge_litert import schema_py_generated as schema

    q, scales = quantize_blocks(weight, group)
    scale_tensor = graph.tensor(list(scales.shape), "FLOAT16", scales.astype(np.float16))
    details = schema.BlockwiseQuantizationT()
    details.scales, details.zeroPoints, details.blockSize = scale_tensor, -1, group
    quant = schema.QuantizationParametersT()
    quant.detailsType = schema.QuantizationDetails.BlockwiseQuantization
    quant.details = details
    return graph.tensor(list(weight.shape), "INT4", pack_int4(q), quant)


def quantize_blocks(weight: np.ndarray, group: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int4 per block of ``group`` inputs: integers in [-7, 7] and float16 scales
    [out, in / group] (the integers are rounded against the float16 scales)."""
    out, n = weight.shape
    blocks = weight.reshape(out, n // group, group)
    peak = np.abs(blocks).max(axis=2)
    if peak.max(initial=0) / 7 > np.finfo(np.float16).max:
        raise ValueError(
            f"a weight of magnitude {float(peak.max()):.3g} needs an int4 scale above float16's "
            "largest (65504); keep it in float (option keep_float) or int4_group_size channel"
        )
    scales = np.where(peak > 0, peak / 7, 1.0).astype(np.float16)
    wide = scales.astype(np.float32)[:, :, None]
    q = np.clip(np.round(blocks / wide), -7, 7).astype(np.int8).reshape(out, n)
    return q, scales


class _ChannelScales:
    """Per-channel quantization parameters that share one zero-point vector per length.

    TFLite needs as many (int64) zero points as scales, all 0 here: written once per length and
    referenced by every weight of that many channels (a flatbuffer may share a vector). Packed
    by the schema's object API like a ``QuantizationParametersT``.
    """

    def __init__(self, scale: np.ndarray, shared: dict[tuple[int, int], int]) -> None:
        self.scale, self.shared = scale.astype(np.float32), shared

    def Pack(self, builder: Any) -> int:  # noqa: N802 (the object API's name)
        from ai_edge_litert import schema_py_generated as schema

        scale = builder.CreateNumpyVector(self.scale)
        key = (id(builder), len(self.scale))
        if key not in self.shared:
            self.shared[key] = builder.CreateNumpyVector(np.zeros(len(self.scale), np.int64))
        schema.QuantizationParametersStart(builder)
        schema.QuantizationParametersAddScale(builder, scale)
        schema.QuantizationParametersAddZeroPoint(builder, self.shared[key])
        schema.QuantizationParametersAddQuantizedDimension(builder, 0)
        return schema.QuantizationParametersEnd(builder)


def quantize_channels(weight: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-output-channel quantization: integers in [-(2^(b-1) - 1), 2^(b-1) - 1]."""
    top = 2 ** (bits - 1) - 1
    peak = np.abs(weight).max(axis=1)
    scale = np.where(peak > 0, peak / top, 1.0).astype(np.float32)
    q = np.clip(np.round(weight / scale[:, None]), -top, top).astype(np.int8)
    return q, scale


def pack_int4(q: np.ndarray) -> bytes:
    """TFLite's INT4 layout: two values per byte, the first in the low nibble."""
    flat = q.reshape(-1).astype(np.int8)
    if len(flat) % 2:
        flat = np.append(flat, np.int8(0))
    low, high = flat[0::2] & 0x0F, (flat[1::2] & 0x0F) << 4
    return (low | high).astype(np.uint8).tobytes()


def _signature(tensors: list[Any], x: int, y: int) -> Any:
    from ai_edge_litert import schema_py_generated as schema

    from .convert import SIGNATURE

    tensors[x].name, tensors[y].name = b"args_0", b"output_0"
    signature = schema.SignatureDefT()
    signature.signatureKey, signature.subgraphIndex = SIGNATURE.encode(), 0
    signature.inputs, signature.outputs = [], []
    for side, name, index in ((signature.inputs, "args_0", x), (signature.outputs, "output_0", y)):
        entry = schema.TensorMapT()
        entry.name, entry.tensorIndex = name.encode(), index
        side.append(entry)
    return signature


def _gather(axis: int) -> Any:
    from ai_edge_litert import schema_py_generated as schema

    options = schema.GatherOptionsT()
    options.axis = axis
    return options


def _reshape(shape: list[int]) -> Any:
    from ai_edge_litert import schema_py_generated as schema

    options = schema.ReshapeOptionsT()
    options.newShape = list(shape)
    return options


def _kind(module: Any) -> str:
    from torch import nn

    return "lstm" if isinstance(module.rnn, nn.LSTM) else "gru"


def _np(tensor: Any) -> np.ndarray:
    return tensor.detach().cpu().numpy().astype(np.float32)


def _bias(owner: Any, attr: str, n: int) -> np.ndarray:
    bias = getattr(owner, attr, None)
    return np.zeros(n, np.float32) if bias is None else _np(bias)


# --- the target's lower / quantize ------------------------------------------------------------

_METHOD = (
    "dynamic range: {bits} weights ({per}, symmetric), activations quantized per row at run "
    "time by the kernel"
)
_INT8_NOTE = (
    "; the loop lowering has no full-integer path, so precision int8 is this hybrid int8 "
    "(no calibration ranges are used)"
)


def lower_loop(request: Any) -> Any:
    """``TfliteTarget.lower`` for the loop lowering: the fp32 loop model and its records."""
    module = request.model.module
    layers = [_as_layer(la, i) for i, la in enumerate(loop_layers(module))]
    return _finish(request, emit_loop(module, "fp32"), layers, "fp32")


def quantize_loop(request: Any, lowered: Any) -> Any:
    """``TfliteTarget.quantize`` for the loop lowering: weights at ``request.precision``
    (int4: groups per option ``int4_group_size``); ``keep_float`` layers (record names, edges,
    patterns) stay float."""
    from .quantize import request_settings

    _, layers = lowered.ir
    settings, module = request_settings(request), request.model.module
    kept = settings.kept(_Edges(), layers)
    precision = str(request.precision)
    int8 = settings.int8(_Edges(), layers, kept, precision)  # option keep_int8 (int4 only)
    groups = {}
    if precision == "int4":
        groups = int4_groups(settings.int4_group_size, loop_layers(module), kept | int8)
    final = emit_loop(module, precision, frozenset(kept), groups, frozenset(int8))
    return _finish(request, final, layers, precision, kept, groups, int8)


class _Edges:
    """The graph's edges for ``QuantSettings.kept``: W_ih of the first layer reads the input,
    the head writes the forecast."""

    def edge_layers(self, layers: list[Any], edge: str) -> list[str]:
        return [layers[0].name] if edge == "input" else [layers[-1].name]


def _as_layer(layer: LoopLayer, index: int) -> Any:
    from .graph import Layer, Op

    return Layer(layer.name, Op(index, "FULLY_CONNECTED", f"{layer.what};", (), ()))


def _finish(
    request: Any,
    model: bytes,
    layers: list,
    precision: str,
    kept: dict[str, str] | None = None,
    groups: dict[str, int] | None = None,
    int8: dict[str, str] | None = None,
) -> Any:
    from edgecomp.targets import base

    from .batch import batching
    from .convert import io_spec
    from .quantize import request_settings

    spec = request.model.spec
    records = loop_records(model, layers, precision, kept or {}, int8 or {})
    lowering = {
        "converter": "edgecomp loop emitter (ai_edge_litert flatbuffer schema)",
        "recurrent_lowering": DESCRIPTION,
        **batching(model, spec.input_len, spec.n_features),
        "xnnpack": request.options.xnnpack,
        "threads": request.options.threads,
        "quantization": _quantization(
            request_settings(request), precision, groups or {}, len(layers), int8 or {}
        ),
        "n_calibration_windows": 0 if request.windows is None else len(request.windows),
    }
    io = io_spec(model, spec)
    return base.Lowered(model=model, io=io, layers=records, lowering=lowering, ir=("loop", layers))


def _quantization(
    settings: Any, precision: str, groups: dict[str, int], n_layers: int, int8: dict[str, str]
) -> dict[str, Any] | None:
    """The manifest's record of how the loop's weights were quantized (None: fp32)."""
    if precision not in _BITS:
        return None
    record = {
        "tool": "edgecomp (numpy, targets/tflite/loop.py)",
        "recipe": {"mode": "dynamic", "weight_bits": _BITS[precision]},
        "weight_granularity": "channelwise",
        "keep_float": list(settings.keep_float),
        "n_calibration_windows": 0,
    }
    if precision == "int4":
        record |= settings.lowering_int4(groups, n_layers, int8)
    return record


def loop_records(
    model: bytes,
    layers: list[Any],
    precision: str,
    kept: dict[str, str],
    int8: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Layer records read off the written model: each FULLY_CONNECTED weight's stored dtype and
    int4 group size.

    Raises:
        TargetError: A layer is missing or did not become what ``precision`` needs.
    """
    from edgecomp.targets.base import TargetError

    from .layers import _merge

    found = fc_weights(model)
    if len(found) != len(layers):
        raise TargetError(
            f"tflite: the loop model has {len(found)} FULLY_CONNECTED ops, expected "
            f"{len(layers)} ({[la.name for la in layers]})"
        )
    pairs = zip(layers, found, strict=True)
    return _merge([_record(la, *w, precision, kept, int8 or {}) for la, w in pairs])


def _record(
    layer: Any, dtype: str, group: int, precision: str, kept: dict[str, str], int8: dict[str, str]
) -> dict[str, Any]:
    from edgecomp.targets.base import TargetError

    bits = {"INT8": "int8", "INT4": "int4"}.get(dtype)
    got = (bits, "dynamic") if bits else ("fp32", None)
    quantized = precision in _BITS and layer.name not in kept
    wanted = 8 if layer.name in int8 else _BITS.get(precision)
    want = ({8: "int8", 4: "int4"}[wanted], "dynamic") if quantized else ("fp32", None)
    if got != want:
        raise TargetError(
            f"tflite: layer '{layer.name}' of the loop model became {got[0]} (needs {want[0]})"
        )
    if precision not in _BITS:
        reason = "fp32 build"
    elif layer.name in kept or layer.name in int8:
        reason = kept.get(layer.name) or int8[layer.name]
    else:
        per = f"groups of {group}" if group else "per channel"
        reason = _METHOD.format(bits=bits, per=per) + (_INT8_NOTE if precision == "int8" else "")
    return {"name": layer.name, "op_type": "FULLY_CONNECTED", "precision": got[0]} | {
        "method": got[1],
        "reason": reason,
    }


def fc_weights(model: bytes) -> list[tuple[str, int]]:
    """(stored dtype, int4 block size or 0) of each FULLY_CONNECTED op's weight: the body's in
    graph order, then main's."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    flat = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
    names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    fc = schema.BuiltinOperator.FULLY_CONNECTED
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in flat.operatorCodes]
    found = []
    for sub in [*flat.subgraphs[1:], flat.subgraphs[0]]:
        for op in sub.operators:
            if codes[op.opcodeIndex] == fc:
                tensor = sub.tensors[op.inputs[1]]
                details = tensor.quantization.details if tensor.quantization else None
                found.append((names[tensor.type], getattr(details, "blockSize", 0) or 0))
    return found
