"""An int8-compute GRU as plain ONNX ops: exact PyTorch GRU semantics, every GEMM int8.

ONNX Runtime has no int8 GRU kernel and OpenVINO's CPU plugin has no int8 linear-before-reset
GRU (oneDNN: "could not create a primitive descriptor for the LBR GRU"), so the default int8
build stores the GRU's weights int8 and computes it in float. ``gru_int8_graph`` lowers an
edgecomp GRU forecaster so that the GEMMs compute in int8:

* per layer, the input projection of all L steps is one int8 GEMM (layer by layer: the second
  layer's projection reads the first layer's outputs);
* the recurrent ``h @ U`` of every step is an int8 GEMM, with ``h`` quantized at a static scale
  (``h`` lies in (-1, 1): the fixed ``1 / 127``, or a calibrated ``max |h| / 127``) or per step
  (``DynamicQuantizeLinear``);
* the gates stay elementwise float (``n = tanh(x W_n + b_in + r (h U_n + b_hn))``, torch's
  linear-before-reset form); the recurrence is unrolled over L with each weight stored once.

Two forms: ``integer`` (MatMulInteger; ONNX Runtime 1.32 fuses the dynamic GEMMs into
DynamicQuantizeMatMul and leaves the fixed-scale ``h @ U`` as MatMulInteger + Cast + Mul) and
``qdq`` (QuantizeLinear -> DequantizeLinear -> MatMul with static scales, the form OpenVINO turns
into FakeQuantize + int8 FullyConnected).
In the integer form the window's projection is two int8 GEMMs, the window and its quantization
residual (one per-tensor scale spans every feature's outliers: traffic GRU max |error| 0.035 ->
0.020; the int8 Scan lowering of ``recurrent.py`` does the same).

This is a measured alternative, not a build candidate: ``benchmarks/gru_int8.py`` times it
against the default int8 GRU (float compute), the int8 Scan lowering and OpenVINO. It computes
what the int8 Scan computes, unrolled (~1,470 nodes for 2 x 48 steps): no faster than the Scan,
5-6x slower than the fused float GRU at batch 1, and on OpenVINO 40x slower.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from edgecomp.targets.onnx.recurrent import (
    INPUT,
    OUTPUT,
    RecurrentLoweringError,
    _checked,
    _Graph,
    _node,
    _rnn,
    cell_weights,
    int8_columns,
)

if TYPE_CHECKING:
    import onnx
    from torch import nn

__all__ = ["FORMS", "H_MODES", "Scales", "calibrate", "gru_int8_graph"]

FORMS = ("integer", "qdq")
H_MODES = ("fixed", "calibrated", "dynamic")


@dataclass(frozen=True)
class Scales:
    """Static activation ranges per layer (from ``calibrate``).

    Attributes:
        x_min: Per layer, the smallest value of the layer's input (window or previous h).
        x_max: Per layer, the largest value of the layer's input.
        h_max: Per layer, the largest ``|h|`` over all steps.
    """

    x_min: tuple[float, ...]
    x_max: tuple[float, ...]
    h_max: tuple[float, ...]


def calibrate(module: nn.Module, windows: np.ndarray) -> Scales:
    """Activation ranges of each GRU layer's input and hidden state on ``windows`` [N, L, F]."""
    x_min, x_max, h_max = [], [], []
    for x, out in layer_io(_gru(module), windows):
        x_min.append(float(x.min()))
        x_max.append(float(x.max()))
        h_max.append(float(out.abs().max()))
    return Scales(tuple(x_min), tuple(x_max), tuple(h_max))


