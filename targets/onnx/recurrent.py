"""Recurrent lowerings written as plain ONNX ops: a hoisted input projection, then the recurrence.

ONNX Runtime's fused LSTM/GRU ops run a whole layer in one kernel, but the GRU op has no int8
kernel and neither op can be fed by an int8 GEMM over all steps. ``hoisted_graph`` lowers an
edgecomp LSTM or GRU forecaster (``edgecomp.models``) differently: per layer, one MatMul of
``[L, B, F] x [F, 4H | 3H]`` projects every step's input at once (int8-quantizable by
``quantize_dynamic``), then the recurrence is unrolled over the fixed window length L with only the
hidden-state GEMM per step. ``cell_weights`` gives the same cells' weights in that layout (the
streaming step kernel of ``edgecomp.streaming`` reuses it).

``scan_graph`` is the int8 form with each weight stored once: per layer one int8 GEMM projects
every step's input (DynamicQuantizeLinear -> MatMulInteger, one float scale per output column; for
the window, whose one per-tensor scale spans every feature's outliers, a second int8 GEMM projects
its quantization residual: traffic GRU max |error| 0.035 -> 0.020, benchmarks/gru_int8.py), and
an ONNX Scan runs the recurrence with one step in its body, whose hidden-state GEMM is int8 too:
``h`` is bounded in (-1, 1), so it is quantized at the fixed scale ``1 / 127`` (uint8, zero point
128) with no per-step range reduction. The head is dynamic int8 as in the default int8 build.

Gate layouts (torch): LSTM rows ``[i, f, g, o]``, reordered here to ``[i, f, o, g]`` so that one
Sigmoid covers three gates; GRU rows ``[r, z, n]``, with ``n = tanh(x W_n + b_in + r (h U_n +
b_hn))``, so ``b_hn`` stays inside the recurrent GEMM.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import onnx
    from torch import nn

__all__ = [
    "LOWERINGS",
    "RecurrentLoweringError",
    "applies",
    "hoisted_graph",
    "hoisted_lowering",
    "lower_recurrent",
    "quantize_hoisted",
    "scan_graph",
    "scan_lowering",
    "cell_weights",
]

LOWERINGS = ("fused", "hoisted", "scan")
H_SCALE = 1 / 127  # the int8 Scan's fixed scale for h in (-1, 1): uint8 with zero point 128
OPSET = 17
INPUT, OUTPUT = "window", "forecast"


class RecurrentLoweringError(ValueError):
    """The module cannot be lowered this way; the message names the module and why."""


@dataclass
class _Graph:
    """Nodes and initializers under construction, with unique names."""

    nodes: list[Any] = field(default_factory=list)
    inits: list[Any] = field(default_factory=list)
    count: int = 0
    prefix: str = ""  # a Scan body's names must differ from its outer graph's
    int8: bool = False  # GEMMs as int8 MatMulInteger (scan_graph), else float Gemm/MatMul

    def const(self, value: np.ndarray, name: str) -> str:
        from onnx import numpy_helper

        self.count += 1
        name = f"{self.prefix}{name}_{self.count}"
        self.inits.append(numpy_helper.from_array(np.array(value, order="C"), name))
        return name

    def op(self, op_type: str, inputs: list[str], n_out: int = 1, **attrs: Any) -> Any:
        from onnx import helper

        self.count += 1
        outs = [f"{self.prefix}{op_type.lower()}_{self.count}_{i}" for i in range(n_out)]
        self.nodes.append(
            helper.make_node(
                op_type, inputs, outs, name=f"{self.prefix}{op_type}_{self.count}", **attrs
            )
        )
        return outs[0] if n_out == 1 else outs


@dataclass(frozen=True)
class _Layer:
    """One recurrent layer's weights, laid out for the graph (float32, transposed)."""

    w_x: np.ndarray  # [F_in, G]
    w_h: np.ndarray  # [H, G]
    b_x: np.ndarray  # [G]: every bias that can sit outside the recurrence
    b_h: np.ndarray | None  # [G]: GRU only, b_hn in the n block, zeros elsewhere


