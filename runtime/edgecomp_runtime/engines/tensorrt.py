"""TensorRT on NVIDIA devices (Jetson), with a plan cache; onnxruntime where TensorRT is absent.

On first load the engine is built from the artifact's ONNX with the builder settings in the
manifest (``recipe.lowering.tensorrt``) and its serialized plan is cached under
``$EDGECOMP_TRT_CACHE`` (default ``~/.cache/edgecomp/tensorrt``), keyed by (TensorRT version, GPU
name, compute capability, precision, model sha256). A plan is loaded only when the key stored
beside it equals the device's key; any mismatch rebuilds it. Without the ``tensorrt`` package or a
CUDA GPU, the ONNX model runs on onnxruntime (CUDA provider if present, else CPU) and a
RuntimeWarning names the reason; ``ran_on`` and ``fallback_reason`` say what ran. No torch.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import json
import os
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np

from edgecomp_runtime._atomic import atomic_write
from edgecomp_runtime.errors import ArtifactError, EdgecompRuntimeError

CACHE_ENV = "EDGECOMP_TRT_CACHE"
_CUDA_MEMCPY_H2D, _CUDA_MEMCPY_D2H = 1, 2
_CC_MAJOR, _CC_MINOR = 75, 76  # cudaDevAttrComputeCapabilityMajor / Minor


class PlanKey(NamedTuple):
    """What a serialized TensorRT plan is valid for; any difference means rebuild."""

    tensorrt: str
    gpu: str
    compute_capability: str
    precision: str
    model_sha256: str

    def digest(self) -> str:
        """File stem of the plan in the cache."""
        return hashlib.sha256(json.dumps(self._asdict(), sort_keys=True).encode()).hexdigest()[:32]


class PlanCache:
    """Serialized plans in ``root``: ``<digest>.plan`` plus ``<digest>.json`` (key, plan sha256)."""

    def __init__(self, root: str | Path | None = None) -> None:
        default = Path.home() / ".cache" / "edgecomp" / "tensorrt"
        self.root = Path(root or os.environ.get(CACHE_ENV) or default)

    def get_or_build(self, key: PlanKey, build: Callable[[], bytes]) -> tuple[bytes, bool]:
        """The plan cached for ``key``, else ``build()``, stored; returns (plan, was_cached)."""
        plan = self.load(key)
        if plan is not None:
            return plan, True
        plan = build()
        self.store(key, plan)
        return plan, False

    def load(self, key: PlanKey) -> bytes | None:
        """The plan stored for exactly ``key``, or None (missing, other key, or damaged)."""
        stem = self.root / key.digest()
        try:
            meta = json.loads(stem.with_suffix(".json").read_text())
            plan = stem.with_suffix(".plan").read_bytes()
        except (OSError, ValueError):
            return None
        if meta.get("key") != key._asdict():
            warnings.warn(
                f"{stem}.plan was built for {meta.get('key')}, not {key._asdict()}; rebuilding",
                RuntimeWarning,
                stacklevel=3,
            )
            return None
        if meta.get("plan_sha256") != hashlib.sha256(plan).hexdigest():
            return None
        return plan

    def store(self, key: PlanKey, plan: bytes) -> None:
        """Write the plan, then its key (atomically each): a reader never pairs them wrongly."""
        stem = self.root / key.digest()
        meta = {"key": key._asdict(), "plan_sha256": hashlib.sha256(plan).hexdigest()}
        atomic_write(stem.with_suffix(".plan"), lambda fh: fh.write(plan))
        text = json.dumps(meta, indent=1).encode()
        atomic_write(stem.with_suffix(".json"), lambda fh: fh.write(text))


class TensorRtEngine:
    """Runs a tensorrt artifact: TensorRT when it and a CUDA GPU are here, else onnxruntime.

    Attributes:
        ran_on: What runs the model, e.g. "tensorrt 10.3.0 on Orin (sm_87)" or
            "onnxruntime 1.20.1 CPUExecutionProvider".
        fallback_reason: Why TensorRT is not used, or None.
        plan_cached: True when the TensorRT plan came from the cache (None on the fallback).
    """

    native: ClassVar[str] = "TensorRT"  # what a bench names when the fallback ran instead
    module: ClassVar[str] = "onnxruntime"  # the fallback's; TensorRT comes with JetPack
    package: ClassVar[str] = "onnxruntime"
    extra: ClassVar[str] = "tensorrt"
    min_version: ClassVar[str] = "1.19"  # the fallback runs the same ONNX as the onnx engine

    def __init__(
        self, model_bytes: bytes, manifest: dict[str, Any], *, threads: int | None
    ) -> None:
        self._name = manifest["model_file"]
        self.plan_cached: bool | None = None
        try:
            import tensorrt as trt

            device = _Cuda()
        except (ImportError, OSError) as exc:
            self.fallback_reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
            self._runner, self.ran_on = _onnxruntime(model_bytes, manifest, threads)
            warnings.warn(
                f"{self._name}: TensorRT is not used ({self.fallback_reason}); running the ONNX "
                f"model on {self.ran_on}",
                RuntimeWarning,
                stacklevel=2,
            )
            return
        self.fallback_reason = None
        settings = _builder_settings(manifest, self._name)
        key = PlanKey(
            trt.__version__,
            device.name,
            device.capability,
            manifest["precision"],
            hashlib.sha256(model_bytes).hexdigest(),
        )
        plan, self.plan_cached = PlanCache().get_or_build(
            key, lambda: _build_plan(trt, model_bytes, settings, self._name)
        )
        self._runner = _TrtRunner(trt, device, plan, settings, self._name)
        self.ran_on = (
            f"tensorrt {trt.__version__} on {device.name} (sm_{device.capability.replace('.', '')})"
        )

    def run(self, x: np.ndarray) -> np.ndarray:
        """Run scaled float32 windows [B, L, F]; returns scaled float32 [B, H, F_out]."""
        return self._runner(np.ascontiguousarray(x, dtype=np.float32))


def _builder_settings(manifest: dict[str, Any], name: str) -> dict[str, Any]:
    """``recipe.lowering.tensorrt`` of the manifest, checked enough to build with."""
    lowering = (manifest.get("recipe") or {}).get("lowering") or {}
    settings = lowering.get("tensorrt") if isinstance(lowering, dict) else None
    shapes = settings.get("shapes") if isinstance(settings, dict) else None
    if not (
        isinstance(shapes, list) and len(shapes) == 3 and all(isinstance(s, list) for s in shapes)
    ):
        raise ArtifactError(
            f"{name}: the manifest has no recipe.lowering.tensorrt.shapes [min, opt, max] to "
            "build the TensorRT engine with; rebuild the artifact for a Jetson target"
        )
    return settings


def _onnxruntime(
    model_bytes: bytes, manifest: dict[str, Any], threads: int | None
) -> tuple[Callable, str]:
    """onnxruntime on CUDA when its provider is present, else the CPU engine."""
    import onnxruntime as ort

    from edgecomp_runtime.engines.onnxruntime import OnnxRuntimeEngine

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        engine = OnnxRuntimeEngine(model_bytes, manifest, threads=threads)
        return engine.run, f"onnxruntime {ort.__version__} CPUExecutionProvider"
    session = ort.InferenceSession(
        model_bytes, providers=["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    name = session.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        return np.asarray(session.run(None, {name: x})[0], dtype=np.float32)

    return run, f"onnxruntime {ort.__version__} CUDAExecutionProvider"


def unavailable_reason() -> str | None:
    """Why TensorRT cannot run here (no ``tensorrt`` package, no CUDA GPU), or None."""
    try:
        import tensorrt  # noqa: F401

        _Cuda()
    except (ImportError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    return None


class _Cuda:
    """The CUDA runtime and driver through ctypes: device 0's name and capability, memory."""

    def __init__(self) -> None:
        self.rt = _load_library("cudart", ("libcudart.so", "libcudart.so.12", "libcudart.so.11.0"))
        driver = _load_library("cuda", ("libcuda.so.1", "libcuda.so"))
        name = ctypes.create_string_buffer(256)
        if driver.cuInit(0) or driver.cuDeviceGetName(name, 256, 0):
            raise OSError("no CUDA GPU visible (cuInit/cuDeviceGetName failed)")
        self.name = name.value.decode(errors="replace")
        major, minor = ctypes.c_int(), ctypes.c_int()
        self.check(self.rt.cudaDeviceGetAttribute(ctypes.byref(major), _CC_MAJOR, 0), "attribute")
        self.check(self.rt.cudaDeviceGetAttribute(ctypes.byref(minor), _CC_MINOR, 0), "attribute")
        self.capability = f"{major.value}.{minor.value}"

    def check(self, status: int, what: str) -> None:
        """Raise on a non-zero cudaError_t."""
        if status:
            raise EdgecompRuntimeError(f"CUDA {what} failed with cudaError {status}")

    def malloc(self, nbytes: int) -> int:
        """Device memory of ``nbytes``; its address."""
        pointer = ctypes.c_void_p()
        self.check(self.rt.cudaMalloc(ctypes.byref(pointer), ctypes.c_size_t(nbytes)), "malloc")
        return int(pointer.value or 0)

    def copy(self, dst: int, src: int, nbytes: int, kind: int) -> None:
        """Synchronous cudaMemcpy."""
        status = self.rt.cudaMemcpy(
            ctypes.c_void_p(dst), ctypes.c_void_p(src), ctypes.c_size_t(nbytes), kind
        )
        self.check(status, "memcpy")


