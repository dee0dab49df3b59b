"""Targets: backends (one folder each) and target profiles (profiles/*.json).

Imported as ``edgecomp.targets``. Backends are looked up by name and imported lazily, so importing
this package loads no toolchain.
"""

from __future__ import annotations

import importlib
import json
from functools import cache
from pathlib import Path

from .base import EmitResult, Target, TargetError, TargetProfile

__all__ = [
    "TARGETS",
    "EmitResult",
    "Target",
    "TargetError",
    "TargetProfile",
    "get_target",
    "get_profile",
    "list_profiles",
]

TARGETS: dict[str, str] = {
    "onnx": "edgecomp.targets.onnx.target:OnnxTarget",
    "tflite": "edgecomp.targets.tflite.target:TfliteTarget",
    "tensorrt": "edgecomp.targets.tensorrt.target:TensorrtTarget",
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
        data = json.loads(path.read_text())
        data["precisions"] = tuple(data["precisions"])
        profile = TargetProfile(**data)
        profiles[profile.name] = profile
    return profiles


def get_profile(name: str) -> TargetProfile:
    """Return the profile ``name``.

    Raises:
        TargetError: Unknown profile (the message lists the known ones).
    """
    profiles = list_profiles()
    if name not in profiles:
        raise TargetError(f"unknown target '{name}'. Available: {sorted(profiles)}")
    return profiles[name]
