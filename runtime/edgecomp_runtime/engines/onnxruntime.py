"""ONNX models on onnxruntime's CPU execution provider.

int4 storage (see edgecomp_runtime.int4): weights of ops without an int4 kernel (LSTM, GRU, Conv)
arrive as packed INT4 tensors with per-channel scales behind DequantizeLinear; the session folds
them to float32 when it loads, so they cost download and flash size only, not run time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from edgecomp_runtime.errors import ArtifactError, EdgecompRuntimeError, EngineUnavailableError


class OnnxRuntimeEngine:
    """One onnxruntime InferenceSession, built from the model bytes.

    Sequential execution, ``threads`` intra-op threads (default 1), one inter-op thread, all graph
    optimizations. ``InferenceSession.run`` is thread-safe, so ``run`` may be called concurrently.
    """

    module: ClassVar[str] = "onnxruntime"
    package: ClassVar[str] = "onnxruntime"
    extra: ClassVar[str] = "onnx"
    # 1.18 refuses the int4 artifacts (packed INT4 weights, opset 21); see runtime/COMPATIBILITY.md
    min_version: ClassVar[str] = "1.19"

    def __init__(
        self, model_bytes: bytes, manifest: dict[str, Any], *, threads: int | None
    ) -> None:
        ort = self._ort = _import_onnxruntime()
        self._name = manifest["model_file"]
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only; warnings would go to the gateway's stderr
        if expands_int4(manifest):
            # fold DequantizeLinear of constant int4 weights into float32 once, at load, instead
            # of on every run (the QDQ fusions this turns off are int8 activation paths)
            options.add_session_config_entry("session.disable_quant_qdq", "1")
        try:
            self._session = ort.InferenceSession(
                model_bytes, sess_options=options, providers=["CPUExecutionProvider"]
            )
        # NOTE: onnxruntime raises its own Exception subclasses (Fail, InvalidProtobuf, ...).
        except Exception as exc:
            raise ArtifactError(
                f"{self._name}: onnxruntime cannot load the model ({_first_line(exc)})"
            ) from None
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise ArtifactError(f"{self._name}: the model has {len(inputs)} inputs, expected 1")
        self._input = inputs[0].name
        self._output = self._session.get_outputs()[0].name

    def run(self, x: np.ndarray) -> np.ndarray:
        """Run scaled float32 windows [B, L, F]; returns scaled float32 [B, H, F_out]."""
        try:
            (out,) = self._session.run([self._output], {self._input: x})
        except Exception as exc:  # NOTE: see __init__
            raise EdgecompRuntimeError(
                f"{self._name}: onnxruntime failed to run the model ({_first_line(exc)})"
            ) from None
        return np.asarray(out, dtype=np.float32)

    def bind(self, x: np.ndarray, out_shape: tuple[int, ...]) -> Callable[[], np.ndarray]:
        """Bind the float32 array ``x`` [B, L, F] as the input and a float32 array of
        ``out_shape`` as the output, once (ORT IOBinding): each call of the returned function
        runs what ``x`` holds then and returns the output array, overwritten by the next call.

        For one thread's reused buffers (``Model.predict`` keeps one per thread and batch size):
        a call skips building the input and output tensors and the output copy of ``run``.
        """
        ort = self._ort
        y = np.empty(out_shape, dtype=np.float32)
        binding = self._session.io_binding()
        binding.bind_ortvalue_input(self._input, ort.OrtValue.ortvalue_from_numpy(x))
        binding.bind_ortvalue_output(self._output, ort.OrtValue.ortvalue_from_numpy(y))
        # the C session's call skips the Python wrapper's per-call checks (about 2 us)
        inner, native = getattr(self._session, "_sess", None), getattr(binding, "_iobinding", None)
        if inner is None or native is None:  # a wrapper without them: its public call
            session = self._session
            call = lambda: session.run_with_iobinding(binding)  # noqa: E731
        else:
            options = ort.RunOptions()
            call = lambda: inner.run_with_iobinding(native, options)  # noqa: E731

        def run() -> np.ndarray:
            try:
                call()
            except Exception as exc:  # NOTE: see __init__
                raise EdgecompRuntimeError(
                    f"{self._name}: onnxruntime failed to run the model ({_first_line(exc)})"
                ) from None
            return y

        run.keep = (x, y, binding)  # the bound arrays live as long as the binding
        return run


def expands_int4(manifest: dict[str, Any]) -> bool:
    """True when the artifact stores weights in int4 that the engine expands at load."""
    node: Any = manifest
    for key in ("recipe", "lowering", "quantization", "int4_storage", "expand_at_load"):
        node = node.get(key) if isinstance(node, dict) else None  # optional keys, any shape
    return node is True


def _import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise EngineUnavailableError(
            f"onnxruntime cannot be imported ({exc}); install it: "
            "pip install 'edgecomp-runtime[onnx]'"
        ) from None
    return onnxruntime


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
