"""Explicit int8 Q/DQ for TensorRT, on the inputs of Conv/Gemm/MatMul (where TensorRT fuses them).

``Conv(x, W, b)``  becomes  ``Conv(DQ(Q(x, s_x)), DQ(W_int8, s_W, axis), b)``:
activations get one symmetric per-tensor scale ``s_x = max|x| / 127`` over the calibration
windows; weights are stored as int8 with one symmetric scale per output channel; zero points are
0 (TensorRT requires it) and biases stay float. TensorRT fuses ``DQ -> Conv/Gemm/MatMul`` into an
int8 kernel. Everything else is left as it is: ONNX Runtime runs the same graph on the host.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

QDQ_OPS = ("Conv", "Gemm", "MatMul")
INT8_MAX = 127  # symmetric, narrow range [-127, 127]: TensorRT's int8 convention
_MIN_SCALE = 1e-12
_CALIBRATION_BATCH = 64


@dataclass(frozen=True)
class QdqPlan:
    """Which Conv/Gemm/MatMul nodes get Q/DQ, which weight axis carries the channel scales,
    and why the others do not.

    Attributes:
        axes: Node name -> per-channel axis of its weight (input 1).
        skipped: Node name -> why it stays in float.
    """

    axes: dict[str, int]
    skipped: dict[str, str]

    def activations(self, graph: onnx.GraphProto) -> list[str]:
        """Activation tensors (input 0 of planned nodes) that need a calibrated range."""
        names = [node.input[0] for node in graph.node if node.name in self.axes]
        return list(dict.fromkeys(names))


def plan_qdq(graph: onnx.GraphProto) -> QdqPlan:
    """Find the Conv/Gemm/MatMul nodes whose weight is a constant that Q/DQ can cover."""
    inits = {init.name: init for init in graph.initializer}
    axes, skipped = {}, {}
    for node in graph.node:
        if node.op_type not in QDQ_OPS:
            continue
        weight = inits.get(node.input[1])
        if weight is None:
            skipped[node.name] = "weight input is not a constant: no per-channel scales; float"
            continue
        axis = _channel_axis(node, len(weight.dims))
        if axis is None:
            skipped[node.name] = f"{len(weight.dims)}-D MatMul weight: no channel axis; float"
        else:
            axes[node.name] = axis
    return QdqPlan(axes, skipped)


def calibrate(proto: onnx.ModelProto, tensors: list[str], windows: np.ndarray) -> dict[str, float]:
    """Largest magnitude of each of ``tensors`` over all ``windows`` (ONNX Runtime, CPU)."""
    import onnxruntime as ort

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    known = {v.name for v in model.graph.output}
    model.graph.output.extend(
        onnx.ValueInfoProto(name=name) for name in tensors if name not in known
    )
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    name = session.get_inputs()[0].name
    amax = np.zeros(len(tensors))
    for start in range(0, len(windows), _CALIBRATION_BATCH):
        outputs = session.run(tensors, {name: windows[start : start + _CALIBRATION_BATCH]})
        amax = np.maximum(amax, [float(np.abs(out).max(initial=0.0)) for out in outputs])
    return dict(zip(tensors, amax.tolist(), strict=True))


def insert_qdq(proto: onnx.ModelProto, plan: QdqPlan, amax: dict[str, float]) -> onnx.ModelProto:
    """Return a copy of ``proto`` with Q/DQ on the activations and int8 weights of ``plan``.

    Args:
        proto: The fp32 graph.
        plan: From ``plan_qdq`` on ``proto``.
        amax: Calibrated max |x| of each tensor in ``plan.activations``.
    """
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    nodes: list[onnx.NodeProto] = []
    done: dict[str, str] = {}
    weights: dict[str, str] = {}  # a weight shared by several nodes (a graph model's adjacency)
    for node in graph.node:
        if node.name in plan.axes:
            if node.input[0] not in done:
                done[node.input[0]] = _qdq_activation(graph, node.input[0], amax, nodes)
            node.input[0] = done[node.input[0]]
            if node.input[1] not in weights:  # is dequantized once
                init = inits[node.input[1]]
                weights[init.name] = _dq_weight(graph, init, plan.axes[node.name], nodes)
            node.input[1] = weights[node.input[1]]
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    _drop_unused_initializers(graph)
    del graph.value_info[:]
    return onnx.shape_inference.infer_shapes(model, strict_mode=True)


def _channel_axis(node: onnx.NodeProto, rank: int) -> int | None:
    """The weight axis indexing output channels: Conv 0, Gemm 0 (transB) or 1, MatMul 1."""
    if node.op_type == "Conv":
        return 0
    if rank != 2:
        return None
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    return 1


def _qdq_activation(
    graph: onnx.GraphProto, tensor: str, amax: dict[str, float], nodes: list
) -> str:
    scale = max(float(amax[tensor]), _MIN_SCALE) / INT8_MAX
    scale_name, zero_name = f"{tensor}_scale", f"{tensor}_zero_point"
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array(scale, dtype=np.float32), scale_name),
            numpy_helper.from_array(np.array(0, dtype=np.int8), zero_name),
        ]
    )
    quantized, restored = f"{tensor}_q", f"{tensor}_dq"
    nodes.append(
        helper.make_node(
            "QuantizeLinear", [tensor, scale_name, zero_name], [quantized], name=f"{tensor}_Q"
        )
    )
    nodes.append(
        helper.make_node(
            "DequantizeLinear", [quantized, scale_name, zero_name], [restored], name=f"{tensor}_DQ"
        )
    )
    return restored


def _dq_weight(graph: onnx.GraphProto, init: onnx.TensorProto, axis: int, nodes: list) -> str:
    weight = numpy_helper.to_array(init).astype(np.float32)
    reduce = tuple(i for i in range(weight.ndim) if i != axis)
    scale = np.maximum(np.abs(weight).max(axis=reduce), _MIN_SCALE) / INT8_MAX
    shape = [1] * weight.ndim
    shape[axis] = -1
    q = np.clip(np.rint(weight / scale.reshape(shape)), -INT8_MAX, INT8_MAX).astype(np.int8)
    name = init.name
    graph.initializer.extend(
        [
            numpy_helper.from_array(q, f"{name}_int8"),
            numpy_helper.from_array(scale.astype(np.float32), f"{name}_scale"),
            numpy_helper.from_array(np.zeros(len(scale), np.int8), f"{name}_zero_point"),
        ]
    )
    out = f"{name}_dq"
    nodes.append(
        helper.make_node(
            "DequantizeLinear",
            [f"{name}_int8", f"{name}_scale", f"{name}_zero_point"],
            [out],
            name=f"{name}_DQ",
            axis=axis,
        )
    )
    return out


def _drop_unused_initializers(graph: onnx.GraphProto) -> None:
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