def _load_library(name: str, candidates: tuple[str, ...]) -> ctypes.CDLL:
    found = ctypes.util.find_library(name)
    for candidate in ((found,) if found else ()) + candidates:
        try:
            return ctypes.CDLL(candidate)
        except OSError:
            continue
    raise OSError(f"the CUDA library '{name}' is not installed (no NVIDIA GPU driver/toolkit)")


def _build_plan(trt: Any, model_bytes: bytes, settings: dict[str, Any], name: str) -> bytes:
    """Parse the ONNX model and build a serialized plan with the manifest's builder settings."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    explicit = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)
    network = builder.create_network(0 if explicit is None else 1 << int(explicit))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(model_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ArtifactError(f"{name}: TensorRT {trt.__version__} cannot parse the model: {errors}")
    config = builder.create_builder_config()
    for flag in settings.get("flags", []):
        config.set_flag(_builder_flag(trt, flag, name))
    for flag in settings.get("clear_flags", []):
        config.clear_flag(_builder_flag(trt, flag, name))
    workspace = int(settings.get("workspace_mb", 256)) << 20
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    profile = builder.create_optimization_profile()
    profile.set_shape(network.get_input(0).name, *settings["shapes"])
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ArtifactError(f"{name}: TensorRT {trt.__version__} failed to build the engine")
    return bytes(plan)


def _builder_flag(trt: Any, flag: str, name: str) -> Any:
    try:
        return getattr(trt.BuilderFlag, flag)
    except AttributeError:
        raise ArtifactError(
            f"{name}: the manifest asks for builder flag {flag!r}, which TensorRT "
            f"{trt.__version__} does not have"
        ) from None


class _TrtRunner:
    """One execution context, device buffers for the max batch; one call at a time."""

    def __init__(
        self, trt: Any, cuda: _Cuda, plan: bytes, settings: dict[str, Any], name: str
    ) -> None:
        self._cuda = cuda
        self._engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(plan)
        if self._engine is None:
            raise ArtifactError(f"{name}: TensorRT could not deserialize the cached plan")
        self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._input = inputs[0]
        self._output = next(n for n in names if n not in inputs)
        self._max_batch = int(settings["shapes"][2][0])
        self._context.set_input_shape(self._input, tuple(settings["shapes"][2]))
        out_shape = tuple(self._context.get_tensor_shape(self._output))
        self._buffers = {
            self._input: cuda.malloc(4 * int(np.prod(settings["shapes"][2]))),
            self._output: cuda.malloc(4 * int(np.prod(out_shape))),
        }
        for tensor, address in self._buffers.items():
            self._context.set_tensor_address(tensor, address)
        self._lock = threading.Lock()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        chunks = [x[i : i + self._max_batch] for i in range(0, len(x), self._max_batch)]
        return np.concatenate([self._run(chunk) for chunk in chunks])

    def _run(self, x: np.ndarray) -> np.ndarray:
        with self._lock:
            self._context.set_input_shape(self._input, x.shape)
            out = np.empty(tuple(self._context.get_tensor_shape(self._output)), np.float32)
            self._cuda.copy(self._buffers[self._input], x.ctypes.data, x.nbytes, _CUDA_MEMCPY_H2D)
            if not self._context.execute_async_v3(0):  # default stream; memcpy below syncs
                raise EdgecompRuntimeError("TensorRT failed to run the engine")
            self._cuda.copy(
                out.ctypes.data, self._buffers[self._output], out.nbytes, _CUDA_MEMCPY_D2H
            )
        return out
