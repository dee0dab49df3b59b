"""Graph hygiene before writing: drop what runtimes do not read, so the file is mostly weights.

On a 25 k-parameter int8 TCN the graph structure (Q/DQ nodes and their long generated names) is
about a fifth of the file; this keeps compute-node names (they carry the torch module path) and
weight initializer names, and gives the rest short names derived from them (naming.py).
"""

from __future__ import annotations

import onnx
from onnx import helper, numpy_helper

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
    _drop_default_attributes(proto)
    name_graph(graph)
    return proto


# attributes whose ONNX default is "1 (or 0) along each spatial axis": the schema gives no value
_UNIT_LISTS = {"Conv": {"strides": 1, "dilations": 1, "pads": 0}}


def _drop_default_attributes(proto: onnx.ModelProto) -> None:
    """Drop node attributes (default domain) that hold the value the ONNX spec gives them when
    absent (Conv's ``group=1``, ``strides``/``dilations`` of ones, ``pads`` of zeros, ...), in
    place: the same model, and every byte shows in a small int4 file."""
    opset = next((e.version for e in proto.opset_import if e.domain in ("", "ai.onnx")), None)
    if opset is None:
        return
    for node in proto.graph.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        try:
            schema = onnx.defs.get_schema(node.op_type, opset, "")
        except onnx.defs.SchemaError:
            continue
        kept = [a for a in node.attribute if not _is_default(node.op_type, a, schema)]
        if len(kept) < len(node.attribute):
            del node.attribute[:]
            node.attribute.extend(kept)


def _is_default(op_type: str, attr: onnx.AttributeProto, schema: onnx.defs.OpSchema) -> bool:
    value = helper.get_attribute_value(attr)
    unit = _UNIT_LISTS.get(op_type, {}).get(attr.name)
    if unit is not None and isinstance(value, list):
        return bool(value) and all(v == unit for v in value)
    declared = schema.attributes.get(attr.name)
    if declared is None or not declared.default_value.name:
        return False
    return value == helper.get_attribute_value(declared.default_value)


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
