"""Engines run a model file; one per backend, imported only when an artifact needs it."""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any, ClassVar, Protocol

import numpy as np

from edgecomp_runtime.errors import EngineUnavailableError

# backend (manifest target.backend) -> "module:Class"
ENGINES: dict[str, str] = {
    "onnx": "edgecomp_runtime.engines.onnxruntime:OnnxRuntimeEngine",
    "tflite": "edgecomp_runtime.engines.litert:LiteRtEngine",
    "tensorrt": "edgecomp_runtime.engines.tensorrt:TensorRtEngine",
}


class Engine(Protocol):
    """Runs scaled float32 windows [B, L, F] through a model file, giving [B, H, F_out].

    Implementations import their package inside ``__init__``, never at module import, and keep no
    mutable per-call state: ``run`` may be called from several threads at once.
    """

    module: ClassVar[str]  # import name of the package the engine needs, e.g. "onnxruntime"
    package: ClassVar[str]  # its pip name, for the install hint

    def __init__(
        self, model_bytes: bytes, manifest: dict[str, Any], *, threads: int | None
    ) -> None: ...

    def run(self, x: np.ndarray) -> np.ndarray: ...


def get_engine(backend: str) -> type:
    """Return the engine class for a backend.

    Args:
        backend: A key of ``ENGINES``, e.g. ``"onnx"``.

    Raises:
        EngineUnavailableError: The backend is unknown, or the package its engine needs is not
            installed; the message names the pip package.
    """
    if backend not in ENGINES:
        raise EngineUnavailableError(
            f"no engine for backend '{backend}' in this edgecomp-runtime; available: "
            f"{sorted(ENGINES)} (a newer release may add it: pip install -U edgecomp-runtime)"
        )
    module_name, _, class_name = ENGINES[backend].partition(":")
    engine = getattr(importlib.import_module(module_name), class_name)
    if not _installed(engine.module):
        raise EngineUnavailableError(
            f"backend '{backend}' needs the '{engine.package}' package, which is not installed: "
            f"pip install {engine.package}"
        )
    return engine


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
