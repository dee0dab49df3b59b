"""What every backend implements: lower a Model to files for one target profile."""

from __future__ import annotations

import abc
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import numpy as np

    from edgecomp.spec import Model


class TargetError(ValueError):
    """A target cannot produce what was asked; the message names the target and the reason."""


@dataclass(frozen=True)
class TargetProfile:
    """A deployment target as data (targets/profiles/<name>.json).

    Attributes:
        name: Profile name, e.g. "x86-64-avx2".
        backend: Backend key in TARGETS, e.g. "onnx".
        arch: CPU architecture of the device, e.g. "x86_64".
        precisions: Precisions the builder may emit for this profile.
        description: One line for `edgecomp targets`.
        options: Backend options (opset, threads, memory and latency budgets, ISA notes).
    """

    name: str
    backend: str
    arch: str
    precisions: tuple[str, ...]
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EmitResult:
    """What a backend wrote into out_dir.

    Attributes:
        model_file: Name of the main model file inside out_dir.
        files: Names of every file written (model_file included).
        toolchain: Versions of the libraries that produced the files.
        io: Inputs and outputs as the manifest's ``io`` describes them.
        layers: Per layer/op: name, op_type, precision, method, reason.
        lowering: The lowering's settings, recorded in the manifest's recipe.
    """

    model_file: str
    files: list[str]
    toolchain: dict[str, str]
    io: dict[str, Any]
    layers: list[dict[str, Any]]
    lowering: dict[str, Any] = field(default_factory=dict)


class Target(abc.ABC):
    """A backend. Subclasses import their toolchain inside methods, never at module import."""

    name: ClassVar[str]
    supported_precisions: ClassVar[frozenset[str]]
    needs_calibration: ClassVar[frozenset[str]] = frozenset()  # precisions that need calibration

    requires: ClassVar[tuple[str, ...]] = ()  # modules the toolchain needs
    install: ClassVar[str] = ""  # the pip command that installs them

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

    @abc.abstractmethod
    def emit(
        self,
        model: Model,
        profile: TargetProfile,
        out_dir: Path,
        *,
        precision: str,
        calibration: np.ndarray | None = None,
    ) -> EmitResult:
        """Lower ``model`` to files in ``out_dir``.

        Args:
            model: nn.Module + ModelSpec; the module maps scaled [B, L, F] to scaled [B, H, F_out].
            profile: The target profile being built for.
            out_dir: Empty folder to write into.
            precision: One of ``supported_precisions`` and of ``profile.precisions``.
            calibration: Scaled float32 windows [N, L, F] from the training split, for precisions
                in ``needs_calibration``.
        """
