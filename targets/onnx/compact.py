"""Graph hygiene before writing: drop what runtimes do not read, so the file is mostly weights.

On a 25 k-parameter int8 TCN the graph structure (Q/DQ nodes and their long generated names) is
about a fifth of the file; this keeps compute-node names (they carry the torch module path) and
weight initializer names, and gives the rest short names derived from them (naming.py).
"""

from __future__ import annotations

import onnx
from onnx import numpy_helper

from .naming import name_graph, rename_tensors


def shrink(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Drop metadata, value_info, doc strings and unused opset imports, merge identical
    initializers, name tensors after the nodes making them and Q/DQ nodes after the tensor they
    quantize (``naming.name_graph``; in place).

    Node names other than Q/DQ ones, graph inputs/outputs and weight initializers keep their names,
    so the result has the same structure and per-layer node names as ``proto``.
    """
    graph = proto.graph
    del graph.value_info[:]
    del proto.metadata_props[:]
    proto.doc_string = graph.doc_string = ""
    used = {node.domain for node in graph.node} | {"", "ai.onnx"}
    kept = [entry for entry in proto.opset_import if entry.domain in used]
    del proto.opset_import[:]
    proto.opset_import.extend(kept)
    _dedupe_initializers(graph)
    name_graph(graph)
    return proto


def _dedupe_initializers(graph: onnx.GraphProto) -> None:
    first: dict[tuple[int, tuple[int, ...], bytes], str] = {}
    alias: dict[str, str] = {}
    kept = []
    for init in graph.initializer:
        key = (init.data_type, tuple(init.dims), numpy_helper.to_array(init).tobytes())
        if key in first:
            alias[init.name] = first[key]
        else:
            first[key] = init.name
            kept.append(init)
    del graph.initializer[:]
    graph.initializer.extend(kept)
    rename_tensors(graph, alias)
