"""Recurrent models (stacked LSTM / GRU + Linear head) on edgecomp's own compiled kernel.

The engine reads the artifact's ``.native`` file (``recipe.lowering.engine_files["native"]``;
format in runtime/FORMAT.md) and runs it on edgecomp_runtime/native/kernel.c, compiled when the
runtime was installed. Where it was not (no C compiler at install), ``get_engine("native")`` raises
EngineUnavailableError saying so, and ``choose_engine`` falls back to the build's recorded
equivalent engine (ONNX Runtime on the artifact's ONNX model file) with one warning. So does
``choose_engine`` when the file has int8 layers and this CPU has no fast int8 path for them (neither
AVX512-VNNI nor AVX2: ``slower_here``), unless the caller asked for ``engine="native"``.
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from edgecomp_runtime import native
from edgecomp_runtime.errors import ArtifactError, EngineUnavailableError, InputShapeError
from edgecomp_runtime.native.format import NativeModel


class NativeEngine:
    """One prepared ``.native`` model; ``run`` holds no per-call state and releases the GIL."""

    module: ClassVar[str] = "numpy"  # the kernel is part of edgecomp-runtime; see unavailable()
    package: ClassVar[str] = "numpy"
    extra: ClassVar[str] = ""
    min_version: ClassVar[str] = "1.26"
    version_package: ClassVar[str] = "edgecomp-runtime"  # whose version a build records

    @staticmethod
    def unavailable() -> str | None:
        """Why this engine cannot run on this host (None when it can)."""
        return native.unavailable_reason()

    @staticmethod
    def slower_here(model_bytes: bytes) -> str | None:
        """Why this host would run the ``.native`` file slower than the engines its build found
        equivalent (None when it would not): int8 layers on a CPU without AVX512-VNNI or AVX2,
        where they run as integer math in float32 (the LSTM measured slower than ONNX Runtime's
        int8 there). ``choose_engine`` asks, given the artifact's files."""
        if native.host_isa() != "portable":
            return None
        try:
            header = native.describe(bytes(model_bytes))
        except ArtifactError:
            return None  # the engine's own load names what is wrong
        if not any(array["dtype"] == "int8" for array in header["arrays"]):
            return None
        return (
            f"this CPU ({platform.machine()}) lacks AVX512-VNNI and AVX2, so the native kernel "
            "would run the file's int8 layers as integer math in float32"
        )

    def __init__(
        self, model_bytes: bytes, manifest: dict[str, Any], *, threads: int | None
    ) -> None:
        if not native.available():
            raise EngineUnavailableError(f"backend 'native' is unavailable: {self.unavailable()}")
        files = manifest.get("recipe", {}).get("lowering", {}).get("engine_files", {})
        self._name = files.get("native", manifest.get("model_file", "model.native"))
        if not isinstance(model_bytes, (bytes, bytearray, memoryview)):
            raise ArtifactError(f"{self._name}: the native engine needs the .native file's bytes")
        self._kernel = native.Kernel(bytes(model_bytes), self._name)  # ArtifactError if malformed
        if "spec" in manifest:  # the build's own parity runs pass no manifest
            _check_spec(self._kernel.model, manifest["spec"], self._name)
        self.threads = 1  # one thread per call; concurrent calls run in parallel (GIL released)

    def bind(self, x: np.ndarray, out_shape: tuple[int, ...]) -> Callable[[], np.ndarray]:
        """Bind the float32 input buffer ``x`` [B, L, F] and an output of ``out_shape`` once;
        each call of the returned function runs what ``x`` holds and returns the output array,
        overwritten by the next call (see ``engines.Engine``)."""
        try:
            return self._kernel.bind(x, out_shape)
        except ValueError as exc:
            raise InputShapeError(str(exc)) from None

    def stepper(self) -> native.Stepper:
        """A stream's step on this model's kernel, with its own zero state (``native.Stepper``):
        ``Model.stream()`` runs it instead of the artifact's step model."""
        return self._kernel.stepper()

    def run(self, x: np.ndarray) -> np.ndarray:
        """Run scaled float32 windows [B, L, F]; returns scaled float32 [B, H, F_out]."""
        try:
            return self._kernel.run(x)
        except ValueError as exc:
            raise InputShapeError(str(exc)) from None


def _check_spec(model: NativeModel, spec: dict[str, Any], name: str) -> None:
    """Refuse a ``.native`` file whose shapes (or residual targets) are not the artifact's: it
    would forecast another shape, or add the wrong reading, for the same window."""
    features, targets = list(spec["features"]), list(spec["targets"])
    expected = {
        "input_len": spec["input_len"],
        "n_features": len(features),
        "horizon": spec["horizon"],
        "n_targets": len(targets),
    }
    for field, value in expected.items():
        if getattr(model, field) != value:
            raise ArtifactError(
                f"{name}: {field} {getattr(model, field)} is not the manifest's {value} "
                "(spec, io): the file is not this artifact's model"
            )
    index = [features.index(t) if t in features else -1 for t in targets]
    if model.residual and list(model.target_index) != index:
        raise ArtifactError(
            f"{name}: target_index {list(model.target_index)} is not the positions of the "
            f"manifest's targets {targets} among its features ({index}), which the residual adds"
        )
