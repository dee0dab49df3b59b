"""What machine a benchmark ran on: CPU, ISA flags, OS, library versions, thread settings.

Nothing here imports torch or an engine: versions come from package metadata.
"""

from __future__ import annotations

import importlib.metadata
import platform
import sys
from pathlib import Path
from typing import Any

import psutil

from edgecomp_runtime.device import (  # one list and one reader for both benches
    ISA_FLAGS,
    thread_settings,
)

PACKAGES = ("numpy", "edgecomp", "edgecomp-runtime", "torch")  # and each backend's toolchain


def host_info(*, threads: int | None = None) -> dict[str, Any]:
    """Describe this machine and process for a benchmark report.

    Args:
        threads: Intra-op threads the benchmark asked the engine for (None: engine default).

    Returns:
        A JSON-ready dict: cpu, os, python, versions, threads.
    """
    return {
        "cpu": cpu_info(),
        "os": {
            "system": platform.system(),
            "release": platform.release(),
            "version": platform.version(),
            "machine": platform.machine(),
        },
        "python": {"version": platform.python_version(), "implementation": sys.implementation.name},
        "versions": package_versions(),
        "threads": thread_settings(threads),
    }


def cpu_info() -> dict[str, Any]:
    """CPU model, logical and physical core counts, and the ISA flags in ``ISA_FLAGS`` it has."""
    model, flags = _proc_cpuinfo(Path("/proc/cpuinfo"))
    if not model and not flags:
        model, flags = _py_cpuinfo()
    return {
        "model": model or platform.processor() or "unknown",
        "logical_cores": psutil.cpu_count(logical=True),
        "physical_cores": psutil.cpu_count(logical=False),
        "isa": {flag: flag in flags for flag in ISA_FLAGS},
    }


def package_versions() -> dict[str, str | None]:
    """Installed versions of ``PACKAGES`` and of every registered backend's toolchain packages
    (``capabilities.packages``), None when absent; imports no toolchain."""
    versions: dict[str, str | None] = {}
    for name in dict.fromkeys([*PACKAGES, *toolchain_packages()]):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def toolchain_packages() -> list[str]:
    """The distributions the registered backends record, in registry order (no duplicates)."""
    from edgecomp.targets import TARGETS, get_target

    names = (p for backend in TARGETS for p in get_target(backend).capabilities.packages)
    return list(dict.fromkeys(names))


def _proc_cpuinfo(path: Path) -> tuple[str, set[str]]:
    """Model name and flags from a Linux /proc/cpuinfo (x86 "flags", ARM "Features")."""
    try:
        text = path.read_text()
    except OSError:
        return "", set()
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return model, flags


def _py_cpuinfo() -> tuple[str, set[str]]:
    """Fallback without /proc/cpuinfo (macOS, Windows): py-cpuinfo, slow but portable."""
    import cpuinfo

    info = cpuinfo.get_cpu_info()
    return str(info.get("brand_raw", "")), set(info.get("flags", []))
