"""torch-tensorrt ahead-of-time compilation (option ``aot``): only where torch_tensorrt imports.

It needs a GPU host with TensorRT and a torch that torch-tensorrt supports (2.14 for its current
release); neither is installable from the registries this project builds with, and an engine is
tied to the GPU and TensorRT that built it. So the default path ships ONNX and the device builds
the engine; ``aot`` is refused with the reason wherever torch_tensorrt cannot be imported.
"""

from __future__ import annotations

import importlib

from edgecomp.targets.base import TargetError


def refuse_unless_available() -> None:
    """Raise TargetError saying why ``aot`` cannot run here, unless torch_tensorrt imports.

    Raises:
        TargetError: torch_tensorrt is not importable (the message has the import error), or it
            imports but this edgecomp does not package its engines yet.
    """
    try:
        module = importlib.import_module("torch_tensorrt")
    except Exception as exc:  # ImportError, or a CUDA/TensorRT library failing to load
        raise TargetError(
            "tensorrt: option aot=true compiles with torch-tensorrt ahead of time; it needs a GPU "
            "host with TensorRT and a torch that torch-tensorrt supports, and torch_tensorrt "
            f"cannot be imported here ({type(exc).__name__}: {exc}). Build without aot: the "
            "device builds the engine from the artifact's ONNX on first load"
        ) from None
    raise TargetError(
        f"tensorrt: torch_tensorrt {getattr(module, '__version__', '?')} imports, but packaging "
        "its engines is not implemented: an AOT plan only runs on the GPU and TensorRT that "
        "built it, which the artifact cannot promise; build without aot"
    )
