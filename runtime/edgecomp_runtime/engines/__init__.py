"""Engines run a model file; one per backend, imported only when an artifact needs it."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import threading
import warnings
from collections.abc import Callable
from typing import Any, ClassVar, Protocol

import numpy as np

from edgecomp_runtime.errors import ArtifactError, EngineUnavailableError

# backend (manifest target.backend) -> "module:Class"
ENGINES: dict[str, str] = {
    "onnx": "edgecomp_runtime.engines.onnxruntime:OnnxRuntimeEngine",
    "openvino": "edgecomp_runtime.engines.openvino:OpenVinoEngine",
    "tflite": "edgecomp_runtime.engines.litert:LiteRtEngine",
    "tensorrt": "edgecomp_runtime.engines.tensorrt:TensorRtEngine",
    "executorch": "edgecomp_runtime.engines.refuse:ExecuTorchRefused",
    "null": "edgecomp_runtime.engines.null:NullEngine",
    "native": "edgecomp_runtime.engines.native:NativeEngine",
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
    # an engine that needs more than its package (a kernel compiled at install) says why not
    why = getattr(engine, "unavailable", lambda: None)()
    if why:
        raise EngineUnavailableError(f"backend '{backend}' is unavailable: {why}")
    return engine


def choose_engine(
    manifest: dict[str, Any],
    requested: str | None = None,
    files: dict[str, bytes] | None = None,
) -> tuple[str, type]:
    """The engine an artifact runs on: ``requested``, else the one its build chose.

    The build records its measured choice as ``recipe.lowering.engine`` (absent: the target's
    backend) and, as ``recipe.lowering.equivalent_engines``, the engines it ran the same model
    file on and found to pass the parity check. When the chosen engine is not installed, the
    first installed equivalent runs the artifact, with one RuntimeWarning per process saying so.
    So it does when the chosen engine has a ``slower_here(file bytes)`` hook that gives a reason
    this host would run its file slower than the build measured (the native engine's int8 layers
    on a CPU without a fast int8 path); ``requested`` runs the engine as asked.

    Args:
        manifest: The artifact's manifest.
        requested: An engine key the caller asked for (no fallback).
        files: The artifact's files by name, for ``slower_here`` (None: the hook is not asked).

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
    chosen, equivalents = _recorded_engines(manifest, backend)
    try:
        engine = get_engine(chosen)
    except EngineUnavailableError as exc:
        if not equivalents:
            raise
        missing, engine = str(exc), None
    else:
        slower = getattr(engine, "slower_here", None)
        if not (slower and files and equivalents):
            return chosen, engine
        missing = slower(engine_input(chosen, manifest, files))
        if not missing:
            return chosen, engine
    for key in equivalents:
        try:
            fallback = get_engine(key)
        except EngineUnavailableError:
            continue
        _warn_once(chosen, key, missing, slower=engine is not None)
        return key, fallback
    if engine is not None:  # slower here, but no equivalent is installed
        return chosen, engine
    raise EngineUnavailableError(
        f"{missing} (none of the equivalent engines the build measured, {equivalents}, is "
        "installed either)"
    )


def engine_input(key: str, manifest: dict[str, Any], files: dict[str, bytes]) -> bytes:
    """The bytes engine ``key`` reads: the file the build wrote for it
    (``recipe.lowering.engine_files``: engine key -> file name in the artifact), else the
    artifact's model file.

    Raises:
        ArtifactError: ``engine_files`` is not a mapping of names, or names a file the artifact
            does not hold.
    """
    named = manifest.get("recipe", {}).get("lowering", {}).get("engine_files", {})
    if not isinstance(named, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in named.items()
    ):
        raise ArtifactError(
            "manifest recipe.lowering.engine_files must map engine names to file names"
        )
    name = named.get(key, manifest["model_file"])
    if name not in files:
        raise ArtifactError(
            f"manifest recipe.lowering.engine_files names '{name}' for engine '{key}', "
            "which the artifact does not hold"
        )
    return files[name]


def _recorded_engines(manifest: dict[str, Any], backend: str) -> tuple[str, list[str]]:
    """``recipe.lowering``'s engine (default ``backend``) and equivalent engines, checked."""
    recipe = manifest.get("recipe", {})
    lowering = recipe.get("lowering", {}) if isinstance(recipe, dict) else None
    if not isinstance(lowering, dict):
        raise ArtifactError("manifest recipe.lowering must be an object")
    chosen = lowering.get("engine") or backend
    equivalents = lowering.get("equivalent_engines", [])
    if not isinstance(chosen, str):
        raise ArtifactError(f"manifest recipe.lowering.engine must be a string, got {chosen!r}")
    if not isinstance(equivalents, list) or not all(isinstance(k, str) for k in equivalents):
        raise ArtifactError(
            "manifest recipe.lowering.equivalent_engines must be a list of engine names, "
            f"got {equivalents!r}"
        )
    return chosen, equivalents


