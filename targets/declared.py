"""What a target declares as data: precisions, capabilities, typed options and profiles.

Imported by ``targets/base.py`` (and re-exported there, so a backend needs only ``base``).
"""

from __future__ import annotations

import difflib
import json
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any, ClassVar

__all__ = [
    "PROFILE_KEYS",
    "Capabilities",
    "Int4Kind",
    "Precision",
    "TargetError",
    "TargetOptions",
    "TargetProfile",
    "unknown_key",
]


class TargetError(ValueError):
    """A target cannot produce what was asked; the message names the target and the reason."""


class Precision(StrEnum):
    """Numeric formats a backend may emit (stored on disk by value)."""

    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"
    INT8_DYNAMIC = "int8-dynamic"
    INT4 = "int4"

    @classmethod
    def parse(cls, value: Any, *, where: str = "precision") -> Precision:
        """``value`` as a Precision; a TargetError listing the known ones otherwise."""
        try:
            return cls(value)
        except ValueError:
            raise TargetError(
                f"{where}: unknown precision {value!r}. Known: {[p.value for p in cls]}"
            ) from None


class Int4Kind(StrEnum):
    """What int4 buys on a backend: faster kernels, or only a smaller file."""

    COMPUTE = "compute"
    SIZE = "size"


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do, as data read by the pipeline, tune, bench, analyze and the CLI.

    Attributes:
        precisions: Precisions the backend emits.
        calibrated: Those among them that need calibration windows.
        int4: COMPUTE when int4 runs int4 kernels, SIZE when it only shrinks the file, None
            when the backend has no int4.
        dynamic_batch: The artifact takes any batch size in one call (else one call per window).
        streaming: A build may add the step model for ``Model.stream()`` (option ``stream``).
        keeps_layers: Option ``keep_float`` takes layer names (per-layer mixed precision).
        engine: Key of the runtime's ``ENGINES`` that runs the artifact on the device.
        runs_on_device: False when that engine refuses every artifact with a reason (null).
        parity_engine: Engine the build's parity check runs on this host (default: ``engine``).
        requires: Modules the toolchain needs (found, not imported, by ``is_available``).
        install: The pip command that installs them.
        packages: Distributions whose versions the manifest records.
        calibration_option: The option naming the int8 calibration method ("" when none).
        calibration_methods: Methods besides the default that the quantizer has, best first
            (what the fallback ladder tries on a budget breach).
        per_channel: Precisions with per-output-channel weight kernels (option
            ``per_channel``); the ladder never asks a backend for one it does not declare.
        int4_groups: Finer int4 weight group sizes the backend stores (option
            ``int4_group_size``), best first; ``int4_blocks`` those its int4 compute kernel
            also takes as a block size (option ``int4_block_size``).
    """

    precisions: frozenset[Precision]
    engine: str
    calibrated: frozenset[Precision] = frozenset()
    int4: Int4Kind | None = None
    dynamic_batch: bool = True
    streaming: bool = True
    keeps_layers: bool = False
    runs_on_device: bool = True
    parity_engine: str | None = None
    requires: tuple[str, ...] = ()
    install: str = ""
    packages: tuple[str, ...] = ()
    calibration_option: str = ""
    calibration_methods: tuple[str, ...] = ()
    per_channel: frozenset[Precision] = frozenset()
    int4_groups: tuple[int, ...] = ()
    int4_blocks: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if (Precision.INT4 in self.precisions) != (self.int4 is not None):
            raise TargetError("capabilities: int4 (compute or size) is declared with INT4 only")
        if not self.calibrated <= self.precisions:
            raise TargetError("capabilities: calibrated precisions must be declared precisions")

    def describe(self) -> str:
        """One line for `edgecomp targets`: engine, batch, int4, streaming, per-layer float."""
        parts = [
            f"engine {self.engine}"
            + ("" if self.runs_on_device else " (refuses: not for devices)"),
            "dynamic batch" if self.dynamic_batch else "batch 1 per call",
        ]
        if self.int4 is not None:
            parts.append(
                "int4 computes" if self.int4 is Int4Kind.COMPUTE else "int4 saves size only"
            )
        parts += ["streams"] * self.streaming + ["keep_float by layer"] * self.keeps_layers
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for reports and the conformance suite)."""
        data = asdict(self)
        for key in ("precisions", "calibrated", "per_channel"):
            data[key] = sorted(str(p) for p in data[key])
        return data