def cell_weights(rnn: nn.RNNBase) -> tuple[bool, list[_Layer]]:
    """(is LSTM, per layer: transposed float32 weights, gates reordered, biases folded).

    Raises:
        RecurrentLoweringError: Not a one-direction, batch-first LSTM/GRU with biases.
    """
    import torch
    from torch import nn

    lstm = isinstance(rnn, nn.LSTM)
    if not lstm and not isinstance(rnn, nn.GRU):
        raise RecurrentLoweringError(f"{type(rnn).__name__}: only LSTM and GRU are lowered")
    if rnn.bidirectional or getattr(rnn, "proj_size", 0) or not rnn.bias or not rnn.batch_first:
        raise RecurrentLoweringError(
            f"{type(rnn).__name__}: needs batch_first, biases, one direction, no projection"
        )
    hidden, layers = rnn.hidden_size, []
    with torch.no_grad():
        for k in range(rnn.num_layers):
            w_ih, w_hh = (
                getattr(rnn, f"{n}_l{k}").double().numpy() for n in ("weight_ih", "weight_hh")
            )
            b_ih, b_hh = (
                getattr(rnn, f"{n}_l{k}").double().numpy() for n in ("bias_ih", "bias_hh")
            )
            if lstm:
                order = np.r_[0 : 2 * hidden, 3 * hidden : 4 * hidden, 2 * hidden : 3 * hidden]
                layers.append(_layer(w_ih[order], w_hh[order], (b_ih + b_hh)[order], None))
            else:
                b_x = b_ih.copy()
                b_x[: 2 * hidden] += b_hh[: 2 * hidden]
                b_h = np.zeros_like(b_hh)
                b_h[2 * hidden :] = b_hh[2 * hidden :]
                layers.append(_layer(w_ih, w_hh, b_x, b_h))
    return lstm, layers


def _layer(w_ih, w_hh, b_x, b_h) -> _Layer:
    f32 = np.float32
    return _Layer(
        w_ih.T.astype(f32),
        w_hh.T.astype(f32),
        b_x.astype(f32),
        None if b_h is None else b_h.astype(f32),
    )


def _lstm_cell(g: _Graph, gates: str, c: str | None, hidden: int) -> tuple[str, str]:
    """gates [B, 4H] (i, f, o, g) -> (h', c'); ``c`` None is a zero cell state."""
    sig, cand = g.op("Split", [gates, g.const(np.array([3 * hidden, hidden]), "split")], 2, axis=1)
    i, f, o = g.op("Split", [g.op("Sigmoid", [sig])], 3, axis=1)
    c_new = g.op("Mul", [i, g.op("Tanh", [cand])])
    if c is not None:
        c_new = g.op("Add", [g.op("Mul", [f, c]), c_new])
    return g.op("Mul", [o, g.op("Tanh", [c_new])]), c_new


def _gru_cell(g: _Graph, p: str, h: str | None, layer: _Layer) -> str:
    """p [B, 3H] (input projection with its biases) -> h'; ``h`` None is a zero state."""
    hidden = layer.w_h.shape[0]
    two = g.const(np.array([2 * hidden, hidden]), "split")
    p_rz, p_n = g.op("Split", [p, two], 2, axis=1)
    if h is None:
        rz = g.op("Sigmoid", [p_rz])
        r, z = g.op("Split", [rz], 2, axis=1)
        q_n = g.const(layer.b_h[None, 2 * hidden :], "b_hn")
    else:
        q = _hidden_gemm(g, h, layer.w_h, layer.b_h)
        q_rz, q_n = g.op("Split", [q, two], 2, axis=1)
        r, z = g.op("Split", [g.op("Sigmoid", [g.op("Add", [p_rz, q_rz])])], 2, axis=1)
    n = g.op("Tanh", [g.op("Add", [p_n, g.op("Mul", [r, q_n])])])
    if h is None:  # h' = (1 - z) n
        return g.op("Sub", [n, g.op("Mul", [z, n])])
    return g.op("Add", [n, g.op("Mul", [z, g.op("Sub", [h, n])])])


