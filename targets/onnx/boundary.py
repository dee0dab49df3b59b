"""The layers at the graph's edges: those reading the model input, and the one making the forecast.

Profiles may keep them in float (option ``keep_float``): heavy-tailed inputs make one per-tensor
int8 range coarse for every other feature; the output layer's rounding lands in the forecast.
"""

from __future__ import annotations

from collections.abc import Iterable

import onnx

REASONS = {
    "input": "input layer kept in float (profile option keep_float): one per-tensor int8 range "
    "over all input features is coarse when some are heavy-tailed",
    "output": "output layer kept in float (profile option keep_float): its int8 rounding lands "
    "directly in the forecast",
}
_PASS_THROUGH = ("Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Pad")


def boundary_layers(
    proto: onnx.ModelProto, which: Iterable[str], ops: Iterable[str]
) -> dict[str, str]:
    """Names of the ``ops`` nodes at the edges listed in ``which`` ("input", "output") -> why."""
    ops = tuple(ops)
    kept: dict[str, str] = {}
    if "input" in which:
        kept |= dict.fromkeys(_input_layers(proto.graph, ops), REASONS["input"])
    if "output" in which:
        kept |= dict.fromkeys(_output_layers(proto.graph, ops), REASONS["output"])
    return kept


def _input_layers(graph: onnx.GraphProto, ops: tuple[str, ...]) -> list[str]:
    """``ops`` nodes fed by the graph input through layout-only nodes."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for tensor in node.input:
            consumers.setdefault(tensor, []).append(node)
    found, frontier = [], [value.name for value in graph.input]
    while frontier:
        for node in consumers.get(frontier.pop(), []):
            if node.op_type in ops and node.name not in found:
                found.append(node.name)
            elif node.op_type in _PASS_THROUGH:
                frontier.extend(node.output)
    return found


def _output_layers(graph: onnx.GraphProto, ops: tuple[str, ...]) -> list[str]:
    """The ``ops`` node behind each graph output, through layout-only nodes and a bias Add."""
    producers = {t: node for node in graph.node for t in node.output}
    constants = {init.name for init in graph.initializer}
    found = []
    for value in graph.output:
        node = producers.get(value.name)
        while node is not None and node.op_type not in ops:
            computed = [t for t in node.input if t in producers]
            bias_add = node.op_type == "Add" and set(node.input) - set(computed) <= constants
            if len(computed) != 1 or not (bias_add or node.op_type in _PASS_THROUGH):
                node = None
            else:
                node = producers[computed[0]]
        if node is not None:
            found.append(node.name)
    return found
