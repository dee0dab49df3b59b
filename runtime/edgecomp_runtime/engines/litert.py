"""TFLite models on LiteRT (ai-edge-litert) with XNNPACK; tflite-runtime only as a checked fallback.

The model has a fixed batch of one window ([1, L, F], see targets/tflite). When the manifest's
``recipe.lowering.batch_rows`` is N (the build checked it), a batch runs N windows per invoke on a
copy of the model pinned to batch N (litert_batch.py, made once per engine), or, for a model whose
input batch is symbolic (-1: the recurrent WHILE loop), on an interpreter whose input is resized to
N. The rest (fewer than N windows) runs one window per invoke, unless ``batch_min_rows`` is M (the
build checked that copies of M, 2M, ... N/2 rows give what one invoke per window gives and are
cheaper): then it runs as one invoke per power of two of at least M rows (a remainder of 63 with
M = 2: 32 + 16 + 8 + 4 + 2, and one window alone), at most log2(N) more interpreters. Without
``batch_rows`` every window is one invoke. Variables are reset before each invoke, so a stateful
op (a fused LSTM keeps its state across invokes) never carries one call into the next.

Thread safety: one interpreter per calling thread (``threading.local``), each built from the same
model bytes on the thread's first call, so ``run`` may be called from several threads at once;
memory grows by one interpreter (about the model's size plus its activations) per thread and
batch size used.
"""

from __future__ import annotations

import base64
import binascii
import importlib
import importlib.util
import threading
from typing import Any, ClassVar

import numpy as np

from edgecomp_runtime.errors import ArtifactError, EdgecompRuntimeError, EngineUnavailableError

PREFERRED = "ai_edge_litert"
FALLBACK = "tflite_runtime"
_INT8 = (-128, 127)


def _pick_module() -> str:
    """ai_edge_litert when installed; else tflite_runtime when installed; else ai_edge_litert."""
    for name in (PREFERRED, FALLBACK):
        try:
            if importlib.util.find_spec(name) is not None:
                return name
        except (ImportError, ValueError):
            continue
    return PREFERRED