def layer_io(rnn: nn.Module, windows: np.ndarray) -> list[tuple[Any, Any]]:
    """Each layer of the stacked ``rnn`` (``nn.GRU`` or ``nn.LSTM``) run alone on ``windows``
    [N, L, F]: its input and output sequences, layer by layer."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32))
    found = []
    with torch.no_grad():
        for k in range(rnn.num_layers):
            one = type(rnn)(x.shape[-1], rnn.hidden_size, batch_first=True)
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(one, f"{name}_l0").copy_(getattr(rnn, f"{name}_l{k}"))
            out, _ = one(x)
            found.append((x, out))
            x = out
    return found


def gru_int8_graph(
    module: nn.Module,
    input_len: int,
    n_features: int,
    *,
    form: str = "integer",
    h_mode: str = "fixed",
    scales: Scales | None = None,
) -> onnx.ModelProto:
    """The GRU forecaster as ONNX with int8 GEMMs (see the module's doc).

    Args:
        module: An edgecomp GRU forecaster.
        input_len: Window length L (the recurrence is unrolled over it).
        n_features: Input features F.
        form: "integer" (MatMulInteger; input projections and head dynamic) or "qdq" (static
            QuantizeLinear/DequantizeLinear around float MatMuls; needs ``scales``).
        h_mode: How ``h`` is quantized for ``h @ U``: "fixed" (1/127), "calibrated" (needs
            ``scales``) or "dynamic" (per step; integer form only).
        scales: Activation ranges from ``calibrate``.

    Returns:
        A checked model: input "window" [batch, L, F], output "forecast" [batch, H, F_out].

    Raises:
        RecurrentLoweringError: Not an edgecomp GRU forecaster, or the options do not fit.
    """
    if form not in FORMS or h_mode not in H_MODES:
        raise RecurrentLoweringError(f"gru_int8: form {form!r} / h_mode {h_mode!r} unknown")
    if scales is None and (form == "qdq" or h_mode == "calibrated"):
        raise RecurrentLoweringError(f"gru_int8: form {form!r} / h_mode {h_mode!r} needs scales")
    if form == "qdq" and h_mode == "dynamic":
        raise RecurrentLoweringError("gru_int8: the qdq form has static scales only")
    build = _Builder(_Graph(int8=True), form, h_mode, scales)
    return _graph(module, input_len, n_features, build)


def _graph(module: nn.Module, input_len: int, n_features: int, build: _Builder) -> Any:
    from onnx import TensorProto, helper

    _, layers = cell_weights(_gru(module))
    g = build.g
    x = g.op("Transpose", [INPUT], perm=[1, 0, 2])  # [L, B, F]
    for k, layer in enumerate(layers):
        x, h = build.layer(k, layer, x, input_len)
    h = g.op("Squeeze", [h, g.const(np.array([0]), "axis")])
    _head(g, build, module, h)
    graph = helper.make_graph(
        g.nodes,
        f"gru_int8_{build.form}_{build.h_mode}",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["batch", input_len, n_features])],
        [
            helper.make_tensor_value_info(
                OUTPUT, TensorProto.FLOAT, ["batch", module.horizon, module.n_targets]
            )
        ],
        g.inits,
    )
    return _checked(graph)


def _gru(module: nn.Module) -> nn.GRU:
    from torch import nn

    rnn = _rnn(module)
    if not isinstance(rnn, nn.GRU):
        raise RecurrentLoweringError(f"{type(rnn).__name__}: gru_int8 lowers GRUs only")
    return rnn


@dataclass
class _Builder:
    g: _Graph
    form: str
    h_mode: str
    scales: Scales | None

    def layer(self, k: int, layer: Any, x: str, steps: int) -> tuple[str, str]:
        """One layer over x [L, B, F_in]: (h of every step [L, B, H], last h [1, B, H])."""
        g, hidden = self.g, layer.w_h.shape[0]
        lo, hi = (self.scales.x_min[k], self.scales.x_max[k]) if self.scales else (0.0, 0.0)
        flat = g.op("Reshape", [x, g.const(np.array([-1, layer.w_x.shape[0]]), "flat")])
        proj = self.gemm(flat, layer.w_x, layer.b_x, f"w_x{k}", (lo, hi), residual=k == 0)
        proj = g.op("Reshape", [proj, g.const(np.array([steps, -1, 3 * hidden]), "steps")])
        p_rz, p_n = g.op(
            "Split", [proj, g.const(np.array([2 * hidden, hidden]), "split")], 2, axis=2
        )
        ones = g.const(np.ones(steps, np.int64), "steps")
        p_rz = g.op("Split", [p_rz, ones], steps, axis=0) if steps > 1 else [p_rz]
        p_n = g.op("Split", [p_n, ones], steps, axis=0) if steps > 1 else [p_n]
        u = self.recurrent_weight(k, layer)
        b_hn = g.const(layer.b_h[None, None, 2 * hidden :], f"b_hn{k}")
        two = g.const(np.array([2 * hidden, hidden]), "split")
        h, outs = None, []
        for t in range(steps):
            if h is None:
                r, z = g.op("Split", [g.op("Sigmoid", [p_rz[t]])], 2, axis=2)
                n = g.op("Tanh", [g.op("Add", [p_n[t], g.op("Mul", [r, b_hn])])])
                h = g.op("Sub", [n, g.op("Mul", [z, n])])
            else:
                q_rz, q_n = g.op("Split", [u(h), two], 2, axis=2)
                rz = g.op("Sigmoid", [g.op("Add", [p_rz[t], q_rz])])
                r, z = g.op("Split", [rz], 2, axis=2)
                n = g.op("Tanh", [g.op("Add", [p_n[t], g.op("Mul", [r, q_n])])])
                h = g.op("Add", [n, g.op("Mul", [z, g.op("Sub", [h, n])])])
            outs.append(h)
        return (g.op("Concat", outs, axis=0) if steps > 1 else outs[0]), h

    def recurrent_weight(self, k: int, layer: Any):
        """A function h [1, B, H] -> h @ U + b_h [1, B, 3H], its constants stored once."""
        g = self.g
        q, w_scale = int8_columns(layer.w_h)
        b_h = g.const(layer.b_h, f"b_h{k}")
        if self.h_mode == "dynamic":
            w = g.const(q, f"w_h{k}")
            w_scale_c = g.const(w_scale, f"w_h{k}_scale")

            def dynamic(h: str) -> str:
                h_q, h_s, h_z = g.op("DynamicQuantizeLinear", [h], 3)
                acc = g.op("MatMulInteger", [h_q, w, h_z])
                both = g.op("Mul", [h_s, w_scale_c])
                return g.op("Add", [g.op("Mul", [g.op("Cast", [acc], to=1), both]), b_h])

            return dynamic
        h_scale = 1 / 127 if self.h_mode == "fixed" else self.scales.h_max[k] / 127
        if self.form == "qdq":
            dq_w = self._weight_dq(q, w_scale, f"w_h{k}")
            qdq = self._qdq_const(h_scale, 128, f"h{k}")
            return lambda h: g.op("Add", [g.op("MatMul", [qdq(h), dq_w]), b_h])
        w = g.const(q, f"w_h{k}")
        zero = g.const(np.array(128, np.uint8), f"h{k}_zero")
        scale = g.const(np.array(h_scale, np.float32), f"h{k}_scale")
        out_scale = g.const((w_scale * np.float32(h_scale)).astype(np.float32), f"w_h{k}_scale")

        def static(h: str) -> str:
            acc = g.op("MatMulInteger", [g.op("QuantizeLinear", [h, scale, zero]), w, zero])
            return g.op("Add", [g.op("Mul", [g.op("Cast", [acc], to=1), out_scale]), b_h])

        return static

    def gemm(
        self, x: str, w: np.ndarray, bias: np.ndarray, name: str, rng: tuple, residual=False
    ) -> str:
        """x [M, K] @ w [K, N] + bias with int8 w: dynamic x (integer form; ``residual``: x and
        its quantization residual as two int8 GEMMs) or static QDQ x (qdq form)."""
        g = self.g
        q, w_scale = int8_columns(w)
        b = g.const(bias, f"b_{name}")
        if self.form == "qdq":
            lo, hi = min(rng[0], 0.0), max(rng[1], 0.0)
            scale = max(hi - lo, 1e-8) / 255
            zero = int(np.clip(np.rint(-lo / scale), 0, 255))
            xq = self._qdq_const(scale, zero, name)(x)
            return g.op("Add", [g.op("MatMul", [xq, self._weight_dq(q, w_scale, name)]), b])
        w_q, w_s = g.const(q, name), g.const(w_scale, f"{name}_scale")
        y, x_dq = self._dynamic(x, w_q, w_s, dequantized=residual)
        if residual:  # the window's quantization error, quantized again: ~16-bit activations
            y = g.op("Add", [y, self._dynamic(g.op("Sub", [x, x_dq]), w_q, w_s)[0]])
        return g.op("Add", [y, b])

    def _dynamic(self, x: str, w_q: str, w_s: str, dequantized: bool = False) -> tuple:
        """(x @ w as dynamic int8, x's int8 form dequantized or None)."""
        g = self.g
        x_q, x_scale, x_zero = g.op("DynamicQuantizeLinear", [x], 3)
        acc = g.op("MatMulInteger", [x_q, w_q, x_zero])
        y = g.op("Mul", [g.op("Cast", [acc], to=1), g.op("Mul", [x_scale, w_s])])
        x_dq = g.op("DequantizeLinear", [x_q, x_scale, x_zero]) if dequantized else None
        return y, x_dq

    def _weight_dq(self, q: np.ndarray, w_scale: np.ndarray, name: str) -> str:
        g = self.g
        zero = g.const(np.zeros(q.shape[1], np.int8), f"{name}_zero")
        return g.op(
            "DequantizeLinear", [g.const(q, name), g.const(w_scale, f"{name}_scale"), zero], axis=1
        )

    def _qdq_const(self, scale: float, zero: int, name: str):
        g = self.g
        s = g.const(np.array(scale, np.float32), f"{name}_xscale")
        z = g.const(np.array(zero, np.uint8), f"{name}_xzero")
        return lambda x: g.op("DequantizeLinear", [g.op("QuantizeLinear", [x, s, z]), s, z])


def _head(g: _Graph, build: _Builder, module: nn.Module, h: str) -> None:
    """forecast = head(h) as [B, H, F_out], int8 GEMM, plus the residual last reading."""
    import torch

    with torch.no_grad():
        weight = module.head.weight.double().numpy().T.astype(np.float32)
        bias = module.head.bias.double().numpy().astype(np.float32)
    k = len(build.scales.h_max) - 1 if build.scales else 0
    rng = (-build.scales.h_max[k], build.scales.h_max[k]) if build.scales else (-1.0, 1.0)
    y = build.gemm(h, weight, bias, "w_head", rng)
    shape = g.const(np.array([-1, module.horizon, module.n_targets]), "shape")
    y = g.op("Reshape", [y, shape])
    if not module.residual:
        g.nodes[-1].output[0] = OUTPUT
        return
    last = g.op("Gather", [INPUT, g.const(np.array(module.input_len - 1), "last")], axis=1)
    if not module._all_features:
        index = module.target_index.numpy().astype(np.int64)
        last = g.op("Gather", [last, g.const(index, "targets")], axis=1)
    last = g.op("Unsqueeze", [last, g.const(np.array([1]), "axis")])
    g.nodes.append(_node("Add", [y, last], [OUTPUT]))
