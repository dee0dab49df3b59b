"""The target template: the flow every backend shares, and what a backend declares as data.

``Target.emit`` runs, for every backend, the same steps::

    check_request (profile, precision, typed options, calibration windows)
      -> lower (the backend: fp32 files)  -> quantize (the backend, for any other precision)
      -> check_io -> parity (through the runtime's engine, against the torch reference)
      -> memory budget -> write the files (atomically) -> EmitResult (toolchain versions)

A backend implements ``lower`` (and ``quantize`` when it declares more than fp32) and declares
``capabilities`` and ``options_type`` (see targets/README.md and targets/null/).
"""

from __future__ import annotations

import abc
import importlib.util
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .declared import (
    PROFILE_KEYS,
    Capabilities,
    Int4Kind,
    Precision,
    TargetError,
    TargetOptions,
    TargetProfile,
    unknown_key,
)

if TYPE_CHECKING:
    from edgecomp.spec import Model

FP32_TOLERANCE = 1e-4  # max abs diff of an fp32 artifact vs the reference, scaled units
N_PARITY_WINDOWS = 64

__all__ = [  # the template, and (re-exported) what a target declares as data
    "PROFILE_KEYS",
    "Capabilities",
    "EmitResult",
    "Int4Kind",
    "Lowered",
    "Precision",
    "Request",
    "Target",
    "TargetError",
    "TargetOptions",
    "TargetProfile",
    "check_io",
    "check_windows",
    "parity_windows",
    "spread",
    "unknown_key",
]


@dataclass(frozen=True)
class Request:
    """A checked emit request: what ``lower`` and ``quantize`` receive.

    Attributes:
        model: nn.Module (or ONNX source) + ModelSpec; maps scaled [B, L, F] to [B, H, F_out].
        profile: The target profile.
        precision: The precision asked for, declared by the backend and allowed by the profile.
        options: The profile's options with the build's overrides, typed.
        windows: Scaled float32 calibration windows [N, L, F], or None.
    """

    model: Model
    profile: TargetProfile
    precision: Precision
    options: TargetOptions
    windows: np.ndarray | None = None


