"""Export a forecaster to ONNX: torch.onnx.export -> onnxsim -> lean -> checker -> shape inference.

``lean_recurrent`` rewrites the ops around the fused LSTM/GRU ops that the exporter writes for a
batch-first ``nn.LSTM`` / ``nn.GRU`` whose last step feeds the head (``edgecomp.models``): the last
layer's ``Y -> Squeeze -> [Transpose] -> Gather(last step)`` becomes one ``Squeeze`` of its
``Y_h`` output, a residual's ``Slice -> Gather(targets)`` one ``Slice`` where the targets are
evenly spaced, and outputs no node reads are dropped from the recurrent ops (the kernels then do
not write them). ONNX Runtime's CPU LSTM/GRU kernels refuse ``layout=1`` (batch-first), so the
input ``Transpose`` to time-major stays.
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from edgecomp._io import atomic_write_bytes
from edgecomp.targets.base import TargetError

INPUT_NAME = "window"
OUTPUT_NAME = "forecast"
BATCH_DIM = "batch"
EXPORTER = "torch.onnx.export (TorchScript-based, dynamo=False)"
SIMPLIFIER = "onnxsim"


def export_model(
    module: torch.nn.Module, input_len: int, n_features: int, *, opset: int, lean: bool = True
) -> onnx.ModelProto:
    """Export, simplify (keeping the dynamic batch), check and shape-infer ``module``; with
    ``lean``, also thin the ops around its LSTM/GRU nodes (``lean_recurrent``)."""
    return _finish(_torch_export(module, input_len, n_features, opset), lean=lean)


def import_model(path: Path) -> onnx.ModelProto:
    """Read a user's ONNX file, then simplify, check and shape-infer it like an export."""
    try:
        proto = onnx.load(str(path))
    except Exception as exc:  # protobuf DecodeError and friends
        raise TargetError(f"onnx: cannot read {path}: {_first_line(exc)}") from None
    return _finish(proto)


