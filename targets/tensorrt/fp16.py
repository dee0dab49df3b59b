"""fp16 for TensorRT: float tensors of chosen nodes become fp16, with Casts where fp32 meets fp16.

``x -> N(W) -> y``  becomes  ``x -> Cast(fp16) -> N(W16) -> y16 [-> Cast(fp32)]``: initializers of
converted nodes are stored in fp16 (half the bytes), the graph's input and output stay float32, and
a Cast sits only where a converted node meets an fp32 one. Nodes whose ops lose too much in fp16
(reductions, exp/log/pow, normalisations), whose float weights do not fit in fp16, or whose type is
set by an attribute (Cast, Constant...) stay fp32; ``to_fp16`` says which and why.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FP16_MAX = float(np.finfo(np.float16).max)  # 65504
FP32_OPS = {
    **dict.fromkeys(
        ("ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL2", "ReduceLogSumExp", "Softmax"),
        "reduction: fp16 accumulation loses precision or overflows; kept fp32",
    ),
    **dict.fromkeys(
        ("Exp", "Log", "Pow", "Sqrt", "Reciprocal", "Erf"),
        "exp/log/pow overflow or lose precision in fp16; kept fp32",
    ),
    **dict.fromkeys(
        ("LayerNormalization", "BatchNormalization", "InstanceNormalization"),
        "normalisation statistics are unsafe in fp16; kept fp32",
    ),
}
_TYPED_BY_ATTRIBUTE = ("Cast", "CastLike", "Constant", "ConstantOfShape", "EyeLike", "RandomNormal")
_TYPED_REASON = "output type set by an attribute; kept fp32 (Casts at its edges)"


def to_fp16(
    proto: onnx.ModelProto, only: Iterable[str] | None = None
) -> tuple[onnx.ModelProto, dict[str, str]]:
    """Convert the float tensors of ``only`` (node names; None: every node) to fp16.

    Returns:
        The new model (``proto`` is not changed) and the selected nodes that stayed fp32 -> why.
    """
    model = onnx.shape_inference.infer_shapes(proto, strict_mode=True)
    graph = model.graph
    floats = _float_tensors(graph)
    selected = None if only is None else set(only)
    inits = {init.name: init for init in graph.initializer}
    kept = {}
    half = set()  # indices of the nodes to convert (protobuf wrappers have no stable id())
    for index, node in enumerate(graph.node):
        if selected is not None and node.name not in selected:
            continue
        why = _why_fp32(node, inits)
        if why:
            kept[node.name] = why
        else:
            half.add(index)
    _rewrite(graph, half, floats, inits)
    del graph.value_info[:]
    return onnx.shape_inference.infer_shapes(model, strict_mode=True), kept


def _why_fp32(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]) -> str | None:
    if node.op_type in FP32_OPS:
        return FP32_OPS[node.op_type]
    if node.op_type in _TYPED_BY_ATTRIBUTE:
        return _TYPED_REASON
    for name in node.input:
        init = inits.get(name)
        if init is None or init.data_type != TensorProto.FLOAT:
            continue
        peak = float(np.abs(numpy_helper.to_array(init)).max(initial=0.0))
        if peak > FP16_MAX:
            return f"weight '{name}' reaches {peak:.3g}, beyond fp16's {FP16_MAX:g}; kept fp32"
    return None


def _float_tensors(graph: onnx.GraphProto) -> set[str]:
    values = [*graph.input, *graph.output, *graph.value_info]
    floats = {v.name for v in values if v.type.tensor_type.elem_type == TensorProto.FLOAT}
    return floats | {i.name for i in graph.initializer if i.data_type == TensorProto.FLOAT}


def _rewrite(
    graph: onnx.GraphProto,
    half_nodes: set[int],
    floats: set[str],
    inits: dict[str, onnx.TensorProto],
) -> None:
    """Retype the converted nodes' float tensors; add Casts at fp16/fp32 boundaries."""
    consumers: dict[str, list[int]] = {}
    for index, node in enumerate(graph.node):
        for name in node.input:
            consumers.setdefault(name, []).append(index)
    half: set[str] = set()  # float tensors now fp16
    casts: dict[tuple[str, int], str] = {}
    nodes: list[onnx.NodeProto] = []
    for index, node in enumerate(graph.node):
        is_half = index in half_nodes
        for i, name in enumerate(node.input):
            if name not in floats or (name in half) == is_half:
                continue
            if is_half and name in inits and all(c in half_nodes for c in consumers[name]):
                _to_half(inits[name])
                half.add(name)
            else:
                node.input[i] = _cast(
                    name, TensorProto.FLOAT16 if is_half else TensorProto.FLOAT, casts, nodes
                )
        nodes.append(node)
        if is_half:
            half.update(name for name in node.output if name in floats)
    nodes += _cast_outputs(graph, half)
    del graph.node[:]
    graph.node.extend(nodes)


def _cast(name: str, to: int, casts: dict[tuple[str, int], str], nodes: list) -> str:
    if (name, to) not in casts:
        out = f"{name}_{'fp16' if to == TensorProto.FLOAT16 else 'fp32'}"
        nodes.append(helper.make_node("Cast", [name], [out], name=f"{out}_cast", to=to))
        casts[(name, to)] = out
    return casts[(name, to)]


def _cast_outputs(graph: onnx.GraphProto, half: set[str]) -> list[onnx.NodeProto]:
    """Graph outputs computed in fp16: rename the fp16 tensor, Cast it back under the old name."""
    added = []
    for value in graph.output:
        if value.name not in half:
            continue
        inner = f"{value.name}_fp16"
        for node in graph.node:
            node.input[:] = [inner if t == value.name else t for t in node.input]
            node.output[:] = [inner if t == value.name else t for t in node.output]
        added.append(
            helper.make_node("Cast", [inner], [value.name], name=f"{value.name}_cast", to=1)
        )
    return added


def _to_half(init: onnx.TensorProto) -> None:
    array = numpy_helper.to_array(init).astype(np.float16)
    init.CopyFrom(numpy_helper.from_array(array, init.name))
