"""The layers at the graph's edges: those reading the model input, and the one making the forecast.

Profiles may keep them in float (option ``keep_float``): heavy-tailed inputs make one per-tensor
int8 range coarse for every other feature; the output layer's rounding lands in the forecast.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import onnx

REASONS = {
    "input": "input layer kept in float (profile option keep_float): one per-tensor int8 range "
    "over all input features is coarse when some are heavy-tailed",
    "output": "output layer kept in float (profile option keep_float): its int8 rounding lands "
    "directly in the forecast",
}
_PASS_THROUGH = ("Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Pad")


def boundary_layers(
    proto: onnx.ModelProto,
    which: Iterable[str],
    ops: Iterable[str],
    reasons: dict[str, str] | None = None,
) -> dict[str, str]:
    """Names of the ``ops`` nodes at the edges listed in ``which`` ("input", "output") -> why.

    ``reasons`` overrides the default reason per edge.
    """
    ops, reasons = tuple(ops), {**REASONS, **(reasons or {})}
    kept: dict[str, str] = {}
    if "input" in which:
        kept |= dict.fromkeys(_input_layers(proto.graph, ops), reasons["input"])
    if "output" in which:
        kept |= dict.fromkeys(_output_layers(proto.graph, ops), reasons["output"])
    return kept


def heavy_tailed_input(
    windows: np.ndarray, max_ratio: float, features: list[str] | None = None
) -> str | None:
    """Why one per-tensor int8 range over the input would be too coarse, or None.

    Compares the widest feature's range over the calibration windows with the median feature's:
    above ``max_ratio`` most features would get only a few of the 256 int8 levels.
    """
    spans = np.abs(windows).max(axis=(0, 1))
    typical = float(np.median(spans))
    worst = int(spans.argmax())
    ratio = float(spans[worst]) / max(typical, 1e-12)
    if ratio <= max_ratio:
        return None
    name = features[worst] if features else f"feature {worst}"
    return (
        f"input layer kept in float: the calibration inputs reach {spans[worst]:.0f} std "
        f"('{name}'), {ratio:.0f}x the median feature's {typical:.1f}; one per-tensor int8 "
        f"range would leave most features about {256 / ratio:.0f} levels (limit: {max_ratio:g}x)"
    )


def _input_layers(graph: onnx.GraphProto, ops: tuple[str, ...]) -> list[str]:
    """``ops`` nodes fed by the graph input through layout-only and selecting nodes (a strided
    Slice of the window, as the TCN cone's skip reads it, still hands the layer raw input)."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for tensor in node.input:
            consumers.setdefault(tensor, []).append(node)
    found, frontier = [], [value.name for value in graph.input]
    while frontier:
        for node in consumers.get(frontier.pop(), []):
            if node.op_type in ops and node.name not in found:
                found.append(node.name)
            elif node.op_type in (*_PASS_THROUGH, "Slice", "Gather"):
                frontier.extend(node.output)
    return found


def _output_layers(graph: onnx.GraphProto, ops: tuple[str, ...]) -> list[str]:
    """The ``ops`` node behind each graph output, through layout-only nodes and an Add of a
    constant (bias) or of a view of the graph input (the residual's last observed values)."""
    producers = {t: node for node in graph.node for t in node.output}
    constants = {init.name for init in graph.initializer}
    inputs = {value.name for value in graph.input}
    found = []
    for value in graph.output:
        node = producers.get(value.name)
        while node is not None and node.op_type not in ops:
            side = {t for t in node.input if t in constants or _input_view(t, producers, inputs)}
            computed = [t for t in node.input if t in producers and t not in side]
            if len(computed) != 1 or not (node.op_type == "Add" or node.op_type in _PASS_THROUGH):
                node = None
            else:
                node = producers[computed[0]]
        if node is not None:
            found.append(node.name)
    return found


def _input_view(tensor: str, producers: dict[str, onnx.NodeProto], inputs: set[str]) -> bool:
    """True when ``tensor`` is the graph input seen through slicing and layout nodes only."""
    node = producers.get(tensor)
    while node is not None and node.op_type in (*_PASS_THROUGH, "Slice", "Gather"):
        if node.input[0] in inputs:
            return True
        node = producers.get(node.input[0])
    return False