def _finish(proto: onnx.ModelProto, *, lean: bool = False) -> onnx.ModelProto:
    proto = _simplify(proto)
    if lean:
        proto = lean_recurrent(proto)
    try:
        onnx.checker.check_model(proto, full_check=True)
        return onnx.shape_inference.infer_shapes(proto, strict_mode=True, data_prop=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise TargetError(
            f"onnx: exported graph fails the ONNX checker: {_first_line(exc)}"
        ) from None


def lean_recurrent(proto: onnx.ModelProto) -> onnx.ModelProto:
    """``proto`` with fewer ops around its LSTM/GRU nodes; the same function of the input.

    Args:
        proto: A simplified graph (as ``onnxsim`` leaves it: constants are initializers).

    Returns:
        A rewritten copy: per recurrent node whose ``Y`` only feeds a read of its last step, that
        read is ``Squeeze(Y_h)``; a last-step ``Slice`` whose only reader is a ``Gather`` of
        evenly spaced features is one two-axis ``Slice``; unread recurrent outputs are dropped.
        Graphs without LSTM/GRU nodes, or without these patterns, come back unchanged.
    """
    if not any(node.op_type in _RECURRENT for node in proto.graph.node):
        return proto
    lean = onnx.ModelProto()
    lean.CopyFrom(onnx.shape_inference.infer_shapes(proto))
    graph = _Graph(lean.graph)
    for node in list(graph.graph.node):
        if node.op_type in _RECURRENT and node.domain in ("", "ai.onnx"):
            _last_step_from_y_h(graph, node)
    for node in list(graph.graph.node):
        if node.op_type == "Slice":
            _slice_features(graph, node)
    graph.prune()  # the old last-step reads, before their tensors count as unread
    for node in graph.graph.node:
        if node.op_type in _RECURRENT:
            _drop_unread_outputs(graph, node)
    graph.prune()
    del lean.graph.value_info[:]  # stale for the rewritten tensors; shape inference redoes it
    return lean


_RECURRENT = ("LSTM", "GRU")


class _Graph:
    """Lookups over a graph under rewrite: producers, readers, constant initializers."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.graph = graph
        self.inits = {init.name: init for init in graph.initializer}
        self.outputs = {value.name for value in graph.output}
        self.shapes = {
            value.name: [d.dim_value if d.HasField("dim_value") else None for d in _dims(value)]
            for value in (*graph.value_info, *graph.input, *graph.output)
        }

    def readers(self, tensor: str) -> list[onnx.NodeProto]:
        return [node for node in self.graph.node if tensor in node.input]

    def only_reader(self, tensor: str, op_type: str) -> onnx.NodeProto | None:
        """The one node reading ``tensor`` when it is an ``op_type`` and no graph output."""
        readers = self.readers(tensor)
        if tensor in self.outputs or len(readers) != 1 or readers[0].op_type != op_type:
            return None
        return readers[0]

    def const(self, tensor: str) -> np.ndarray | None:
        init = self.inits.get(tensor)
        return None if init is None else onnx.numpy_helper.to_array(init)

    def add_const(self, value: np.ndarray, name: str) -> str:
        while name in self.inits:
            name += "_"
        init = onnx.numpy_helper.from_array(np.asarray(value), name)
        self.graph.initializer.append(init)
        self.inits[name] = init
        return name

    def prune(self) -> None:
        """Drop nodes whose outputs nobody reads, then initializers nobody reads."""
        while True:
            read = {t for node in self.graph.node for t in node.input} | self.outputs
            dead = [n for n in self.graph.node if not any(t in read for t in n.output if t)]
            if not dead:
                break
            for node in dead:
                self.graph.node.remove(node)
        for init in [i for i in self.graph.initializer if i.name not in read]:
            self.graph.initializer.remove(init)


def _dims(value: onnx.ValueInfoProto) -> list[Any]:
    return list(value.type.tensor_type.shape.dim)


def _last_step_from_y_h(graph: _Graph, node: onnx.NodeProto) -> None:
    """``Y -> Squeeze(1) -> [Transpose(1, 0, 2)] -> Gather(last step)`` -> ``Squeeze(Y_h, 0)``.

    Only for one direction and no ``sequence_lens`` (``Y_h`` is then the last step's hidden
    state, ``[1, B, H]``; with shorter sequences it is each sequence's own last step).
    """
    lengths = len(node.input) > 4 and node.input[4]
    forward = _attribute(node, "direction", b"forward") == b"forward"
    if lengths or not forward or not node.output[0]:
        return
    squeeze = graph.only_reader(node.output[0], "Squeeze")
    if squeeze is None or _axes(graph, squeeze) != [1]:
        return
    time_axis, read = 0, graph.only_reader(squeeze.output[0], "Gather")
    transpose = graph.only_reader(squeeze.output[0], "Transpose")
    if transpose is not None and _attribute(transpose, "perm", None) == [1, 0, 2]:
        time_axis, read = 1, graph.only_reader(transpose.output[0], "Gather")
    steps = (graph.shapes.get(squeeze.output[0]) or [None])[0]
    index = graph.const(read.input[1]) if read is not None else None
    if index is None or index.ndim or _attribute(read, "axis", 0) != time_axis:
        return
    if int(index) != -1 and (steps is None or int(index) != steps - 1):
        return
    if len(node.output) < 2 or not node.output[1]:
        _set_output(node, 1, f"{node.output[0]}_h")
    axes = graph.add_const(np.array([0], np.int64), f"{node.output[1]}_axes")
    read.op_type, read.input[:] = "Squeeze", [node.output[1], axes]
    del read.attribute[:]


def _set_output(node: onnx.NodeProto, slot: int, name: str) -> None:
    while len(node.output) <= slot:
        node.output.append("")
    node.output[slot] = name


def _slice_features(graph: _Graph, node: onnx.NodeProto) -> None:
    """``Slice(x, axis 1) -> Gather(axis 2, evenly spaced indices)`` -> one ``Slice`` over both
    axes (the residual's ``x[:, -1:, targets]``)."""
    gather = graph.only_reader(node.output[0], "Gather")
    consts = [graph.const(t) for t in node.input[1:]]
    if gather is None or len(consts) < 3 or any(c is None for c in consts):
        return
    starts, ends, axes, *steps = consts
    shape = graph.shapes.get(node.input[0]) or []
    width = shape[-1] if len(shape) == 3 else None  # [B, L, F]: axis 2 is the last one
    index = graph.const(gather.input[1])
    if list(axes) not in ([1], [-2]) or (steps and list(steps[0]) != [1]) or width is None:
        return
    if index is None or index.ndim != 1 or _attribute(gather, "axis", 0) not in (2, -1):
        return
    index = np.where(index < 0, index + width, index)
    step = int(index[1] - index[0]) if len(index) > 1 else 1
    if (
        step < 1
        or np.any((index < 0) | (index >= width))
        or not np.array_equal(np.diff(index), np.full(len(index) - 1, step))
    ):
        return
    new = [
        np.array([*starts, index[0]], np.int64),
        np.array([*ends, index[-1] + 1], np.int64),
        np.array([1, 2], np.int64),
        np.array([1, step], np.int64),
    ]
    names = ("starts", "ends", "axes", "steps")
    node.input[1:] = [
        graph.add_const(v, f"{node.name}_{n}") for v, n in zip(new, names, strict=True)
    ]
    node.output[0] = gather.output[0]
    graph.graph.node.remove(gather)


def _drop_unread_outputs(graph: _Graph, node: onnx.NodeProto) -> None:
    read = {t for n in graph.graph.node for t in n.input} | graph.outputs
    outputs = [name if name in read else "" for name in node.output]
    while outputs and not outputs[-1]:
        outputs.pop()
    node.output[:] = outputs


def _axes(graph: _Graph, node: onnx.NodeProto) -> list[int] | None:
    axes = graph.const(node.input[1]) if len(node.input) > 1 else None
    return None if axes is None else [int(a) for a in np.atleast_1d(axes)]


def _attribute(node: onnx.NodeProto, name: str, default: Any) -> Any:
    found = next((a for a in node.attribute if a.name == name), None)
    return default if found is None else onnx.helper.get_attribute_value(found)


def write_model(proto: onnx.ModelProto, path: Path) -> Path:
    """Write ``proto`` to ``path`` atomically."""
    return atomic_write_bytes(path, proto.SerializeToString())


def io_spec(proto: onnx.ModelProto) -> dict[str, Any]:
    """The graph's inputs and outputs as the manifest's ``io`` describes them."""

    def describe(value: onnx.ValueInfoProto) -> dict[str, Any]:
        tensor = value.type.tensor_type
        shape = [d.dim_param or d.dim_value for d in tensor.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name
        return {"name": value.name, "shape": shape, "dtype": dtype}

    return {
        "inputs": [describe(v) for v in proto.graph.input],
        "outputs": [describe(v) for v in proto.graph.output],
    }


def ort_runner(proto: onnx.ModelProto) -> Callable[[np.ndarray], np.ndarray]:
    """An ONNX Runtime session (CPU, one thread) on ``proto`` as a windows -> forecast function."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(
        proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return lambda windows: session.run([OUTPUT_NAME], {INPUT_NAME: windows})[0]


def _torch_export(
    module: torch.nn.Module, input_len: int, n_features: int, opset: int
) -> onnx.ModelProto:
    # NOTE: batch 2, not 1, so that no batch-1 specialisation can hide in the traced graph.
    example = torch.zeros(2, input_len, n_features)
    buffer = io.BytesIO()
    dynamic = {INPUT_NAME: {0: BATCH_DIM}, OUTPUT_NAME: {0: BATCH_DIM}}
    with _module_stack(module) as stack, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # legacy-exporter deprecation, RNN batch-size notes
        try:
            torch.onnx.export(
                module,
                (example,),
                buffer,
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes=dynamic,
            )
        except Exception as exc:  # any exporter failure becomes one TargetError naming the module
            where = _culprit(module, example, exc, stack)
            raise TargetError(f"onnx: cannot export {where}: {_first_line(exc)}") from exc
    return onnx.load_from_string(buffer.getvalue())


def _simplify(proto: onnx.ModelProto) -> onnx.ModelProto:
    import onnxsim

    try:
        simplified, ok = onnxsim.simplify(proto)
    except Exception as exc:  # onnxsim raises plain RuntimeError/ValueError from C++
        raise TargetError(f"onnx: onnxsim failed: {_first_line(exc)}") from exc
    if not ok:
        raise TargetError("onnx: onnxsim could not verify the simplified graph against the export")
    return simplified


@contextmanager
def _module_stack(module: torch.nn.Module) -> Iterator[list[str]]:
    """Track which submodule is running, so a failure inside forward() can name it."""
    stack: list[str] = []

    def enter(name: str) -> None:
        stack.append(name)

    def leave() -> None:
        stack.pop()

    handles = []
    if isinstance(module, torch.jit.ScriptModule):  # hooks are not supported on TorchScript
        yield stack
        return
    for name, sub in module.named_modules():
        handles.append(sub.register_forward_pre_hook(lambda *_, n=name: enter(n)))
        handles.append(sub.register_forward_hook(lambda *_: leave()))
    try:
        yield stack
    finally:
        for handle in handles:
            handle.remove()


def _culprit(
    module: torch.nn.Module, example: torch.Tensor, exc: Exception, stack: list[str]
) -> str:
    """Name the module an export failure comes from: the running one, or the unsupported op's."""
    name = stack[-1] if stack else _scope_of_op(module, example, str(exc))
    if name is None:
        return f"model {type(module).__name__}"
    if not name:
        return f"module '{type(module).__name__}' (the model itself)"
    return f"module '{name}' ({type(module.get_submodule(name)).__name__})"


def _scope_of_op(module: torch.nn.Module, example: torch.Tensor, message: str) -> str | None:
    match = re.search(r"operator '([\w:.]+)'", message)
    if match is None:
        return None
    try:
        graph = torch.jit.trace(module, (example,), check_trace=False).inlined_graph
    except Exception:  # the export already failed; a failing trace only means "unknown module"
        return None
    for node in graph.nodes():
        if node.kind() == match[1]:
            return node.scopeName().rpartition("/")[2].removeprefix("__module")[1:]
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