@dataclass(frozen=True)
class TargetOptions:
    """Options every backend takes; a backend subclasses this with its own fields and VERSION.

    A profile's ``options`` and a build's ``--option`` overrides are parsed into the backend's
    subclass: an unknown key is refused with the closest valid one, a value of the wrong type is
    refused naming the key. Fields with ``metadata={"choices": (...)}`` take one of those values.

    Attributes:
        keep_float: Layers left in float (names, patterns, op types, "input", "output").
        keep_int8: int4 builds only: layers quantized as the target's int8 build does instead
            of int4 (names or patterns, as ``keep_float``; ``keep_float`` wins where both match).
        threads: Intra-op threads the device runs the engine with (recorded in the lowering).
        memory_budget_mb: The device's memory for the model: the build refuses an artifact
            whose files exceed it (0: no limit).
        stream: Add the streaming step model (``edgecomp.streaming``); needs ``streaming``.
        stream_error_budget: Worst per-step MAE increase the stream may add (fraction).
    """

    VERSION: ClassVar[int] = 1

    keep_float: tuple[str, ...] = ()
    keep_int8: tuple[str, ...] = ()
    threads: int = 1
    memory_budget_mb: int = 0
    stream: bool = False
    stream_error_budget: float = 0.01

    @classmethod
    def parse(cls, data: dict[str, Any], *, where: str) -> TargetOptions:
        """Check ``data`` key by key and build the options.

        Raises:
            TargetError: An unknown key (naming the closest valid key and the list) or a value
                of the wrong type; the message starts with ``where``.
        """
        known = {f.name: f for f in fields(cls)}
        values = {}
        for key, value in data.items():
            if key not in known:
                raise TargetError(unknown_key(where, "option", key, known))
            values[key] = _checked(where, known[key], value)
        options = cls(**values)
        options.validate(where)
        return options

    def validate(self, where: str) -> None:
        """Value checks beyond the types (a subclass extends them); raise TargetError."""
        if self.threads < 1:
            raise TargetError(
                f"{where}: option 'threads' must be a positive integer; got {self.threads!r}"
            )
        if self.memory_budget_mb < 0:
            raise TargetError(
                f"{where}: option 'memory_budget_mb' must be >= 0 (0: no limit); "
                f"got {self.memory_budget_mb!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """The options as plain JSON values (tuples as lists)."""
        return json.loads(json.dumps(asdict(self)))

    def to_json(self) -> dict[str, Any]:
        """``{_type, _version, _data}``, as stored in the manifest."""
        return {"_type": type(self).__name__, "_version": self.VERSION, "_data": self.to_dict()}

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> TargetOptions:
        """Rebuild from ``to_json()``; a newer ``_version`` or another ``_type`` is refused."""
        if record.get("_type") != cls.__name__ or record.get("_version", 0) > cls.VERSION:
            raise TargetError(
                f"{cls.__name__}: cannot read {record.get('_type')} v{record.get('_version')} "
                f"(this edgecomp reads {cls.__name__} up to v{cls.VERSION})"
            )
        return cls.parse(record["_data"], where=cls.__name__)


def unknown_key(where: str, what: str, key: str, known: Any) -> str:
    """One line: the unknown key, the closest valid key (difflib) and the valid keys."""
    names = sorted(known)
    close = difflib.get_close_matches(str(key), names, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"{where}: unknown {what} '{key}'{hint}. Valid: {names}"


def _checked(where: str, spec: Any, value: Any) -> Any:
    """``value`` checked against the field's default type (and choices); tuples from lists."""
    default = spec.default
    choices = spec.metadata.get("choices")
    expect = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    kind = type(default)
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, int | float) and not isinstance(value, bool),
        str: isinstance(value, str),
        tuple: isinstance(value, list | tuple),
    }.get(kind, True)
    if not ok:
        wanted = expect.get(kind, "a list")
        raise TargetError(f"{where}: option '{spec.name}' must be {wanted}; got {value!r}")
    if choices is not None and value not in choices:
        raise TargetError(
            f"{where}: option '{spec.name}' must be one of {list(choices)}; got {value!r}"
        )
    return tuple(value) if kind is tuple else value


PROFILE_KEYS = ("name", "backend", "arch", "precisions", "description", "options")


@dataclass(frozen=True)
class TargetProfile:
    """A deployment target as data (targets/profiles/<name>.json).

    Attributes:
        name: Profile name, e.g. "x86-64-avx2".
        backend: Backend key in TARGETS, e.g. "onnx".
        arch: CPU architecture of the device, e.g. "x86_64".
        precisions: Precisions the builder may emit for this profile.
        description: One line for `edgecomp targets`.
        options: Backend options, parsed into the backend's ``options_type``.
    """

    name: str
    backend: str
    arch: str
    precisions: tuple[str, ...]
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)
