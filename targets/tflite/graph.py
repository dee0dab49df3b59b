"""A read-only view of a .tflite flatbuffer: ops, tensor names and dtypes, the compute layers.

Compute layers are the ops with weights (FULLY_CONNECTED, CONV_2D, ...). Each gets a name after the
torch submodule it came from: litert-torch writes module paths into tensor names, e.g.
``LSTMForecaster/torch.nn.modules.rnn.LSTM_rnn;10`` -> ``rnn``; a module behind several ops (an
unrolled RNN runs one FULLY_CONNECTED per time step) gets ``[k]``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

COMPUTE_OPS = (
    "FULLY_CONNECTED",
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "BATCH_MATMUL",
    "UNIDIRECTIONAL_SEQUENCE_LSTM",
    "UNIDIRECTIONAL_SEQUENCE_RNN",
)
# ops that only move or pick values: a layer reached through them still reads the input /
# still writes the forecast (ADD: the head's bias or the residual last observed value)
LAYOUT_OPS = ("RESHAPE", "TRANSPOSE", "PAD", "SQUEEZE", "EXPAND_DIMS", "SLICE", "STRIDED_SLICE")
EDGES = ("input", "output")


@dataclass(frozen=True)
class Op:
    """One operator: its index, type, AEQ scope (output names + ';') and tensor indices."""

    index: int
    op_type: str
    scope: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


@dataclass(frozen=True)
class Layer:
    """A compute op and the name it is recorded under."""

    name: str
    op: Op


class Graph:
    """The main subgraph of a .tflite model."""

    def __init__(self, model: bytes) -> None:
        from ai_edge_litert import schema_py_generated as schema
        from ai_edge_litert.tools import flatbuffer_utils

        flat = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
        subgraph = flat.subgraphs[0]
        type_names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
        op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if k[0] != "_"}
        codes = [
            op_names.get(c := max(code.builtinCode, code.deprecatedBuiltinCode), f"OP_{c}")
            for code in flat.operatorCodes
        ]
        self.names = [(t.name or b"").decode() for t in subgraph.tensors]  # compact: no names
        self.dtypes = [type_names.get(t.type, str(t.type)) for t in subgraph.tensors]
        self.shapes = [[] if t.shape is None else list(t.shape) for t in subgraph.tensors]
        self.inputs = tuple(subgraph.inputs)
        self.outputs = tuple(subgraph.outputs)
        self.ops = [
            Op(
                i,
                codes[op.opcodeIndex],
                self._scope(op.outputs),
                tuple(op.inputs),
                tuple(op.outputs),
            )
            for i, op in enumerate(subgraph.operators)
        ]
        self.producer = {t: op for op in self.ops for t in op.outputs}

    def _scope(self, outputs: Iterable[int]) -> str:
        names = [self.names[t] for t in outputs if t >= 0 and self.names[t]]
        return ";".join(names) + (";" if names else "")

    def layers(self, module: Any) -> list[Layer]:
        """The compute ops in graph order, named after ``module``'s submodules."""
        modules = set(dict(module.named_modules())) if hasattr(module, "named_modules") else set()
        ops = [op for op in self.ops if op.op_type in COMPUTE_OPS]
        bases = [self._module_of(op, modules) for op in ops]
        totals, seen = Counter(bases), Counter()
        layers = []
        for op, base in zip(ops, bases, strict=True):
            name = base if totals[base] == 1 else f"{base}[{seen[base]}]"
            seen[base] += 1
            layers.append(Layer(name, op))
        return layers

    def weight(self, op: Op) -> tuple[str, bool]:
        """dtype of ``op``'s weight as stored, and whether a DEQUANTIZE op unpacks it first."""
        tensor = op.inputs[1]
        source = self.producer.get(tensor)
        if source is not None and source.op_type == "DEQUANTIZE":
            return self.dtypes[source.inputs[0]], True
        return self.dtypes[tensor], False

    def edge_layers(self, layers: list[Layer], edge: str) -> list[str]:
        """Names of the layers reading the graph input ("input") or making the forecast
        ("output") through layout-only ops (and, for the output, ADDs)."""
        if edge == "input":
            reached = self._forward(self.inputs, LAYOUT_OPS)
            return [la.name for la in layers if la.op.inputs[0] in reached]
        return [
            la.name
            for la in layers
            if self._forward(la.op.outputs, (*LAYOUT_OPS, "ADD")) & set(self.outputs)
        ]

    def _forward(self, start: Iterable[int], through: tuple[str, ...]) -> set[int]:
        """Tensors reachable from ``start`` through ops of the types in ``through``."""
        consumers: dict[int, list[Op]] = {}
        for op in self.ops:
            for tensor in op.inputs:
                consumers.setdefault(tensor, []).append(op)
        reached, frontier = set(start), list(start)
        while frontier:
            for op in consumers.get(frontier.pop(), []):
                if op.op_type in through:
                    new = [t for t in op.outputs if t not in reached]
                    reached.update(new)
                    frontier.extend(new)
        return reached

    def _module_of(self, op: Op, modules: set[str]) -> str:
        """The deepest torch module path found in the op's weight, output or input names."""
        found = ""
        for tensor in (*op.inputs[1:2], *op.outputs, *op.inputs[:1]):
            for piece in self.names[tensor].split(";") if tensor >= 0 else ():
                path = _module_path(piece, modules)
                if path.count(".") > found.count(".") or (path and not found):
                    found = path
        return found or op.op_type.lower()


def _module_path(piece: str, modules: set[str]) -> str:
    """'Root/torch.nn.modules.container.Sequential_blocks/pkg.Block_0/...Conv1d_conv1' ->
    'blocks.0.conv1' (each segment is '<qualified type>_<attribute>')."""
    path = ""
    for segment in piece.split("/")[1:]:
        step = next(
            (
                candidate
                for i, char in enumerate(segment)
                if char == "_"
                and (candidate := f"{path}.{segment[i + 1 :]}".lstrip(".")) in modules
            ),
            None,
        )
        if step is None:
            break
        path = step
    return path
