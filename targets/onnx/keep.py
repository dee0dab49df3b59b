"""The generic lowering options ``keep_float`` and ``keep_int8``: which layers stay in float (or,
in an int4 build, go int8 instead of int4), and why.

Entries are "input" / "output" (the graph's edges, see boundary.py), layer names (torch module
paths as in the manifest's ``layers``), fnmatch patterns over them (``blocks.0.*``) or ONNX op
types (``Conv``). An entry that matches no layer is an error naming the option and the known
layers.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any

import onnx
import torch

from edgecomp.targets.base import TargetError, layer_list

from .boundary import REASONS, boundary_layers


def kept_nodes(
    exported: onnx.ModelProto,
    module: torch.nn.Module,
    entries: tuple[str, ...],
    *,
    with_edges: bool,
    option: str = "keep_float",
) -> dict[str, str]:
    """Node name of ``exported`` -> why it stays float (``option`` "keep_int8": why it goes
    int8), for every entry of ``entries``.

    Edge entries are resolved here only when ``with_edges`` (int8 resolves them itself, per op
    rule); they are never an error.
    """
    from .layers import COMPUTE_OPS, layer_names  # layers -> quantize -> this module

    names = layer_names(exported, module)
    types = {node.name: node.op_type for node in exported.graph.node}
    what = "int8" if option == "keep_int8" else "float"
    kept: dict[str, str] = {}
    for entry in entries:
        if entry in REASONS:
            if with_edges:
                why = {entry: f"{entry} layer kept in int8 (option keep_int8: {entry!r})"}
                reasons = why if option == "keep_int8" else None
                kept |= boundary_layers(exported, (entry,), COMPUTE_OPS, reasons)
            continue
        found = [n for n, layer in names.items() if _matches(entry, layer, types[n])]
        if not found:
            raise TargetError(
                f"onnx: profile option '{option}' entry {entry!r} in {list(entries)!r} matches "
                f"no layer; layers: {sorted(set(names.values()))}"
            )
        kept |= {n: kept.get(n, f"kept in {what} (option {option}: {entry!r})") for n in found}
    return kept


def option_entries(options: dict[str, Any], option: str) -> tuple[str, ...]:
    """The list option ``option`` ("keep_float", "keep_int8"), checked to be non-empty strings."""
    return layer_list(options, option, "onnx: profile option", sorted(REASONS))


def _matches(pattern: str, layer: str, op_type: str) -> bool:
    base = re.sub(r"(\[\d+\]|\.l\d+)$", "", layer)  # "head[1]", "rnn.l0" match "head", "rnn"
    return pattern in (layer, base, op_type) or any(
        fnmatch.fnmatchcase(name, pattern) for name in (layer, base, op_type)
    )