@dataclass(frozen=True)
class Lowered:
    """What ``lower`` / ``quantize`` produced, in memory.

    Attributes:
        model: Bytes of the main model file.
        io: Inputs and outputs as the manifest's ``io`` describes them.
        layers: Per layer/op: name, op_type, precision, method, reason.
        lowering: The lowering's settings, recorded in the manifest's recipe.
        ir: The backend's in-memory graph, handed from ``lower`` to ``quantize``.
        extra_files: Other files of the artifact, by name.
    """

    model: bytes
    io: dict[str, Any]
    layers: list[dict[str, Any]]
    lowering: dict[str, Any] = field(default_factory=dict)
    ir: Any = None
    extra_files: dict[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class EmitResult:
    """What a backend wrote into out_dir.

    Attributes:
        model_file: Name of the main model file inside out_dir.
        files: Names of every file written (model_file included).
        toolchain: Versions of the libraries that produced the files.
        io: Inputs and outputs as the manifest's ``io`` describes them.
        layers: Per layer/op: name, op_type, precision, method, reason.
        lowering: The lowering's settings (parity included), recorded in the manifest's recipe.
    """

    model_file: str
    files: list[str]
    toolchain: dict[str, str]
    io: dict[str, Any]
    layers: list[dict[str, Any]]
    lowering: dict[str, Any] = field(default_factory=dict)


class Target(abc.ABC):
    """A backend. Subclasses declare ``name``, ``model_file``, ``capabilities`` and
    ``options_type``, implement ``lower`` (and ``quantize``), and import their toolchain inside
    methods, never at module import."""

    name: ClassVar[str]
    model_file: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    options_type: ClassVar[type[TargetOptions]] = TargetOptions
    fp32_tolerance: ClassVar[float] = FP32_TOLERANCE

    # derived from ``capabilities`` (read-only aliases kept for callers)
    supported_precisions: ClassVar[frozenset[Precision]]
    needs_calibration: ClassVar[frozenset[Precision]]
    requires: ClassVar[tuple[str, ...]]
    install: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        caps = cls.__dict__.get("capabilities")
        if caps is not None:
            cls.supported_precisions = caps.precisions
            cls.needs_calibration = caps.calibrated
            cls.requires, cls.install = caps.requires, caps.install

    @classmethod
    def is_available(cls) -> bool:
        """True when every module in ``requires`` is installed (found, not imported: toolchains
        such as litert-torch take seconds to import)."""
        try:
            return all(importlib.util.find_spec(module) is not None for module in cls.requires)
        except (ImportError, ValueError):
            return False

    @classmethod
    def missing_reason(cls) -> str:
        """Why is_available() is false, with the install command."""
        names = ", ".join(cls.requires[:-1]) + f" or {cls.requires[-1]}" if cls.requires else ""
        return f"target backend '{cls.name}': {names} is not installed: {cls.install}"

    @classmethod
    def option_applies(cls, name: str, value: Any, module_type: type, precision: str) -> bool:
        """Whether option ``name`` set to ``value`` applies to a forecaster class at
        ``precision`` (`edgecomp tune` offers only what applies); True unless a backend says."""
        return True

    @classmethod
    def parse_options(cls, profile: TargetProfile) -> TargetOptions:
        """The profile's options, typed (see ``TargetOptions.parse``); ``keep_float`` only where
        ``capabilities.keeps_layers`` (elsewhere it would be ignored)."""
        options = cls.options_type.parse(profile.options, where=f"target '{profile.name}'")
        if options.keep_float and not cls.capabilities.keeps_layers:
            raise TargetError(
                f"{cls.name}: option 'keep_float' is not supported by this backend (it keeps no "
                f"single layer in float); got {list(options.keep_float)}"
            )
        if options.keep_int8 and not cls.capabilities.keeps_layers:
            raise TargetError(
                f"{cls.name}: option 'keep_int8' is not supported by this backend (it keeps no "
                f"single layer in int8); got {list(options.keep_int8)}"
            )
        return options

    @classmethod
    def toolchain(cls) -> dict[str, str]:
        """Installed versions of ``capabilities.packages`` ("not installed" when absent)."""
        versions = {}
        for package in cls.capabilities.packages:
            try:
                versions[package] = version(package)
            except PackageNotFoundError:
                versions[package] = "not installed"
        return versions

    def emit(
        self,
        model: Model,
        profile: TargetProfile,
        out_dir: Path,
        *,
        precision: str,
        calibration: np.ndarray | None = None,
    ) -> EmitResult:
        """Lower ``model`` to files in ``out_dir``: the template every backend runs.

        Args:
            model: nn.Module + ModelSpec; the module maps scaled [B, L, F] to scaled [B, H, F_out].
            profile: The target profile being built for.
            out_dir: Folder to write into; nothing is written unless every check passed.
            precision: One of ``supported_precisions`` and of ``profile.precisions``.
            calibration: Scaled float32 windows [N, L, F] from the training split, for precisions
                in ``needs_calibration``.

        Raises:
            TargetError: A refused request, a lowering failure, an output shape the spec does
                not expect, fp32 parity above ``fp32_tolerance``, or files over the memory budget.
        """
        request = self.check_request(model, profile, precision, calibration)
        lowered = self.lower(request)
        if request.precision is not Precision.FP32:
            lowered = self.quantize(request, lowered)
        check_io(self.name, lowered.io, model.spec)
        x, out, parity = self.parity(request, lowered)
        lowered.lowering["parity"] = parity
        lowered.lowering.setdefault("threads", request.options.threads)  # for the device's load
        lowered.lowering.update(self.records(request, lowered, x, out))
        files = {self.model_file: lowered.model, **lowered.extra_files}
        _check_budget(self.name, profile.name, request.options, files)
        out_dir = Path(out_dir)
        for name, data in files.items():
            _atomic_write(out_dir / name, data)
        return EmitResult(
            model_file=self.model_file,
            files=list(files),
            toolchain=self.toolchain(),
            io=lowered.io,
            layers=lowered.layers,
            lowering=lowered.lowering,
        )

    # --- what a backend implements --------------------------------------------------------

    @abc.abstractmethod
    def lower(self, request: Request) -> Lowered:
        """The model as this backend's fp32 artifact (and its IR for ``quantize``)."""

    def quantize(self, request: Request, lowered: Lowered) -> Lowered:
        """``lowered`` at ``request.precision`` (any precision but fp32)."""
        raise TargetError(f"{self.name}: no quantization for {request.precision}")

    def check(self, request: Request) -> None:  # noqa: B027 - optional hook
        """Backend checks beyond the shared ones (raise TargetError); default none."""

    def refusal(self, precision: Precision, options: TargetOptions) -> str:
        """Why this backend does not emit ``precision`` (appended to the refusal)."""
        return ""

    def records(
        self, request: Request, lowered: Lowered, x: np.ndarray, out: np.ndarray
    ) -> dict[str, Any]:
        """Extra lowering records from the parity windows and outputs; default none."""
        return {}

    @classmethod
    def runner(cls, model_bytes: bytes, manifest: dict[str, Any], *, engine: str = "") -> Any:
        """What runs an artifact of this backend on the build host (parity, verify): the
        runtime's engine ``engine`` (default ``capabilities.engine``), an object with
        ``run(x)``. A backend whose artifact the host runs otherwise overrides this."""
        from edgecomp_runtime.engines import get_engine

        return get_engine(engine or cls.capabilities.engine)(model_bytes, manifest, threads=1)

    @classmethod
    def artifact_runner(
        cls, files: dict[str, bytes], manifest: dict[str, Any], *, engine: str = ""
    ) -> Any:
        """``runner`` on the artifact's files by name (a backend whose engine may read a file
        other than the model file overrides this)."""
        return cls.runner(files[manifest["model_file"]], manifest, engine=engine)

    # --- the shared flow ------------------------------------------------------------------

    def check_request(
        self, model: Model, profile: TargetProfile, precision: str, calibration: Any
    ) -> Request:
        """Profile, precision, typed options and calibration windows, checked in that order."""
        if profile.backend != self.name:
            raise TargetError(
                f"{self.name}: profile '{profile.name}' is for backend '{profile.backend}'"
            )
        options = self.parse_options(profile)
        wanted = Precision.parse(precision, where=f"{self.name}: target '{profile.name}'")
        allowed = sorted(str(p) for p in self.supported_precisions if p in profile.precisions)
        if wanted not in self.supported_precisions or wanted not in profile.precisions:
            why = self.refusal(wanted, options) if wanted not in self.supported_precisions else ""
            raise TargetError(
                f"{self.name}: precision '{wanted}' is not supported for target "
                f"'{profile.name}'{f' ({why})' if why else ''}; supported: {allowed}"
            )
        if options.keep_int8 and wanted is not Precision.INT4:
            raise TargetError(
                f"{self.name}: option 'keep_int8' {list(options.keep_int8)} is for precision int4 "
                f"only (it keeps those layers in int8 instead of int4); got precision '{wanted}'"
            )
        if options.stream and not self.capabilities.streaming:
            raise TargetError(f"{self.name}: option 'stream': this backend cannot stream")
        needed = wanted in self.needs_calibration
        windows = check_windows(self.name, calibration, model.spec, needed)
        request = Request(model, profile, wanted, options, windows)
        self.check(request)
        return request

    def parity(
        self, request: Request, lowered: Lowered
    ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """Run the artifact on up to 64 windows and compare with the reference model.

        fp32 must match within ``fp32_tolerance``; any precision must give finite outputs.
        Dynamic-batch artifacts run at batch 1 and batch N.
        """
        from edgecomp.frontend import reference_predict

        x = parity_windows(request.windows, request.model.spec)
        caps = self.capabilities
        recipe = {"lowering": lowered.lowering}
        manifest = {"model_file": self.model_file, "io": lowered.io, "recipe": recipe}
        try:
            files = {self.model_file: lowered.model, **lowered.extra_files}
            run = self.artifact_runner(files, manifest, engine=caps.parity_engine or "").run
            out = run(x[:1])
            if len(x) > 1:
                out = np.concatenate([out, run(x)[1:]])
        except Exception as exc:  # engines raise their own types; report them in one line
            raise TargetError(f"{self.name}: cannot run the emitted model: {exc}") from exc
        diff = float(np.abs(out - reference_predict(request.model, x)).max())
        limit = self.fp32_tolerance if request.precision is Precision.FP32 else float("inf")
        if not np.isfinite(diff) or diff > limit:
            raise TargetError(
                f"{self.name}: emitted {request.precision} model differs from the reference "
                f"by {diff:.3g} (limit {limit:g}) over {len(x)} windows"
            )
        record = {
            "engine": caps.parity_engine or caps.engine,
            "max_abs_diff": diff,
            "n_windows": len(x),
            "batch_sizes": sorted({1, len(x)}),
        }
        return x, out, record


def check_windows(name: str, calibration: Any, spec: Any, needed: bool) -> np.ndarray | None:
    """Calibration windows as finite float32 [N, L, F], or None when none were given."""
    expected = f"[N, {spec.input_len}, {spec.n_features}] (N >= 1, input_len, features)"
    if calibration is None:
        if needed:
            raise TargetError(f"{name}: this precision needs calibration windows {expected}")
        return None
    windows = np.asarray(calibration)
    if (
        windows.ndim != 3
        or windows.shape[1:] != (spec.input_len, spec.n_features)
        or (not len(windows))
    ):
        raise TargetError(
            f"{name}: calibration windows must be {expected}; got {list(windows.shape)}"
        )
    if not np.issubdtype(windows.dtype, np.number) or not np.isfinite(windows).all():
        raise TargetError(
            f"{name}: calibration windows must be finite numbers (no NaN or inf); impute first"
        )
    return windows.astype(np.float32)


def layer_list(options: Any, key: str, option: str, special: list[str]) -> tuple[str, ...]:
    """Option ``key`` (``keep_float``, ``keep_int8``) as a tuple of non-empty strings; raise
    TargetError naming it as ``option`` (e.g. "onnx: profile option") and the ``special`` entries
    it also takes."""
    value = options.get(key, ())
    if not isinstance(value, list | tuple) or not all(isinstance(k, str) and k for k in value):
        raise TargetError(
            f"{option} '{key}' must be a list of layer names, patterns, op types "
            f"or {special}; got {value!r}"
        )
    return tuple(value)


def check_io(name: str, io: dict[str, Any], spec: Any) -> None:
    """The artifact's output must be [batch, horizon, targets]."""
    want = ["batch", spec.horizon, len(spec.targets)]
    got = io["outputs"][0]["shape"]
    if got != want:
        raise TargetError(
            f"{name}: model output '{io['outputs'][0]['name']}' is {got}; the spec needs {want} "
            "(batch, horizon, targets)"
        )


def spread(windows: np.ndarray, limit: int) -> np.ndarray:
    """Up to ``limit`` of ``windows``, spread evenly over them (kept in order)."""
    index = np.unique(np.linspace(0, len(windows) - 1, num=min(limit, len(windows))).round())
    return windows[index.astype(int)]


def parity_windows(windows: np.ndarray | None, spec: Any) -> np.ndarray:
    """Calibration windows spread over their range, or eight standard-normal ones."""
    if windows is not None:
        return spread(windows, N_PARITY_WINDOWS)
    rng = np.random.default_rng(0)
    return rng.standard_normal((8, spec.input_len, spec.n_features)).astype(np.float32)


def _check_budget(name: str, profile: str, options: TargetOptions, files: dict[str, bytes]) -> None:
    size = sum(len(data) for data in files.values())
    budget = options.memory_budget_mb
    if budget and size > budget * 2**20:
        raise TargetError(
            f"{name}: the artifact's files ({size / 2**20:.1f} MiB) exceed target '{profile}'s "
            f"memory_budget_mb ({budget})"
        )


def _atomic_write(path: Path, data: bytes) -> None:
    from edgecomp._io import atomic_write_bytes

    atomic_write_bytes(path, data)