def _hidden_gemm(g: _Graph, h: str, w_h: np.ndarray, bias: np.ndarray | str) -> str:
    """h [B, H] x w_h [H, G] + bias: a float Gemm, or int8 with h at the fixed ``H_SCALE``."""
    b = g.const(bias, "b_h") if isinstance(bias, np.ndarray) else bias
    if not g.int8:
        return g.op("Gemm", [h, g.const(w_h, "w_h"), b])
    q, scale = int8_columns(w_h)
    zero = g.const(np.array(128, np.uint8), "h_zero")
    h_q = g.op("QuantizeLinear", [h, g.const(np.array(H_SCALE, np.float32), "h_scale"), zero])
    acc = g.op("MatMulInteger", [h_q, g.const(q, "w_h"), zero])
    y = g.op("Mul", [g.op("Cast", [acc], to=1), g.const(scale * np.float32(H_SCALE), "w_h_scale")])
    return g.op("Add", [y, b])


def _input_gemm(
    g: _Graph, x: str, w: np.ndarray, bias: np.ndarray, name: str, *, residual: bool = False
) -> str:
    """x [..., K] x w [K, N] + bias: a float MatMul + Add, or dynamic int8 (x quantized per
    call, uint8; w int8 with one scale per output column); ``residual``: x's quantization error
    quantized again and projected by a second int8 GEMM (the window, whose one per-tensor scale
    spans every feature's outliers)."""
    if not g.int8:
        return g.op("Add", [g.op("MatMul", [x, g.const(w, name)]), g.const(bias, f"b_{name}")])
    q, scale = int8_columns(w)
    w_q, w_scale = g.const(q, name), g.const(scale, f"{name}_scale")
    y, x_dq = _dynamic_gemm(g, x, w_q, w_scale, dequantized=residual)
    if residual:
        y = g.op("Add", [y, _dynamic_gemm(g, g.op("Sub", [x, x_dq]), w_q, w_scale)[0]])
    return g.op("Add", [y, g.const(bias, f"b_{name}")])


def _dynamic_gemm(
    g: _Graph, x: str, w_q: str, w_scale: str, *, dequantized: bool = False
) -> tuple[str, str | None]:
    """(x @ w with x quantized per call, x's int8 form dequantized when asked, else None)."""
    x_q, x_scale, x_zero = g.op("DynamicQuantizeLinear", [x], 3)
    acc = g.op("MatMulInteger", [x_q, w_q, x_zero])
    y = g.op("Mul", [g.op("Cast", [acc], to=1), g.op("Mul", [x_scale, w_scale])])
    x_dq = g.op("DequantizeLinear", [x_q, x_scale, x_zero]) if dequantized else None
    return y, x_dq


