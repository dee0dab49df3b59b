"""Per-layer records, read off the final .tflite graph: what each compute op became, and why."""

from __future__ import annotations

from collections import Counter
from typing import Any

from edgecomp.targets.base import TargetError

from .graph import Graph, Layer

_INT_BITS = {"INT8": "int8", "INT4": "int4", "INT16": "int16"}
_METHOD_REASONS = {
    "static": "full integer: int8 weights ({per}), int8 activations with min-max ranges "
    "over {n} calibration windows",
    "dynamic": "dynamic range: {bits} weights ({per}), activations quantized at run time "
    "by the kernel",
    "weight-only": "{bits} weights ({per}), dequantized to float before the op",
}
_OUTCOME = ("op_type", "precision", "method", "reason")
# what a layer must become at each precision (precision, method)
EXPECTED = {
    "int8": ("int8", "static"),
    "int8-dynamic": ("int8", "dynamic"),
    "int4": ("int4", "dynamic"),
}


def layer_records(
    final: Graph,
    layers: list[Layer],
    *,
    precision: str,
    kept: dict[str, str],
    n_windows: int = 0,
    granularity: str = "channelwise",
    groups: dict[str, int] | None = None,
    int8: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """One record per compute layer of the fp32 graph, as found in ``final``.

    Args:
        final: The graph written to the artifact.
        layers: The compute layers of the fp32 graph (names and scopes).
        precision: The build precision.
        kept: Layer name -> why it was kept in float on purpose.
        n_windows: Number of calibration windows (for the static reason).
        granularity: Weight granularity (for the reasons).
        groups: Layer name -> int4 group size (inputs per scale) where weights are group-wise.
        int8: int4 builds: layer name -> why it has dynamic int8 weights (option keep_int8).

    Returns:
        Records ``{"name", "op_type", "precision", "method", "reason", "ops"}``: consecutive
        ops of one module with the same outcome (an unrolled RNN's time steps) share a record,
        named ``rnn`` when it covers all of the module's ops, else ``rnn[3]`` or ``rnn[1..7]``;
        ``ops`` counts them.

    Raises:
        TargetError: A layer is missing from ``final``, or a layer that was not kept in float
            did not become what ``precision`` needs (names the layer and what it became).
    """
    per = {"channelwise": "per channel", "tensorwise": "per tensor"}[granularity]
    by_scope = {op.scope: op for op in final.ops}
    records = []
    for layer in layers:
        op = by_scope.get(layer.op.scope)
        if op is None or op.op_type != layer.op.op_type:
            raise TargetError(
                f"tflite: layer '{layer.name}' ({layer.op.op_type}) is missing from the "
                f"{precision} graph"
            )
        got = _classify(final, op)
        record = {"name": layer.name, "op_type": op.op_type, "precision": got[0]}
        reason = _reason(precision, got, layer.name, kept, (int8 or {}).get(layer.name))
        group = (groups or {}).get(layer.name)
        reason = reason.format(n=n_windows, bits=got[0], per=f"groups of {group}" if group else per)
        records.append(record | {"method": got[1], "reason": reason})
    return _merge(records)


def _merge(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consecutive records of one module with the same outcome -> one record with ``ops``."""
    groups: list[list[dict[str, Any]]] = []
    for record in records:
        last = groups[-1][-1] if groups else None
        if (
            last is not None
            and _base(last) == _base(record)
            and all(last[key] == record[key] for key in _OUTCOME)
        ):
            groups[-1].append(record)
        else:
            groups.append([record])
    totals = Counter(_base(record) for record in records)
    merged = []
    for group in groups:
        first, last = group[0]["name"], group[-1]["name"]
        name = first if len(group) == 1 else f"{_base(group[0])}[{_index(first)}..{_index(last)}]"
        if len(group) == totals[_base(group[0])]:
            name = _base(group[0])
        merged.append({**group[0], "name": name, "ops": len(group)})
    return merged


def _base(record: dict[str, Any]) -> str:
    return record["name"].split("[")[0]


def _index(name: str) -> str:
    return name.partition("[")[2].rstrip("]")


def _classify(graph: Graph, op: Any) -> tuple[str, str | None]:
    """(precision, method) of a compute op, from its activation and weight dtypes."""
    weight, unpacked = graph.weight(op)
    bits = _INT_BITS.get(weight)
    activation = graph.dtypes[op.inputs[0]]
    if bits is None:
        return "fp32", None
    if unpacked:
        return bits, "weight-only"
    if activation in _INT_BITS:
        return bits, "static"
    return bits, "dynamic"


def _reason(
    precision: str, got: tuple[str, str | None], name: str, kept: dict[str, str], int8: str | None
) -> str:
    """The record's reason; a template with {n}, {bits} and {per} for quantized layers (the
    reason of a ``keep_int8`` layer, ``int8``, is final)."""
    if precision == "fp32":
        return "fp32 build"
    if name in kept:
        if got[1] is not None:
            raise TargetError(
                f"tflite: layer '{name}' was to stay float (keep_float) but ai-edge-quantizer "
                f"made it {got[1]} {got[0]}"
            )
        return kept[name].replace("{", "{{").replace("}", "}}")
    if int8 is not None:
        if got != EXPECTED["int8-dynamic"]:
            raise TargetError(
                f"tflite: layer '{name}' was to have int8 weights (keep_int8) but became "
                f"{got[1] or 'float'} {got[0]} in ai-edge-quantizer's output"
            )
        return int8.replace("{", "{{").replace("}", "}}")
    if got != EXPECTED[precision]:
        became = "float" if got[1] is None else f"{got[1]} {got[0]}"
        raise TargetError(
            f"tflite: precision '{precision}' cannot be produced: layer '{name}' became "
            f"{became} in ai-edge-quantizer's output (needs {EXPECTED[precision][1]} "
            f"{EXPECTED[precision][0]}); keep it in float with option keep_float: ['{name}']"
        )
    return _METHOD_REASONS[got[1]]
