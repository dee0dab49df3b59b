"""Export a forecaster to ONNX: torch.onnx.export -> onnxsim -> checker -> shape inference."""

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
    module: torch.nn.Module, input_len: int, n_features: int, *, opset: int
) -> onnx.ModelProto:
    """Export, simplify (keeping the dynamic batch), check and shape-infer ``module``."""
    return _finish(_torch_export(module, input_len, n_features, opset))


def import_model(path: Path) -> onnx.ModelProto:
    """Read a user's ONNX file, then simplify, check and shape-infer it like an export."""
    try:
        proto = onnx.load(str(path))
    except Exception as exc:  # protobuf DecodeError and friends
        raise TargetError(f"onnx: cannot read {path}: {_first_line(exc)}") from None
    return _finish(proto)


def _finish(proto: onnx.ModelProto) -> onnx.ModelProto:
    proto = _simplify(proto)
    try:
        onnx.checker.check_model(proto, full_check=True)
        return onnx.shape_inference.infer_shapes(proto, strict_mode=True, data_prop=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise TargetError(
            f"onnx: exported graph fails the ONNX checker: {_first_line(exc)}"
        ) from None


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