def int8_columns(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 of ``w`` [K, N] with one float32 scale per output column:
    (int8 [K, N] in [-127, 127], scales [N])."""
    peak = np.abs(w).max(axis=0)
    scale = np.where(peak > 0, peak / 127, 1.0).astype(np.float32)
    return np.clip(np.rint(w / scale), -127, 127).astype(np.int8), scale


def _recur(g: _Graph, lstm: bool, layer: _Layer, p_t: str, state: tuple) -> tuple:
    """One step of one layer: projected input p_t [B, G], state (h, c) -> new (h, c)."""
    h, c = state
    u, hidden = layer.w_h, layer.w_h.shape[0]
    if lstm:
        gates = p_t if h is None else _hidden_gemm(g, h, u, p_t)
        return _lstm_cell(g, gates, c, hidden)
    return _gru_cell(g, p_t, h, layer), None


def hoisted_graph(
    module: nn.Module, input_len: int, n_features: int, *, scan: bool = False, int8: bool = False
) -> onnx.ModelProto:
    """The forecaster as ONNX: per layer one input-projection MatMul, then the recurrence.

    Args:
        module: An edgecomp LSTM or GRU forecaster (``rnn`` and ``_project``'s head).
        input_len: Window length L (the recurrence is unrolled over it).
        n_features: Input features F.
        scan: The recurrence as one ONNX Scan per layer instead of unrolled over L.
        int8: Every GEMM int8 as written here (``scan_graph``), not by ``quantize_hoisted``.

    Returns:
        A checked model: input "window" [batch, L, F], output "forecast" [batch, H, F_out].

    Raises:
        RecurrentLoweringError: The module is not an LSTM/GRU forecaster this lowering knows.
    """
    from onnx import TensorProto, helper

    rnn = _rnn(module)
    lstm, layers = cell_weights(rnn)
    g = _Graph(int8=int8)
    x = g.op("Transpose", [INPUT], perm=[1, 0, 2])  # [L, B, F]: one step is contiguous
    for k, layer in enumerate(layers):
        proj = _input_gemm(g, x, layer.w_x, layer.b_x, "w_x", residual=scan and k == 0)
        if scan:
            x, state = _scan(g, lstm, layer, proj, k + 1 == len(layers))
            continue
        state, outs = (None, None), []
        for t in range(input_len):
            p_t = g.op("Gather", [proj, g.const(np.array(t, dtype=np.int64), "t")], axis=0)
            state = _recur(g, lstm, layer, p_t, state)
            outs.append(state[0])
        if k + 1 < len(layers):
            shape = g.const(np.array([input_len, -1, rnn.hidden_size]), "shape")
            x = g.op("Reshape", [g.op("Concat", outs, axis=0), shape])
    _head(g, module, state[0], INPUT, axis_last=True)
    graph = helper.make_graph(
        g.nodes,
        "hoisted_" + ("lstm" if lstm else "gru"),
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["batch", input_len, n_features])],
        [
            helper.make_tensor_value_info(
                OUTPUT, TensorProto.FLOAT, ["batch", module.horizon, module.n_targets]
            )
        ],
        g.inits,
    )
    return _checked(graph)


def _scan(g: _Graph, lstm: bool, layer: _Layer, proj: str, last: bool) -> tuple[str, tuple]:
    """One layer's recurrence as a Scan over proj [L, B, G]: (h of every step [L, B, H], (h,))."""
    from onnx import TensorProto, helper

    hidden = layer.w_h.shape[0]
    batch = g.op("Shape", [INPUT], start=0, end=1)
    shape = g.op("Concat", [batch, g.const(np.array([hidden]), "hidden")], axis=0)
    zero = helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0])
    zeros = g.op("ConstantOfShape", [shape], value=zero)
    body = _Graph(count=g.count, prefix=f"scan{g.count}_", int8=g.int8)
    names = (
        [f"{body.prefix}{n}" for n in ("h", "c", "p")]
        if lstm
        else [f"{body.prefix}h", f"{body.prefix}p"]
    )
    h, c = names[0], names[1] if lstm else None
    h_new, c_new = _recur(body, lstm, layer, names[-1], (h, c))
    outs = [h_new, *([c_new] if lstm else [])]
    if not last:
        outs.append(body.op("Identity", [h_new]))
    width = layer.w_h.shape[1]

    def info(name: str, size: int) -> Any:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", size])

    graph = helper.make_graph(
        body.nodes,
        body.prefix + "body",
        [info(n, width if n == names[-1] else hidden) for n in names],
        [info(n, hidden) for n in outs],
        body.inits,
    )
    g.count = body.count + 1
    results = g.op(
        "Scan",
        [zeros, *([zeros] if lstm else []), proj],
        len(outs),
        body=graph,
        num_scan_inputs=1,
    )
    results = [results] if isinstance(results, str) else results
    return results[-1], (results[0],)


