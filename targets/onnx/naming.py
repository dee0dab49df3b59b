"""Readable, short and unique tensor and Q/DQ node names for an ONNX graph (for Netron & co).

The exporter names nodes after the torch module path (``/blocks/blocks.0/conv1/Conv``) but its
tensors and the quantizer's Q/DQ parameters get long generated names. ``name_graph`` renames:

* a computed tensor after the node that makes it: ``blocks.0.conv1/Conv``, ``head/Gemm``
  (output k > 0 of a node: ``rnn/LSTM_out1``; an unnamed node takes the scope of its first
  input: ``rnn/Squeeze`` after ``rnn/LSTM``);
* a generated constant (``onnx::LSTM_124``, ``_v_37``) after its first consumer and input slot:
  ``rnn/LSTM.W``, ``rnn/Squeeze.axes``;
* a Q/DQ pair after the tensor it quantizes: nodes ``<tensor>_QuantizeLinear`` and
  ``<tensor>_DequantizeLinear`` (a DQ of a stored weight or bias has no node name), outputs
  ``<tensor>_q`` / ``<tensor>_dq``, parameters ``<tensor>_scale`` / ``<tensor>_zp``
  (``scale.shared<k>`` / ``zp.shared<k>`` when merged initializers serve several tensors).

Compute-node names, weight initializers named by torch (``head.weight``) and the graph's inputs
and outputs keep their names, so layer records (which name nodes) stay valid.
"""

from __future__ import annotations

import re

import onnx

__all__ = ["QDQ_OPS", "name_graph", "node_scope", "rename_tensors", "short_node_name"]

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
_GENERATED = re.compile(r"^(onnx::|_v_\d|/)|::")
_PARAM_KINDS = ("scale", "zp")


def short_node_name(name: str, op_type: str) -> str:
    """'/blocks/blocks.0/conv1/Conv' -> 'blocks.0.conv1/Conv' (exporter scopes are partly
    qualified); a name without scopes stays; an empty name becomes ``op_type``."""
    parts = name.strip("/").split("/")
    if not name.strip("/"):
        return op_type
    path = ""
    for part in parts[:-1]:
        path = part if not path or part.startswith(f"{path}.") else f"{path}.{part}"
    return f"{path}/{parts[-1]}" if path else parts[-1]


def node_scope(name: str, op_type: str) -> str:
    """The scope a named node gives the tensors around it: its short name's path
    ('/blocks/blocks.0/conv1/Conv' -> 'blocks.0.conv1'), or the whole name of a node named after
    its layer alone ('blocks.0.conv1', as int4 files name them: no exporter path)."""
    short = short_node_name(name, op_type)
    if "/" not in name and name:
        return short
    return short.rpartition("/")[0]


def name_graph(graph: onnx.GraphProto) -> dict[str, str]:
    """Rename ``graph``'s generated tensors and its Q/DQ nodes in place; returns old -> new."""
    keep = {v.name for v in graph.input} | {v.name for v in graph.output}
    initializers = {i.name for i in graph.initializer}
    qdq = [node for node in graph.node if node.op_type in QDQ_OPS]
    renamed = {t for node in graph.node for t in node.output if t and t not in keep}
    renamed |= {t for node in qdq for t in node.input[1:] if t}
    renamed |= {t for t in initializers if _GENERATED.search(t)}
    namer = _Namer(
        {t for node in graph.node for t in (*node.input, *node.output)} | initializers,
        renamed,
    )
    _name_outputs(graph, namer, initializers)
    _name_qdq(qdq, namer, initializers)
    _name_constants(graph, namer, initializers)
    rename_tensors(graph, namer.names)
    return namer.names


class _Namer:
    """Hands out unique names: ``wanted``, else ``wanted_2``, ``wanted_3``..."""

    def __init__(self, all_names: set[str], renamed: set[str]) -> None:
        self.taken = all_names - renamed
        self.renamed = renamed
        self.names: dict[str, str] = {}

    def assign(self, tensor: str, wanted: str) -> None:
        if tensor and tensor in self.renamed and tensor not in self.names:
            self.names[tensor] = self.fresh(wanted)

    def fresh(self, wanted: str) -> str:
        name, k = wanted, 1
        while name in self.taken:
            k += 1
            name = f"{wanted}_{k}"
        self.taken.add(name)
        return name

    def current(self, tensor: str) -> str:
        return self.names.get(tensor, tensor)


def _name_outputs(graph: onnx.GraphProto, namer: _Namer, initializers: set[str]) -> None:
    users: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for tensor in node.input:
            users.setdefault(tensor, []).append(node)
    producers = {t: node for node in graph.node for t in node.output}
    for node in graph.node:
        if node.op_type in QDQ_OPS:
            continue
        base = short_node_name(node.name, node.op_type)
        if not node.name.strip("/"):
            scope = _scope(node, namer, initializers, users, producers)
            base = f"{scope}/{node.op_type}" if scope else node.op_type
        for k, tensor in enumerate(node.output):
            namer.assign(tensor, base if k == 0 else f"{base}_out{k}")