class LiteRtEngine:
    """Runs .tflite artifacts; int8 inputs and outputs are (de)quantized here, not by the user.

    Args:
        model_bytes: The .tflite file.
        manifest: The artifact's manifest (``model_file``, ``io``, ``recipe.lowering``).
        threads: Interpreter threads; None means 1.
        module: "ai_edge_litert" or "tflite_runtime"; None picks ``module`` (the class default).
    """

    module: ClassVar[str] = _pick_module()
    package: ClassVar[str] = "ai-edge-litert"
    extra: ClassVar[str] = "litert"
    min_version: ClassVar[str] = "2.3"  # the oldest release run in development; see COMPATIBILITY

    def __init__(
        self,
        model_bytes: bytes,
        manifest: dict[str, Any],
        *,
        threads: int | None,
        module: str | None = None,
    ) -> None:
        self._name = manifest["model_file"]
        self._bytes = bytes(model_bytes)
        self._threads = threads or 1
        lowering = (manifest.get("recipe") or {}).get("lowering") or {}
        self._xnnpack = lowering.get("xnnpack", True) is not False
        self._module = module or self.module
        self._interpreter_type = _import_interpreter(self._module)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._pinned: dict[int, bytes] = {}
        rows = lowering.get("batch_rows", 1)
        self._rows = rows if isinstance(rows, int) and rows > 1 and self._module == PREFERRED else 1
        least = lowering.get("batch_min_rows", 0)
        self._min_rows = least if isinstance(least, int) and 1 < least < self._rows else 0
        interpreter = self._interpreter()
        self._input = _tensor(interpreter.get_input_details(), self._name, "input")
        self._output = _tensor(interpreter.get_output_details(), self._name, "output")
        _check_io(self._input, self._output, manifest)
        if self._module != PREFERRED:
            check_probes(self, lowering.get("probes"), self._module)

    def run(self, x: np.ndarray) -> np.ndarray:
        """Run scaled float32 windows [B, L, F]; returns scaled float32 [B, H, F_out]."""
        interpreter = self._interpreter()
        expected = tuple(self._input["shape"][1:])
        if x.ndim != 3 or x.shape[1:] != expected:
            raise EdgecompRuntimeError(
                f"{self._name}: expected windows [batch, {expected[0]}, {expected[1]}], "
                f"got {list(x.shape)}"
            )
        out = np.empty((len(x), *self._output["shape"][1:]), dtype=np.float32)
        try:
            start = 0
            for rows in self._chunks(len(x)):
                runner = interpreter if rows == 1 else self._interpreter(rows)
                out[start : start + rows] = self._invoke(runner, x[start : start + rows])
                start += rows
        except (RuntimeError, ValueError) as exc:
            raise EdgecompRuntimeError(
                f"{self._name}: {self._module} failed to run the model ({_first_line(exc)})"
            ) from None
        return out

    @property
    def batch_rows(self) -> int:
        """Windows per invoke for a batch (1: one invoke per window)."""
        return self._rows

    def _chunks(self, n: int) -> list[int]:
        """Windows per invoke for a batch of ``n``: full ``batch_rows`` chunks, then powers of
        two of at least ``batch_min_rows``, then single windows."""
        rows, least = self._rows, self._min_rows
        if n < rows and (n < least or not least):  # batch 1 takes this path: kept short
            return [1] * n
        chunks = [rows] * (n // rows)
        rest, size = n % rows, rows // 2
        while least and size >= least:
            if rest >= size:
                chunks.append(size)
                rest -= size
            size //= 2
        return chunks + [1] * rest

    def _invoke(self, interpreter: Any, x: np.ndarray) -> np.ndarray:
        interpreter.reset_all_variables()
        interpreter.set_tensor(self._input["index"], _quantize(x, self._input))
        interpreter.invoke()
        return _dequantize(interpreter.get_tensor(self._output["index"]), self._output)

    def _interpreter(self, rows: int = 1) -> Any:
        """This thread's interpreter for ``rows`` windows per invoke (made on first use)."""
        interpreters = getattr(self._local, "by_rows", None)
        if interpreters is None:
            interpreters = self._local.by_rows = {}
        interpreter = interpreters.get(rows)
        if interpreter is None:
            # a symbolic (-1) batch (the loop lowering) is resized, not pinned
            resize = rows > 1 and list(self._input["shape_signature"][:1]) == [-1]
            model = self._pinned_bytes(rows) if rows > 1 and not resize else self._bytes
            interpreter = interpreters[rows] = self._open(model, rows=rows if resize else 0)
        return interpreter

    def _pinned_bytes(self, rows: int) -> bytes:
        """The model pinned to ``rows`` windows (made once, shared by the threads)."""
        with self._lock:
            if rows not in self._pinned:
                from edgecomp_runtime.engines.litert_batch import pin_batch

                pinned = pin_batch(self._bytes, rows)
                if pinned is None:
                    raise ArtifactError(
                        f"{self._name}: recipe.lowering.batch_rows is {self._rows} but the model "
                        "cannot be pinned to a batch"
                    )
                self._pinned[rows] = pinned
            return self._pinned[rows]

    def _open(self, model: bytes, rows: int = 0) -> Any:
        resolver = self._interpreter_type.__module__
        kinds = importlib.import_module(resolver).OpResolverType
        kind = kinds.AUTO if self._xnnpack else kinds.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            interpreter = self._interpreter_type(
                model_content=model,
                num_threads=self._threads,
                experimental_op_resolver_type=kind,
            )
            if rows:
                (detail,) = interpreter.get_input_details()
                interpreter.resize_tensor_input(detail["index"], [rows, *detail["shape"][1:]])
            interpreter.allocate_tensors()
        except (RuntimeError, ValueError) as exc:
            raise ArtifactError(
                f"{self._name}: {self._module} cannot load the model ({_first_line(exc)})"
            ) from None
        return interpreter


def check_probes(engine: LiteRtEngine, probes: Any, module: str) -> None:
    """Refuse an engine whose outputs on the artifact's probe windows differ from the build's.

    Args:
        engine: The engine to check.
        probes: ``recipe.lowering.probes``: ``{"encoding": "float32-le-base64", "inputs",
            "outputs", "atol"}``: a few scaled windows [k, L, F] and the outputs [k, H, F_out]
            ai-edge-litert gave at build time, as base64 of little-endian float32.
        module: The interpreter package, for the message.

    Raises:
        EngineUnavailableError: No probes in the artifact, or a difference above ``atol``.
    """
    hint = f"install {engine.package} (pip install 'edgecomp-runtime[{engine.extra}]')"
    try:
        inputs = _decode(probes["inputs"], engine._input["shape"][1:])
        expected = _decode(probes["outputs"], engine._output["shape"][1:])
        atol = float(probes["atol"])
    except (KeyError, TypeError, ValueError, binascii.Error):
        raise EngineUnavailableError(
            f"{module} is only used when the artifact's probe windows match; this artifact has "
            f"none readable: {hint}"
        ) from None
    diff = (
        float(np.abs(engine.run(inputs) - expected).max())
        if len(inputs) == len(expected)
        else np.inf
    )
    if not diff <= atol:
        raise EngineUnavailableError(
            f"{module} gives results that differ from the build's by {diff:.3g} "
            f"(limit {atol:.3g}) on the artifact's probe windows: {hint}"
        )


def _decode(text: Any, shape: Any) -> np.ndarray:
    if not isinstance(text, str):
        raise TypeError("probe data must be a base64 string")
    flat = np.frombuffer(base64.b64decode(text, validate=True), dtype="<f4")
    return flat.reshape(-1, *(int(n) for n in shape)).astype(np.float32)


def _import_interpreter(module: str) -> type:
    try:
        return importlib.import_module(f"{module}.interpreter").Interpreter
    except ImportError as exc:
        raise EngineUnavailableError(
            f"{module} cannot be imported ({exc}); install it: "
            "pip install 'edgecomp-runtime[litert]'"
        ) from None


def _tensor(details: list[dict[str, Any]], name: str, side: str) -> dict[str, Any]:
    if len(details) != 1:
        raise ArtifactError(f"{name}: the model has {len(details)} {side}s, expected 1")
    detail = details[0]
    if detail["shape"][0] != 1 or len(detail["shape"]) != 3:
        raise ArtifactError(
            f"{name}: the model's {side} is {list(detail['shape'])}, expected [1, ., .]"
        )
    if detail["dtype"] not in (np.float32, np.int8):
        raise ArtifactError(f"{name}: the model's {side} dtype is {detail['dtype']}")
    return detail


def _check_io(inp: dict[str, Any], out: dict[str, Any], manifest: dict[str, Any]) -> None:
    """The model's tensor shapes and int8 parameters agree with the manifest's io."""
    io = manifest.get("io") or {}
    for side, detail in (("inputs", inp), ("outputs", out)):
        entry = (io.get(side) or [{}])[0]
        if list(entry.get("shape", ["batch", *detail["shape"][1:]]))[1:] != list(
            detail["shape"][1:]
        ):
            raise ArtifactError(
                f"{manifest['model_file']}: io.{side}[0].shape {entry.get('shape')} does not "
                f"match the model's {list(detail['shape'])}"
            )
        if detail["dtype"] == np.int8:
            scale, zero = detail["quantization"]
            if (entry.get("scale"), entry.get("zero_point")) != (scale, zero):
                raise ArtifactError(
                    f"{manifest['model_file']}: io.{side}[0] scale/zero_point "
                    f"{entry.get('scale')}/{entry.get('zero_point')} differ from the model's "
                    f"{scale}/{zero}"
                )


def _quantize(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    if detail["dtype"] != np.int8:
        return np.ascontiguousarray(x, dtype=np.float32)
    scale, zero = detail["quantization"]
    return np.clip(np.round(x / scale) + zero, *_INT8).astype(np.int8)


def _dequantize(y: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    if detail["dtype"] != np.int8:
        return y
    scale, zero = detail["quantization"]
    return (y.astype(np.float32) - zero) * np.float32(scale)


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