def _head(g: _Graph, module: nn.Module, h: str, x: str, *, axis_last: bool) -> None:
    """forecast = head(h) reshaped [B, H, F_out] (+ the last reading's targets when residual)."""
    import torch

    with torch.no_grad():
        weight = module.head.weight.double().numpy().T.astype(np.float32)
        bias = module.head.bias.double().numpy().astype(np.float32)
    shape = g.const(np.array([-1, module.horizon, module.n_targets]), "shape")
    if g.int8:
        y = g.op("Reshape", [_input_gemm(g, h, weight, bias, "w_head"), shape])
    else:
        y = g.op(
            "Reshape",
            [g.op("Gemm", [h, g.const(weight, "w_head"), g.const(bias, "b_head")]), shape],
        )
    if not module.residual:
        g.nodes[-1].output[0] = OUTPUT
        return
    last = x
    if axis_last:  # the window's last step [B, F]
        last = g.op("Gather", [x, g.const(np.array(module.input_len - 1), "last")], axis=1)
    if not module._all_features:
        index = module.target_index.numpy().astype(np.int64)
        last = g.op("Gather", [last, g.const(index, "targets")], axis=1)
    last = g.op("Unsqueeze", [last, g.const(np.array([1]), "axis")])
    g.nodes.append(_node("Add", [y, last], [OUTPUT]))


def _node(op_type: str, inputs: list[str], outputs: list[str]) -> Any:
    from onnx import helper

    return helper.make_node(op_type, inputs, outputs, name=f"{op_type}_{outputs[0]}")


def _rnn(module: nn.Module) -> nn.RNNBase:
    from edgecomp.models import _RecurrentForecaster

    if not isinstance(module, _RecurrentForecaster):
        raise RecurrentLoweringError(
            f"{type(module).__name__}: needs an edgecomp LSTM or GRU forecaster"
        )
    return module.rnn


def _checked(graph: Any) -> onnx.ModelProto:
    import onnx
    from onnx import helper

    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    proto.ir_version = 8
    onnx.checker.check_model(proto, full_check=True)
    return proto


def quantize_hoisted(proto: onnx.ModelProto, *, projections_only: bool = False) -> onnx.ModelProto:
    """int8 weights (ORT ``quantize_dynamic``, activations quantized per call) for every MatMul
    and Gemm, or only the input projections (``projections_only``)."""
    import tempfile
    from pathlib import Path

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    nodes = None
    if projections_only:
        nodes = [n.name for n in proto.graph.node if n.op_type == "MatMul" and "w_x" in n.input[1]]
    with tempfile.TemporaryDirectory(prefix="edgecomp-hoisted-") as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(proto.SerializeToString())
        quantize_dynamic(
            src,
            dst,
            op_types_to_quantize=["MatMul", "Gemm"],
            nodes_to_quantize=nodes,
            weight_type=QuantType.QInt8,
        )
        return onnx.load(str(dst))


def lower_recurrent(
    module: nn.Module, input_len: int, n_features: int, *, int8: bool
) -> onnx.ModelProto:
    """The hoisted lowering of ``module``: fp32, or with int8 MatMuls when ``int8``.

    This is the function a candidate search calls; ``hoisted_graph`` and ``quantize_hoisted`` are
    its two halves.
    """
    proto = hoisted_graph(module, input_len, n_features)
    return quantize_hoisted(proto) if int8 else proto


def scan_graph(module: nn.Module, input_len: int, n_features: int) -> onnx.ModelProto:
    """The int8 Scan lowering: per layer one int8 input-projection GEMM over all steps, then an
    ONNX Scan whose one-step body runs the int8 hidden-state GEMM; each weight stored once.

    Args:
        module: An edgecomp LSTM or GRU forecaster.
        input_len: Window length L.
        n_features: Input features F.

    Raises:
        RecurrentLoweringError: The module is not an LSTM/GRU forecaster this lowering knows.
    """
    return hoisted_graph(module, input_len, n_features, scan=True, int8=True)


def applies(module_type: type, precision: str) -> bool:
    """Whether the hoisted and Scan lowerings apply to a forecaster class at ``precision``: an
    edgecomp LSTM/GRU forecaster at fp32 or int8 (``candidates.applicable_lowerings`` asks)."""
    from edgecomp.models import _RecurrentForecaster

    return issubclass(module_type, _RecurrentForecaster) and precision in ("fp32", "int8")


