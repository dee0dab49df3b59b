"""Static check of an ONNX graph against what the device's TensorRT parser accepts.

The operator lists and opset limits per TensorRT version are data (support_matrix.json, from the
onnx-tensorrt support matrix; sources in COMPATIBILITY.md), so a graph the device would refuse
fails the build on the host, naming the node, before anything is packaged.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from edgecomp.targets.base import TargetError

MATRIX_FILE = Path(__file__).with_name("support_matrix.json")
_DEFAULT_DOMAINS = ("", "ai.onnx")
_ZERO_POINT_OPS = ("QuantizeLinear", "DequantizeLinear")


@cache
def support_matrix() -> dict[str, Any]:
    """TensorRT version -> {"max_opset", "source", "ops"} (support_matrix.json)."""
    return json.loads(MATRIX_FILE.read_text())["versions"]


def check_graph(proto: onnx.ModelProto, tensorrt: str, where: str) -> dict[str, Any]:
    """Refuse a graph TensorRT ``tensorrt`` would not parse: opset, domain, operator, zero point.

    Args:
        proto: The graph to ship.
        tensorrt: TensorRT version of the device, a key of support_matrix.json (e.g. "10.3").
        where: Profile name, for the messages.

    Returns:
        What was checked, for the manifest's recipe.

    Raises:
        TargetError: Names the node (or the opset) and the TensorRT version that refuses it.
    """
    matrix = support_matrix()
    if tensorrt not in matrix:
        raise TargetError(
            f"tensorrt: profile '{where}' asks for TensorRT {tensorrt!r}, which the support "
            f"matrix does not list. Available: {sorted(matrix)}"
        )
    entry = matrix[tensorrt]
    opset = _default_opset(proto)
    if opset > entry["max_opset"]:
        raise TargetError(
            f"tensorrt: the graph uses ONNX opset {opset}; TensorRT {tensorrt} on '{where}' "
            f"reads up to opset {entry['max_opset']} (--option opset={entry['max_opset']})"
        )
    allowed = set(entry["ops"])
    inits = {init.name: init for init in proto.graph.initializer}
    for index, node in enumerate(proto.graph.node):
        _check_node(node, index, allowed, inits, f"TensorRT {tensorrt} on '{where}'")
    return {"tensorrt": tensorrt, "max_opset": entry["max_opset"], "opset": opset, "ok": True}


def _check_node(
    node: onnx.NodeProto,
    index: int,
    allowed: set[str],
    inits: dict[str, onnx.TensorProto],
    device: str,
) -> None:
    label = f"node '{node.name or f'#{index}'}' ({node.op_type})"
    if node.domain not in _DEFAULT_DOMAINS:
        raise TargetError(
            f"tensorrt: {label} is in domain '{node.domain}', which {device} does not parse "
            "(no plugins are shipped)"
        )
    if node.op_type not in allowed:
        raise TargetError(
            f"tensorrt: {label}: {device} has no ONNX parser support for {node.op_type} "
            "(see targets/tensorrt/COMPATIBILITY.md)"
        )
    if node.op_type in _ZERO_POINT_OPS and len(node.input) > 2:
        zero = inits.get(node.input[2])
        if zero is None or np.any(numpy_helper.to_array(zero)):
            raise TargetError(f"tensorrt: {label}: {device} needs a constant zero point of 0")


def _default_opset(proto: onnx.ModelProto) -> int:
    versions = [o.version for o in proto.opset_import if o.domain in _DEFAULT_DOMAINS]
    return max(versions, default=0)
