"""PyTorch -> fp32 .tflite with litert-torch (no TensorFlow), at a fixed batch of one window.

litert-torch lowers nn.LSTM / nn.GRU to unrolled FULLY_CONNECTED steps and Conv1d to CONV_2D; the
graph has a static input shape [1, L, F], so the runtime engine runs a batch one window at a time.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from edgecomp.targets.base import TargetError

if TYPE_CHECKING:
    from edgecomp.spec import ModelSpec

MODEL_BATCH = 1
SIGNATURE = "serving_default"


def convert_module(module: Any, input_len: int, n_features: int) -> bytes:
    """Convert ``module`` ([1, L, F] -> [1, H, F_out]) to fp32 .tflite bytes.

    Raises:
        TargetError: The source is not a torch module, or litert-torch cannot convert it (the
            message carries the converter's first line).
    """
    import torch

    if not isinstance(module, torch.nn.Module):
        raise TargetError(
            f"tflite: the model source is {type(module).__name__}, not a PyTorch module; "
            "litert-torch converts PyTorch models only (give a checkpoint, not an ONNX file)"
        )
    import litert_torch

    sample = (torch.zeros(MODEL_BATCH, input_len, n_features),)
    training = module.training
    module.eval()
    try:
        with quiet(), torch.no_grad():
            return bytes(litert_torch.convert(module, sample).model_content())
    except Exception as exc:  # the converter raises many types (torch.export, MLIR, ...)
        raise TargetError(
            f"tflite: litert-torch cannot convert {type(module).__name__}: {first_line(exc)}"
        ) from exc
    finally:
        module.train(training)


def compact(model: bytes) -> bytes:
    """``model`` without its internal tensor names (graph inputs and outputs keep theirs).

    litert-torch names every tensor after its torch scope: on an unrolled 48-step LSTM that is a
    fifth of the file. Layer records are read before this step; the serving signature keeps
    working (it refers to tensors by index).
    """
    from ai_edge_litert.tools import flatbuffer_utils

    flat = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
    for subgraph in flat.subgraphs:
        keep = {*subgraph.inputs, *subgraph.outputs}
        for index, tensor in enumerate(subgraph.tensors):
            if index not in keep:
                tensor.name = b""
    return bytes(flatbuffer_utils.convert_object_to_bytearray(flat))


def signature_names(model: bytes) -> tuple[str, str]:
    """Input and output names of the model's serving signature."""
    from ai_edge_litert.interpreter import Interpreter

    with quiet():
        signature = Interpreter(model_content=model).get_signature_list()[SIGNATURE]
    return signature["inputs"][0], signature["outputs"][0]


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the toolchain's progress lines and C++ logs (file descriptors 1 and 2).

    Exceptions still propagate with their messages; only the chatter goes.
    """
    with tempfile.TemporaryFile() as sink:
        saved = [os.dup(1), os.dup(2)]
        try:
            for fd in (1, 2):
                os.dup2(sink.fileno(), fd)
            chatter = io.StringIO()
            with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
                yield
        finally:
            for fd, copy in zip((1, 2), saved, strict=True):
                os.dup2(copy, fd)
                os.close(copy)


def first_line(exc: BaseException) -> str:
    """The exception's type and the first non-empty line of its message, at most 300 chars."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]


def io_spec(model: bytes, spec: ModelSpec) -> dict[str, Any]:
    """Names, shapes (symbolic batch), dtypes and int8 scale / zero point of input and output."""
    from ai_edge_litert.interpreter import Interpreter

    with quiet():
        interpreter = Interpreter(model_content=model)
    names = signature_names(model)
    want = {
        "inputs": [spec.input_len, spec.n_features],
        "outputs": [spec.horizon, len(spec.targets)],
    }
    io: dict[str, Any] = {}
    for side, details, name in zip(
        want,
        (interpreter.get_input_details(), interpreter.get_output_details()),
        names,
        strict=True,
    ):
        (detail,) = details
        if list(detail["shape"]) != [1, *want[side]]:
            raise TargetError(
                f"tflite: model {side[:-1]} '{name}' is {list(detail['shape'])}; the spec needs "
                f"{[1, *want[side]]}"
            )
        entry = {"name": name, "shape": ["batch", *want[side]], "dtype": detail["dtype"].__name__}
        if detail["dtype"] == np.int8:
            scale, zero = detail["quantization"]
            entry |= {"scale": float(scale), "zero_point": int(zero)}
        io[side] = [entry]
    return io
