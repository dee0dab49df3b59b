"""ONNX models on OpenVINO's CPU plugin (Intel's CPU runtime; also runs on AMD x86 and aarch64).

The engine reads the artifact's ONNX file as it is (OpenVINO's ONNX frontend), compiles it for
the CPU with ``threads`` inference threads (default 1), the LATENCY performance hint, float32
inference precision (OpenVINO's default on CPUs with bf16 rounds activations to bfloat16) unless
the build measured bf16 within its parity limit and recorded it
(``recipe.lowering.openvino.inference_precision``: ``"bf16"``), and the batch left dynamic.
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar

import numpy as np

from edgecomp_runtime.errors import ArtifactError, EdgecompRuntimeError, EngineUnavailableError

# the compile configuration, recorded by the build next to the engine's measured latency
CONFIG: dict[str, str] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
PRECISIONS = ("f32", "bf16")  # inference precisions a build may record


class OpenVinoEngine:
    """One OpenVINO CompiledModel, built from the ONNX bytes; an infer request per thread.

    A CompiledModel may be shared between threads but an InferRequest may not, so each calling
    thread gets its own request (created on its first ``run``).
    """

    module: ClassVar[str] = "openvino"
    package: ClassVar[str] = "openvino"
    extra: ClassVar[str] = "openvino"
    # 2024.0: the first release whose CPU plugin compiles every ONNX op edgecomp emits for x86
    # (QDQ int8 Conv/MatMul, LSTM/GRU, MatMulNBits is refused with a message)
    min_version: ClassVar[str] = "2026.4"

    def __init__(
        self, model_bytes: bytes, manifest: dict[str, Any], *, threads: int | None
    ) -> None:
        ov = _import_openvino()
        self._name = manifest["model_file"]
        core = ov.Core()
        config = {
            **CONFIG,
            "INFERENCE_NUM_THREADS": threads or 1,
            "INFERENCE_PRECISION_HINT": inference_precision(manifest),
        }
        try:
            self._compiled = core.compile_model(core.read_model(model_bytes), "CPU", config)
        # NOTE: OpenVINO raises RuntimeError subclasses of its own (GeneralFailure, OpConversion...)
        except Exception as exc:
            raise ArtifactError(
                f"{self._name}: OpenVINO cannot compile the model ({_first_line(exc)})"
            ) from None
        if len(self._compiled.inputs) != 1:
            raise ArtifactError(
                f"{self._name}: the model has {len(self._compiled.inputs)} inputs, expected 1"
            )
        self._local = threading.local()

    def run(self, x: np.ndarray) -> np.ndarray:
        """Run scaled float32 windows [B, L, F]; returns scaled float32 [B, H, F_out]."""
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        try:
            request.infer({0: np.ascontiguousarray(x, dtype=np.float32)}, share_inputs=True)
        except Exception as exc:  # NOTE: see __init__
            raise EdgecompRuntimeError(
                f"{self._name}: OpenVINO failed to run the model ({_first_line(exc)})"
            ) from None
        # the request reuses its output buffer on the next call: hand back a copy
        return np.array(request.get_output_tensor(0).data, dtype=np.float32)


def inference_precision(manifest: dict[str, Any]) -> str:
    """The recorded ``recipe.lowering.openvino.inference_precision`` ("f32" when absent).

    Raises:
        ArtifactError: The value is not one of ``PRECISIONS``.
    """
    node: Any = manifest
    for key in ("recipe", "lowering", "openvino"):
        node = node.get(key) if isinstance(node, dict) else None
    value = node.get("inference_precision", "f32") if isinstance(node, dict) else "f32"
    if value not in PRECISIONS:
        raise ArtifactError(
            f"manifest.json ({manifest.get('model_file')}): "
            f"recipe.lowering.openvino.inference_precision is {value!r}, expected one of "
            f"{list(PRECISIONS)}"
        )
    return value


def version() -> str:
    """The installed OpenVINO version (``openvino.__version__``, short form)."""
    return _import_openvino().__version__.split("-")[0]


def _import_openvino() -> Any:
    try:
        import openvino
    except ImportError as exc:
        raise EngineUnavailableError(
            f"openvino cannot be imported ({exc}); install it: "
            "pip install 'edgecomp-runtime[openvino]'"
        ) from None
    return openvino


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
