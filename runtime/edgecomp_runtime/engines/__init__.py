"""Engines run a model file; one per backend, imported only when an artifact needs it."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import warnings
from typing import Any, ClassVar, Protocol

import numpy as np

from edgecomp_runtime.errors import EngineUnavailableError

# backend (manifest target.backend) -> "module:Class"
ENGINES: dict[str, str] = {
    "onnx": "edgecomp_runtime.engines.onnxruntime:OnnxRuntimeEngine",
    "openvino": "edgecomp_runtime.engines.openvino:OpenVinoEngine",
    "tflite": "edgecomp_runtime.engines.litert:LiteRtEngine",
    "tensorrt": "edgecomp_runtime.engines.tensorrt:TensorRtEngine",
    "executorch": "edgecomp_runtime.engines.refuse:ExecuTorchRefused",
    "null": "edgecomp_runtime.engines.null:NullEngine",
}


# backend -> "module:Class" registered at run time by register_engine (take precedence)
REGISTERED: dict[str, str] = {}


class Engine(Protocol):
    """Runs scaled float32 windows [B, L, F] through a model file, giving [B, H, F_out].

    Implementations import their package inside ``__init__``, never at module import, and keep no
    mutable per-call state: ``run`` may be called from several threads at once.

    Optional: ``bind(x, out_shape) -> run()``, binding a caller-owned float32 input buffer and an
    output of ``out_shape`` once; each ``run()`` runs what ``x`` holds and returns the output array,
    overwritten by the next call (``Model.predict`` keeps one per thread and batch size; see
    ``OnnxRuntimeEngine.bind``). Engines without it run through ``run``.
    """

    module: ClassVar[str]  # import name of the package the engine needs, e.g. "onnxruntime"
    package: ClassVar[str]  # its pip name, for the install hint
    extra: ClassVar[str]  # the edgecomp-runtime extra that installs it, e.g. "onnx"
    # oldest ``package`` version that runs every artifact kind the engine receives; the extra in
    # runtime/pyproject.toml declares the same bound (tests/runtime/test_extras.py checks both)
    min_version: ClassVar[str]

    def __init__(
        self, model_bytes: bytes, manifest: dict[str, Any], *, threads: int | None
    ) -> None: ...

    def run(self, x: np.ndarray) -> np.ndarray: ...


def register_engine(backend: str, engine: str) -> None:
    """Let ``backend``'s artifacts run on ``engine`` ("module:Class") in this process, in place of
    ``ENGINES[backend]``.

    For engines that cannot ship in the runtime, because they need torch (ExecuTorch's Python
    bindings): the compiler registers its own on the build host. The runtime imports nothing here.
    """
    REGISTERED[backend] = engine


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
    module_name, _, class_name = REGISTERED.get(backend, ENGINES[backend]).partition(":")
    engine = getattr(importlib.import_module(module_name), class_name)
    if not _installed(engine.module):
        raise EngineUnavailableError(
            f"backend '{backend}' needs the '{engine.package}' package, which is not installed: "
            f"{install_line(engine)}"
        )
    found = _version(engine.package)
    if found is not None and version_tuple(found) < version_tuple(engine.min_version):
        raise EngineUnavailableError(
            f"backend '{backend}' needs {engine.package}>={engine.min_version}, found {found}: "
            f"{install_line(engine, upgrade=True)}"
        )
    return engine


def choose_engine(manifest: dict[str, Any], requested: str | None = None) -> tuple[str, type]:
    """The engine an artifact runs on: ``requested``, else the one its build chose.

    The build records its measured choice as ``recipe.lowering.engine`` (absent: the target's
    backend) and, as ``recipe.lowering.equivalent_engines``, the engines it ran the same model
    file on and found to pass the parity check. When the chosen engine is not installed, the
    first installed equivalent runs the artifact, with one RuntimeWarning per process saying so.

    Returns:
        (engine key of ``ENGINES``, engine class).

    Raises:
        EngineUnavailableError: The chosen engine is not installed and no recorded equivalent
            is; the message names the extra that installs the chosen one.
    """
    backend = manifest["target"]["backend"]
    if requested:
        return requested, get_engine(requested)
    if backend not in ENGINES and backend not in REGISTERED:  # the model file's format is unknown
        get_engine(backend)  # raises, naming the backend and the upgrade
    lowering = manifest.get("recipe", {}).get("lowering", {})
    chosen = lowering.get("engine") or backend
    equivalents = list(lowering.get("equivalent_engines", ()))
    try:
        return chosen, get_engine(chosen)
    except EngineUnavailableError as exc:
        if not equivalents:
            raise
        missing = str(exc)
    for key in equivalents:
        try:
            engine = get_engine(key)
        except EngineUnavailableError:
            continue
        _warn_once(chosen, key, missing)
        return key, engine
    raise EngineUnavailableError(
        f"{missing} (none of the equivalent engines the build measured, {equivalents}, is "
        "installed either)"
    )


_WARNED: set[tuple[str, str]] = set()


def _warn_once(chosen: str, fallback: str, why: str) -> None:
    if (chosen, fallback) in _WARNED:
        return
    _WARNED.add((chosen, fallback))
    warnings.warn(
        f"the artifact's engine '{chosen}' is unavailable ({why}); running it on '{fallback}', "
        "which its build measured on the same model file and found equivalent",
        RuntimeWarning,
        stacklevel=3,
    )


def install_line(engine: type, *, upgrade: bool = False) -> str:
    """The pip command that installs ``engine``'s package through its edgecomp-runtime extra."""
    target = f"'edgecomp-runtime[{engine.extra}]'" if engine.extra else "edgecomp-runtime"
    return f"pip install {'-U ' if upgrade else ''}{target}"


def version_tuple(version: str) -> tuple[int, ...]:
    """Leading release numbers of a version string: "1.19.2rc1" -> (1, 19, 2)."""
    numbers = []
    for part in version.split("."):
        digits = ""
        for char in part:
            if not char.isdigit():
                break
            digits += char
        if not digits:
            break
        numbers.append(int(digits))
        if len(digits) < len(part):
            break
    return tuple(numbers)


def _version(package: str) -> str | None:
    """Installed version of a distribution, or None (a module found without metadata)."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