def route_batches(
    engine: Engine,
    key: str,
    model_bytes: bytes,
    manifest: dict[str, Any],
    *,
    threads: int | None,
    requested: str | None = None,
) -> Engine:
    """``engine`` (key ``key``), or a ``BatchRouter`` over it when the build routes large batches
    to another engine (``recipe.lowering.batch_routing``: ``{"engine", "min_batch"}``, the engine
    it measured faster from ``min_batch`` windows up on the same model file).

    No routing when an engine was ``requested`` by the caller, or the routed engine is ``key``.
    When the routed engine is not installed (or unknown to this runtime), every batch runs on
    ``engine``, with one RuntimeWarning per process saying so.

    Raises:
        ArtifactError: ``batch_routing`` is malformed (the message names the field).
    """
    routing = manifest.get("recipe", {}).get("lowering", {}).get("batch_routing")
    if requested or routing is None:
        return engine
    routed, min_batch = _routing(routing, manifest.get("model_file", "manifest"))
    if routed == key:
        return engine
    try:
        routed_type = get_engine(routed)
    except EngineUnavailableError as exc:
        _warn_once(routed, key, str(exc), routed_batches=min_batch)
        return engine
    lazy = LazyEngine(lambda: routed_type(model_bytes, manifest, threads=threads))
    return BatchRouter(engine, lazy, min_batch)


def _routing(routing: Any, model_file: str) -> tuple[str, int]:
    engine = routing.get("engine") if isinstance(routing, dict) else None
    min_batch = routing.get("min_batch") if isinstance(routing, dict) else None
    if (
        not isinstance(engine, str)
        or isinstance(min_batch, bool)
        or not isinstance(min_batch, int)
        or min_batch < 2
    ):
        raise ArtifactError(
            f"manifest.json ({model_file}): recipe.lowering.batch_routing must be "
            f'{{"engine": str, "min_batch": int >= 2}}, got {routing!r}'
        )
    return engine, min_batch


class BatchRouter:
    """Runs batches of at least ``min_batch`` windows on ``routed``, smaller ones on ``main``.

    Both engines run the same model file, each with its own session; ``route_batches`` wraps
    ``routed`` in a ``LazyEngine``, so its session is made by the first large batch. Thread-safe
    as the engines are.
    """

    def __init__(self, main: Engine, routed: Engine, min_batch: int) -> None:
        self.main, self.routed, self.min_batch = main, routed, min_batch

    def engine_for(self, batch: int) -> Engine:
        """The engine that runs a batch of ``batch`` windows."""
        return self.routed if batch >= self.min_batch else self.main

    def run(self, x: np.ndarray) -> np.ndarray:
        """Run scaled float32 windows [B, L, F] on the engine for B; scaled [B, H, F_out]."""
        return self.engine_for(len(x)).run(x)

    def bind(self, x: np.ndarray, out_shape: tuple[int, ...]) -> Callable[[], np.ndarray]:
        """The ``bind`` of the engine for ``x``'s batch size, or its ``run`` on ``x`` when it
        has none (see ``Engine``)."""
        engine = self.engine_for(len(x))
        bind = getattr(engine, "bind", None)
        if bind is not None:
            return bind(x, out_shape)
        return lambda: engine.run(x)


class LazyEngine:
    """An engine created on its first ``run`` (once, under a lock), then used as it is."""

    def __init__(self, create: Callable[[], Engine]) -> None:
        self._create, self._engine, self._lock = create, None, threading.Lock()

    @property
    def engine(self) -> Engine:
        """The engine, created now if this is the first use."""
        engine = self._engine
        if engine is None:
            with self._lock:
                if self._engine is None:
                    self._engine = self._create()
                engine = self._engine
        return engine

    def run(self, x: np.ndarray) -> np.ndarray:
        """The engine's ``run``."""
        return self.engine.run(x)

    def bind(self, x: np.ndarray, out_shape: tuple[int, ...]) -> Callable[[], np.ndarray]:
        """The engine's ``bind``, or its ``run`` on ``x`` when it has none."""
        engine = self.engine
        bind = getattr(engine, "bind", None)
        return bind(x, out_shape) if bind is not None else (lambda: engine.run(x))


_WARNED: set[tuple[str, str]] = set()


def _warn_once(
    chosen: str, fallback: str, why: str, *, routed_batches: int = 0, slower: bool = False
) -> None:
    if (chosen, fallback) in _WARNED:
        return
    _WARNED.add((chosen, fallback))
    what = f"engine for batches of {routed_batches}+ windows" if routed_batches else "engine"
    state = "would run slower on this host" if slower else "is unavailable"
    asked = f"; load(..., engine='{chosen}') runs it there anyway" if slower else ""
    warnings.warn(
        f"the artifact's {what} '{chosen}' {state} ({why}); running it on '{fallback}', "
        f"which its build measured on the same model file and found equivalent{asked}",
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