def scan_lowering(request: Any, fp32: Any) -> Any:
    """The Scan lowering at the request's precision (int8: ``scan_graph``; fp32: the float Scan
    graph), for ``candidates.py``; None where it does not apply (not an edgecomp LSTM/GRU
    forecaster, or int4)."""
    from edgecomp.targets import base

    module, spec = request.model.module, request.model.spec
    int8 = request.precision is base.Precision.INT8
    if not applies(type(module), str(request.precision)):
        return None
    proto = hoisted_graph(module, spec.input_len, spec.n_features, scan=True, int8=int8)
    quantization = None
    if int8:
        quantization = {
            "method": "int8 Scan (edgecomp): input projection of all steps one dynamic int8 GEMM "
            "(layer 0: the window and its quantization residual, two GEMMs); "
            "hidden-state GEMM int8 in the Scan body, h at the fixed scale 1/127; head dynamic",
            "weights": "int8, one scale per output column, each stored once",
        }
    return base.Lowered(
        model=proto.SerializeToString(),
        io=fp32.io,
        layers=_records(proto, module, int8, scan=True),
        lowering={**fp32.lowering, "quantization": quantization},
        ir=fp32.ir,
    )


def hoisted_lowering(request: Any, fp32: Any) -> Any:
    """The hoisted lowering at the request's precision, for ``candidates.py``; None where it does
    not apply (not an edgecomp LSTM/GRU forecaster, or int4).

    Args:
        request: The emit request (``targets.base.Request``): model, precision, options.
        fp32: The default lowering at fp32 (``targets.base.Lowered``); its io and ir are kept.

    Returns:
        A ``targets.base.Lowered`` whose model is the hoisted graph (int8: every MatMul and the
        head dynamically quantized), or None.
    """
    from edgecomp.targets import base

    module, spec = request.model.module, request.model.spec
    int8 = request.precision is base.Precision.INT8
    if not applies(type(module), str(request.precision)):
        return None
    proto = lower_recurrent(module, spec.input_len, spec.n_features, int8=int8)
    quantization = None
    if int8:
        quantization = {
            "method": "dynamic int8 (onnxruntime quantize_dynamic, MatMul only)",
            "weights": "int8 per tensor",
        }
    lowering = {**fp32.lowering, "quantization": quantization}
    return base.Lowered(
        model=proto.SerializeToString(),
        io=fp32.io,
        layers=_records(proto, module, int8),
        lowering=lowering,
        ir=fp32.ir,
    )


def _records(
    proto: onnx.ModelProto, module: nn.Module, int8: bool, *, scan: bool = False
) -> list[dict[str, Any]]:
    """One record per recurrent layer (its input-projection node) and the head."""
    kernel = "MatMulInteger" if int8 else "MatMul"
    from torch import nn

    op_type = "LSTM" if isinstance(module.rnn, nn.LSTM) else "GRU"
    first: dict[str, str] = {}  # input weight (w_x_*, w_x_*_quantized) -> its first MatMul
    for n in proto.graph.node:  # (the int8 Scan's window has two: itself and its residual)
        if n.op_type == kernel and n.input[1].startswith("w_x"):
            first.setdefault(n.input[1], n.name)
    projections = list(first.values())
    reason = (
        f"hoisted {op_type}: input projection and recurrent GEMMs int8 (dynamic), gates in fp32"
        if int8
        else "fp32 build"
    )
    if int8 and scan:
        reason = (
            f"Scan {op_type}: input projection of all steps one dynamic int8 GEMM, hidden-state "
            "GEMM int8 (h at the fixed scale 1/127) in the Scan body, gates in fp32"
        )
    records = [
        {
            "name": f"rnn.l{k}" if module.rnn.num_layers > 1 else "rnn",
            "op_type": op_type,
            "precision": "int8" if int8 else "fp32",
            "method": "dynamic" if int8 else None,
            "reason": reason,
            "node": node,
        }
        for k, node in enumerate(projections)
    ]
    head = next(
        n.name for n in reversed(proto.graph.node) if n.op_type in ("Gemm", "MatMul", kernel)
    )
    records.append(
        {
            "name": "head",
            "op_type": "Gemm",
            "precision": "int8" if int8 else "fp32",
            "method": "dynamic" if int8 else None,
            "reason": "dynamic int8: weights int8, activations quantized at run time"
            if int8
            else "fp32 build",
            "node": head,
        }
    )
    return records
