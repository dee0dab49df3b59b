"""ExecuTorch programs (.pte, XNNPACK delegate) on ExecuTorch's Python runtime: a build-host engine.

ExecuTorch's Python runtime needs torch: ``executorch.extension.pybindings.portable_lib`` imports
torch and its extension links libtorch (measured with executorch 1.5.1: see
targets/executorch/README.md). The on-device runtime never imports torch, so this engine lives with
the compiler: importing it registers it with ``edgecomp_runtime.engines.register_engine`` for this
process (the build's parity check, `edgecomp bench` and the tests on the build host). On a gateway
the runtime refuses .pte artifacts and names ExecuTorch's own (C++) runtime instead.

The program's batch is dynamic up to ``recipe.lowering.max_batch`` windows (its memory plan);
``run`` splits larger batches. Thread safety: one loaded method per calling thread
(``threading.local``), each from the same program bytes, so ``run`` may be called from several
threads at once. XNNPACK's thread pool is one per process: ``threads`` resizes it for everyone.
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar

import numpy as np

from edgecomp_runtime.engines import register_engine
from edgecomp_runtime.errors import ArtifactError, EdgecompRuntimeError, EngineUnavailableError

_FLOAT = 6  # ExecuTorch ScalarType of float32
NEEDS_TORCH = (
    "the executorch engine needs torch as well as executorch (ExecuTorch's Python runtime "
    "imports torch and links libtorch): pip install 'edgecomp[executorch]'"
)


class ExecuTorchEngine:
    """Runs .pte artifacts lowered to XNNPACK; float32 windows in, float32 forecasts out.

    Args:
        model_bytes: The .pte file.
        manifest: The artifact's manifest (``model_file``, ``io``, ``recipe.lowering``).
        threads: XNNPACK threads of this process; None leaves the pool as it is.
    """

    module: ClassVar[str] = "executorch"
    package: ClassVar[str] = "executorch"
    extra: ClassVar[str] = (
        ""  # installed by the compiler's extra: pip install 'edgecomp[executorch]'
    )
    min_version: ClassVar[str] = "1.5.1"  # the release the target lowers with (COMPATIBILITY)

    def __init__(
        self, model_bytes: bytes, manifest: dict[str, Any], *, threads: int | None
    ) -> None:
        self._name = manifest["model_file"]
        self._bytes = bytes(model_bytes)
        self._torch, self._runtime = _import_runtime()
        lowering = (manifest.get("recipe") or {}).get("lowering") or {}
        if threads:
            _set_threads(threads)
        self._local = threading.local()
        meta = self._method().metadata
        self._shape = _check_meta(meta, manifest, self._name)
        self._max_batch = _max_batch(lowering.get("max_batch"), self._shape[0], self._name)

    def run(self, x: np.ndarray) -> np.ndarray:
        """Run scaled float32 windows [B, L, F]; returns scaled float32 [B, H, F_out]."""
        expected = tuple(self._shape[1:])
        if x.ndim != 3 or x.shape[1:] != expected:
            raise EdgecompRuntimeError(
                f"{self._name}: expected windows [batch, {expected[0]}, {expected[1]}], "
                f"got {list(x.shape)}"
            )
        method = self._method()
        parts = []
        for start in range(0, len(x), self._max_batch):
            batch = np.ascontiguousarray(x[start : start + self._max_batch], dtype=np.float32)
            try:
                (out,) = method.execute((self._torch.from_numpy(batch),))
            except (RuntimeError, ValueError) as exc:
                raise EdgecompRuntimeError(
                    f"{self._name}: executorch failed to run the program ({_first_line(exc)})"
                ) from None
            parts.append(out.numpy().copy())  # the output may live in the method's memory plan
        return np.concatenate(parts) if len(parts) != 1 else parts[0]

    def _method(self) -> Any:
        method = getattr(self._local, "method", None)
        if method is None:
            method = self._load()
            self._local.method = method
        return method

    def _load(self) -> Any:
        try:
            program = self._runtime.get().load_program(self._bytes)
            method = program.load_method("forward")
        except (RuntimeError, ValueError) as exc:
            raise ArtifactError(
                f"{self._name}: executorch cannot load the program ({_first_line(exc)})"
            ) from None
        if method is None:
            raise ArtifactError(f"{self._name}: the program has no 'forward' method")
        self._local.program = program  # the method borrows from its program
        return method


def _import_runtime() -> tuple[Any, Any]:
    try:
        import torch
    except ImportError:
        raise EngineUnavailableError(NEEDS_TORCH) from None
    try:
        from executorch.runtime import Runtime
    except ImportError as exc:
        raise EngineUnavailableError(
            f"executorch's runtime cannot be imported ({exc}): pip install 'edgecomp[executorch]'"
        ) from None
    return torch, Runtime


def _set_threads(threads: int) -> None:
    from executorch.extension.pybindings import portable_lib

    if portable_lib._threadpool_get_thread_count() != threads:
        portable_lib._unsafe_reset_threadpool(threads)


def _check_meta(meta: Any, manifest: dict[str, Any], name: str) -> tuple[int, ...]:
    """The planned input shape [max_batch, L, F]; one float input and output, as the io says."""
    if meta.num_inputs() != 1 or meta.num_outputs() != 1:
        raise ArtifactError(
            f"{name}: the program has {meta.num_inputs()} inputs and {meta.num_outputs()} "
            "outputs, expected 1 and 1"
        )
    io = manifest.get("io") or {}
    shapes = {}
    tensors = (("inputs", meta.input_tensor_meta(0)), ("outputs", meta.output_tensor_meta(0)))
    for side, info in tensors:
        if info.dtype() != _FLOAT:
            raise ArtifactError(f"{name}: the program's {side[:-1]} is not float32")
        sizes = tuple(int(n) for n in info.sizes())
        entry = (io.get(side) or [{}])[0]
        want = list(entry.get("shape", ["batch", *sizes[1:]]))[1:]
        if len(sizes) != 3 or list(sizes[1:]) != want:
            raise ArtifactError(
                f"{name}: io.{side}[0].shape {entry.get('shape')} does not match the program's "
                f"{list(sizes)}"
            )
        shapes[side] = sizes
    return shapes["inputs"]


def _max_batch(recorded: Any, planned: int, name: str) -> int:
    if recorded is None:
        return planned
    if isinstance(recorded, bool) or not isinstance(recorded, int) or recorded < 1:
        raise ArtifactError(f"{name}: recipe.lowering.max_batch must be a positive integer")
    return min(recorded, planned)


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


register_engine("executorch", f"{__name__}:ExecuTorchEngine")
