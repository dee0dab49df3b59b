"""Lower the exported fp32 graph to the build precision, with one record per compute layer.

fp32: as exported. fp16: every node in fp16 except the ops fp16.FP32_OPS keeps in fp32.
int8: explicit Q/DQ on Conv/Gemm/MatMul (qdq.py); LSTM/GRU in fp16 (TensorRT's RNN layers take
no Q/DQ); everything else as exported (the device's FP16 builder flag may still run it in fp16).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from .fp16 import to_fp16
from .qdq import calibrate, insert_qdq, plan_qdq

RNN_OPS = ("LSTM", "GRU")
RNN_INT8_REASON = (
    "fp16: TensorRT's RNN layers take no Q/DQ; an int8 rewrite into MatMul ops was not "
    "implemented, so nothing measured shows it would help"
)
FP16_REASON = "fp16 weights and compute (input and output stay float32)"


@dataclass(frozen=True)
class Lowered:
    """The lowered graph, its layer records and the lowering's settings for the recipe."""

    proto: onnx.ModelProto
    layers: list[dict[str, Any]]
    lowering: dict[str, Any]


def lower(
    exported: onnx.ModelProto,
    module: Any,
    precision: str,
    windows: np.ndarray | None,
    max_windows: int,
) -> Lowered:
    """Lower ``exported`` to ``precision``; see the module docstring."""
    from edgecomp.targets.onnx.export import EXPORTER, SIMPLIFIER
    from edgecomp.targets.onnx.layers import layer_records

    base = layer_records(exported, exported, module, precision="fp32")
    lowering: dict[str, Any] = {"exporter": EXPORTER, "simplifier": SIMPLIFIER}
    if precision == "fp32":
        return Lowered(exported, [_record(r, "fp32", None, "fp32 build") for r in base], lowering)
    if precision == "fp16":
        proto, kept = to_fp16(exported)
        layers = [_fp16_record(r, kept) for r in base]
        return Lowered(proto, layers, lowering | {"fp16": {"kept_fp32": kept}})
    return _int8(exported, base, windows, max_windows, lowering)


def spread(windows: np.ndarray, limit: int) -> np.ndarray:
    """Up to ``limit`` of ``windows``, spread evenly over them."""
    index = np.unique(np.linspace(0, len(windows) - 1, num=min(limit, len(windows))).round())
    return windows[index.astype(int)]


def _int8(
    exported: onnx.ModelProto,
    base: list[dict[str, Any]],
    windows: np.ndarray,
    max_windows: int,
    lowering: dict[str, Any],
) -> Lowered:
    plan = plan_qdq(exported.graph)
    calibration = spread(windows, max_windows)
    tensors = plan.activations(exported.graph)
    amax = calibrate(exported, tensors, calibration)
    rnn = [node.name for node in exported.graph.node if node.op_type in RNN_OPS]
    proto, kept = to_fp16(insert_qdq(exported, plan, amax), only=rnn)
    how = (
        f"explicit Q/DQ: int8 weights, symmetric per output channel; activation scale per "
        f"tensor, max |x| over {len(calibration)} calibration windows; TensorRT fuses the DQ"
    )
    layers = []
    for r in base:
        if r["node"] in plan.axes:
            layers.append(_record(r, "int8", "explicit-qdq", how))
        elif r["op_type"] in RNN_OPS and r["node"] not in kept:
            layers.append(_record(r, "fp16", "fp16", RNN_INT8_REASON))
        else:
            why = kept.get(r["node"]) or plan.skipped.get(r["node"], "left in float")
            layers.append(_record(r, "fp32", None, why))
    lowering |= {
        "quantization": {
            "tool": "edgecomp own ONNX code (targets/tensorrt/qdq.py)",
            "format": "QDQ",
            "weights": "int8 symmetric per-channel",
            "activations": "int8 symmetric per-tensor, max calibration",
            "ops": sorted({n.op_type for n in exported.graph.node if n.name in plan.axes}),
            "activation_amax": {k: round(v, 6) for k, v in amax.items()},
        },
        "n_calibration_windows": len(calibration),
    }
    return Lowered(proto, layers, lowering)


def _fp16_record(record: dict[str, Any], kept: dict[str, str]) -> dict[str, Any]:
    if record["node"] in kept:
        return _record(record, "fp32", None, kept[record["node"]])
    return _record(record, "fp16", "fp16", FP16_REASON)


def _record(
    record: dict[str, Any], precision: str, method: str | None, reason: str
) -> dict[str, Any]:
    return {**record, "precision": precision, "method": method, "reason": reason}
