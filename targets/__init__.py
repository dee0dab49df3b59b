"""Targets: backends (one folder each) and target profiles (profiles/*.json).

Imported as ``edgecomp.targets``. Backends are looked up by name and imported lazily, so importing
this package loads no toolchain.
"""

from __future__ import annotations

import importlib
import json
from functools import cache
from pathlib import Path

from .base import (
    PROFILE_KEYS,
    Capabilities,
    EmitResult,
    Precision,
    Target,
    TargetError,
    TargetOptions,
    TargetProfile,
    unknown_key,
)

__all__ = [
    "TARGETS",
    "Capabilities",
    "EmitResult",
    "Precision",
    "TargetOptions",
    "Target",
    "TargetError",
    "TargetProfile",
    "get_target",
    "get_profile",
    "list_profiles",
    "load_profile",
]

TARGETS: dict[str, str] = {
    "onnx": "edgecomp.targets.onnx.target:OnnxTarget",
    "tflite": "edgecomp.targets.tflite.target:TfliteTarget",
    "tensorrt": "edgecomp.targets.tensorrt.target:TensorrtTarget",
    "executorch": "edgecomp.targets.executorch.target:ExecutorchTarget",
    "null": "edgecomp.targets.null.target:NullTarget",
}

_PROFILE_DIR = Path(__file__).parent / "profiles"


def get_target(name: str) -> type[Target]:
    """Return the backend class registered as ``name``.

    Raises:
        TargetError: Unknown name (the message lists the known ones).
    """
    if name not in TARGETS:
        raise TargetError(f"unknown backend '{name}'. Available: {sorted(TARGETS)}")
    module_name, _, class_name = TARGETS[name].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


@cache
def list_profiles() -> dict[str, TargetProfile]:
    """All target profiles shipped in targets/profiles, by name."""
    profiles = {}
    for path in sorted(_PROFILE_DIR.glob("*.json")):
        profile = load_profile(path)
        profiles[profile.name] = profile
    return profiles


def load_profile(path: str | Path) -> TargetProfile:
    """Read and check one profile file: known fields only, a registered backend, precisions
    that backend declares, and options its ``options_type`` accepts.

    Raises:
        TargetError: The first problem, naming the file and the field or option.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise TargetError(f"{path}: cannot read the target profile: {exc}") from None
    if not isinstance(data, dict):
        raise TargetError(f"{path}: a target profile is a JSON object")
    for key in data:
        if key not in PROFILE_KEYS:
            raise TargetError(unknown_key(str(path), "field", key, PROFILE_KEYS))
    missing = [key for key in ("name", "backend", "arch", "precisions") if key not in data]
    if missing:
        raise TargetError(f"{path}: missing field '{missing[0]}'")
    try:
        target = get_target(data["backend"])
    except TargetError as exc:
        raise TargetError(f"{path}: backend: {exc}") from None
    precisions = tuple(Precision.parse(p, where=f"{path}: precisions") for p in data["precisions"])
    extra = sorted(str(p) for p in precisions if p not in target.supported_precisions)
    if extra:
        declared = sorted(str(p) for p in target.supported_precisions)
        raise TargetError(
            f"{path}: precisions: backend '{target.name}' does not emit {extra}. Declared: "
            f"{declared}"
        )
    profile = TargetProfile(**{**data, "precisions": tuple(str(p) for p in precisions)})
    target.options_type.parse(profile.options, where=f"{path}: options")
    return profile


def get_profile(name: str) -> TargetProfile:
    """Return the profile ``name``.

    Raises:
        TargetError: Unknown profile (the message lists the known ones).
    """
    profiles = list_profiles()
    if name not in profiles:
        raise TargetError(f"unknown target '{name}'. Available: {sorted(profiles)}")
    return profiles[name]
