"""Per-layer records, read off the final graph: what each compute node became, and why."""

from __future__ import annotations

from collections import Counter
from typing import Any

import onnx
import torch

from edgecomp.targets.base import TargetError

from .quantize import FLOAT_OPS, STORAGE_METHOD, STORAGE_NOTE

COMPUTE_OPS = ("LSTM", "GRU", "Conv", "Gemm", "MatMul")
_RNN_OPS = ("LSTM", "GRU")
_QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
_DYNAMIC_KERNELS = ("DynamicQuantizeLSTM", "MatMulInteger")  # ORT's dynamic int8 kernels
_MATMUL_KERNELS = ("MatMul", "MatMulInteger", "MatMulNBits")
_BETWEEN = (*_QDQ_OPS, "Mul", "Cast")  # what may sit between a MatMul kernel and the Gemm's Add


def layer_records(
    exported: onnx.ModelProto,
    final: onnx.ModelProto,
    module: torch.nn.Module,
    *,
    precision: str,
    static_reason: str = "",
    kept_float: dict[str, str] | None = None,
    method_reasons: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """One record per LSTM/GRU/Conv/Gemm/MatMul node of ``exported``, as found in ``final``.

    Args:
        exported: The fp32 graph as exported and simplified.
        final: The graph written to the artifact (``exported`` itself for fp32).
        module: The torch module, to name records after its submodules.
        precision: The build precision.
        static_reason: Reason recorded on layers found under static QDQ.
        kept_float: Names of ``final`` nodes left in float on purpose -> why.
        method_reasons: Reason recorded per quantization method (e.g. "int4-matmulnbits").

    Returns:
        Records ``{"name", "op_type", "precision", "method", "reason", "node"}``; ``node`` is the
        name of the node in ``final`` that computes the layer.
    """
    nodes = [node for node in exported.graph.node if node.op_type in COMPUTE_OPS]
    producers = {tensor: node for node in final.graph.node for tensor in node.output}
    by_name = {node.name: node for node in final.graph.node if node.name}
    int4 = {i.name for i in final.graph.initializer if i.data_type == onnx.TensorProto.INT4}
    int8 = {i.name for i in final.graph.initializer if i.data_type == onnx.TensorProto.INT8}
    records = []
    for node, name in zip(nodes, _layer_names(nodes, module), strict=True):
        done = _final_node(node, producers, by_name, name)
        layer_precision, method = _classify(done, producers, int4, int8)
        reason = _reason(node.op_type, done.op_type, method, precision, static_reason)
        reason = (method_reasons or {}).get(method, reason)
        if method is None and done.name in (kept_float or {}):
            reason = kept_float[done.name]
        records.append(
            {
                "name": name,
                "op_type": node.op_type,
                "precision": layer_precision,
                "method": method,
                "reason": reason,
                "node": done.name,
            }
        )
    return records


def _final_node(
    node: onnx.NodeProto,
    producers: dict[str, onnx.NodeProto],
    by_name: dict[str, onnx.NodeProto],
    name: str,
) -> onnx.NodeProto:
    """The node of the final graph computing ``node``'s output, else the node of the same name.

    The name is the fallback for a node whose Relu ORT folded away (the node now writes the
    Relu's output). ORT's dynamic quantizer rewrites Gemm as MatMul -> Add, and the static step
    may then put a Q/DQ pair between the two: the MatMul is the layer.
    """
    done = producers.get(node.output[0]) or by_name.get(node.name)
    if done is not None and node.op_type == "Gemm" and done.op_type == "Add":
        found = (_skip_qdq(t, producers) for t in done.input)
        done = next((n for n in found if n is not None and n.op_type in _MATMUL_KERNELS), None)
    if done is None:
        raise TargetError(
            f"onnx: layer '{name}' ({node.op_type} node '{node.name}') "
            "is missing from the final graph"
        )
    return done


def _skip_qdq(tensor: str, producers: dict[str, onnx.NodeProto]) -> onnx.NodeProto | None:
    node = producers.get(tensor)
    while node is not None and node.op_type in _BETWEEN:
        node = next((producers[t] for t in node.input if t in producers), None)
    return node


def _classify(
    node: onnx.NodeProto, producers: dict[str, onnx.NodeProto], int4: set[str], int8: set[str]
) -> tuple[str, str | None]:
    """(compute precision, method). Weight-only int8 storage computes in float: "fp32"."""
    if node.op_type in _DYNAMIC_KERNELS:
        return "int8", "dynamic"
    if node.op_type == "MatMulNBits":
        return "int4", "int4-matmulnbits"
    weight = _skip_casts(node.input[1], producers) if len(node.input) > 1 else None
    if weight is not None and weight.op_type == "DequantizeLinear" and weight.input[0] in int4:
        return "int4", "int4-storage"
    if _stored_int8(weight, producers, int8):
        return "fp32", STORAGE_METHOD
    sources = [producers.get(tensor) for tensor in node.input[:2]]
    if all(src is not None and src.op_type == "DequantizeLinear" for src in sources):
        return "int8", "static-qdq"
    return "fp32", None


def _stored_int8(
    weight: onnx.NodeProto | None, producers: dict[str, onnx.NodeProto], int8: set[str]
) -> bool:
    """The weight is an int8 initializer behind Cast -> Mul (quantize.store_int8_weights)."""
    if weight is None or weight.op_type != "Mul":
        return False
    cast = producers.get(weight.input[0])
    return cast is not None and cast.op_type == "Cast" and cast.input[0] in int8


def _skip_casts(tensor: str, producers: dict[str, onnx.NodeProto]) -> onnx.NodeProto | None:
    node = producers.get(tensor)
    while node is not None and node.op_type in ("Cast", "Reshape"):  # Reshape: group-wise int4
        node = producers.get(node.input[0])
    return node


def layer_names(exported: onnx.ModelProto, module: torch.nn.Module) -> dict[str, str]:
    """Node name -> layer name (torch module path) for each compute node of ``exported``."""
    nodes = [node for node in exported.graph.node if node.op_type in COMPUTE_OPS]
    return dict(zip((n.name for n in nodes), _layer_names(nodes, module), strict=True))


def _reason(op: str, kernel: str, method: str | None, precision: str, static_reason: str) -> str:
    if precision == "fp32":
        return "fp32 build"
    if method == "dynamic":
        return f"dynamic int8: {op} weights int8, activations quantized at run time ({kernel})"
    if method == "static-qdq":
        return static_reason
    if method == STORAGE_METHOD:
        return STORAGE_NOTE
    return FLOAT_OPS.get(op, f"left in float by ONNX Runtime's quantizer ({kernel})")


def _layer_names(nodes: list[onnx.NodeProto], module: torch.nn.Module) -> list[str]:
    """Torch module names; a module behind several nodes gets ``.l<k>`` (RNN) or ``[k]``."""
    modules = dict(module.named_modules()) if hasattr(module, "named_modules") else {}
    bases = [_module_of(node, modules) for node in nodes]
    totals, seen = Counter(bases), Counter()
    names = []
    for node, base in zip(nodes, bases, strict=True):
        index = seen[base]
        seen[base] += 1
        if totals[base] == 1:
            names.append(base)
        else:
            names.append(f"{base}.l{index}" if node.op_type in _RNN_OPS else f"{base}[{index}]")
    return names


def _module_of(node: onnx.NodeProto, modules: dict[str, torch.nn.Module]) -> str:
    for tensor in node.input[1:]:
        owner = tensor.removesuffix(".weight")
        if owner != tensor and owner in modules:
            return owner
    scope = _scope_path(node.name)
    return scope if scope in modules and scope else node.name.strip("/") or node.op_type


def _scope_path(node_name: str) -> str:
    """'/blocks/blocks.0/conv/Conv' -> 'blocks.0.conv' (exporter scopes are partly qualified)."""
    path = ""
    for part in node_name.strip("/").split("/")[:-1]:
        path = part if not path or part.startswith(f"{path}.") else f"{path}.{part}"
    return path