def _scope(
    node: onnx.NodeProto,
    namer: _Namer,
    initializers: set[str],
    users: dict[str, list[onnx.NodeProto]],
    producers: dict[str, onnx.NodeProto],
) -> str:
    """An unnamed node's scope: its first input's, a weight's module ("head.bias" -> "head"),
    else that of the first named node reading its output."""
    first = next((t for t in node.input if t), "")
    scope = namer.current(first).rpartition("/")[0]
    maker = producers.get(first)
    if not scope and maker is not None and maker.op_type not in QDQ_OPS and maker.name:
        scope = node_scope(maker.name, maker.op_type)
    if not scope and first in initializers and not _GENERATED.search(first):
        scope = first.rpartition(".")[0]
    if not scope and node.output:
        named = (n for n in users.get(node.output[0], []) if n.name.strip("/"))
        reader = next(named, None)
        if reader is not None and reader.op_type not in QDQ_OPS:
            scope = node_scope(reader.name, reader.op_type)
    return scope


def _name_qdq(nodes: list[onnx.NodeProto], namer: _Namer, initializers: set[str]) -> None:
    """Q/DQ nodes, outputs and parameters after the tensor quantized (``_base``); the DQ of a
    stored weight needs no node name (its output names the weight, and runtimes fold it at
    load), so it has none."""
    bases = _bases(nodes, namer)
    served: dict[str, set[str]] = {}  # parameter -> the tensors it quantizes
    for node, base in zip(nodes, bases, strict=True):
        for tensor in node.input[1:]:
            served.setdefault(tensor, set()).add(base)
    shared = dict.fromkeys(_PARAM_KINDS, 0)
    for node, base in zip(nodes, bases, strict=True):
        constant = node.op_type == "DequantizeLinear" and node.input[0] in initializers
        node.name = "" if constant else namer.fresh(f"{base}_{node.op_type}")
        suffix = "_q" if node.op_type == "QuantizeLinear" else "_dq"
        namer.assign(node.output[0], f"{base}{suffix}")
        for kind, tensor in zip(_PARAM_KINDS, node.input[1:], strict=False):
            if len(served.get(tensor, ())) > 1 and tensor not in namer.names:
                namer.assign(tensor, f"{kind}.shared{shared[kind]}")
                shared[kind] += 1
            namer.assign(tensor, f"{base}_{kind}")


def _bases(nodes: list[onnx.NodeProto], namer: _Namer) -> list[str]:
    """The tensor each Q/DQ node quantizes: a Q's input, the input of the Q feeding a DQ, or
    the weight behind a DQ's quantized initializer."""
    quantized: dict[str, str] = {}  # Q output -> its input's (new) name
    out = []
    for node in nodes:
        source = node.input[0]
        if node.op_type == "QuantizeLinear":
            quantized[node.output[0]] = namer.current(source)
            out.append(namer.current(source))
        else:
            out.append(quantized.get(source, namer.current(source).removesuffix("_quantized")))
    return out


def _name_constants(graph: onnx.GraphProto, namer: _Namer, initializers: set[str]) -> None:
    """Generated initializers after their first consumer: ``<node>.<input name in the schema>``."""
    for node in graph.node:
        base = node.name if node.op_type in QDQ_OPS else short_node_name(node.name, node.op_type)
        if not node.name.strip("/") and node.output:  # unnamed: after its output
            base = namer.current(node.output[0])
        for k, tensor in enumerate(node.input):
            if tensor in initializers:
                namer.assign(tensor, f"{base}.{_input_role(node, k)}")


def _input_role(node: onnx.NodeProto, k: int) -> str:
    try:
        schema = onnx.defs.get_schema(node.op_type, domain=node.domain or "")
    except onnx.defs.SchemaError:  # a contrib op (com.microsoft) ONNX does not define
        return f"in{k}"
    inputs = schema.inputs
    if k < len(inputs):
        return inputs[k].name
    return inputs[-1].name if inputs and inputs[-1].option.name == "Variadic" else f"in{k}"


def rename_tensors(graph: onnx.GraphProto, names: dict[str, str]) -> None:
    """Rename initializers and node inputs/outputs per ``names`` (others keep theirs)."""
    for init in graph.initializer:
        init.name = names.get(init.name, init.name)
    for node in graph.node:
        node.input[:] = [names.get(t, t) for t in node.input]
        node.output[:] = [names.get(t, t) for t in node.output]
