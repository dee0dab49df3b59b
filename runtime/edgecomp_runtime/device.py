"""What device a benchmark ran on, read from the device itself: torch-free, numpy-free, no psutil.

``describe()`` reads Linux's /proc and device tree where they exist and falls back to ``platform``
elsewhere: CPU model and ISA features, core counts, memory, the board model of ARM boards (device
tree), the Jetson model and its L4T / JetPack release, an NVIDIA GPU and the TensorRT version. It
never reads host names, users, keys or addresses: the description is all a report stores of a
device besides the name the user gave it.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

#: ISA features that decide which kernels an engine can use (x86 and ARM spellings).
ISA_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx512_bf16",
    "avx_vnni",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "neon",
    "asimd",
    "asimddp",
    "i8mm",
    "sve",
)
#: Distributions whose versions a report shows (read from metadata; none is imported).
PACKAGES = (
    "edgecomp-runtime",
    "numpy",
    "onnxruntime",
    "ai-edge-litert",
    "tflite-runtime",
    "tensorrt",
    "pyarrow",
)
_ARCH_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}
_ARM_PARTS = {  # /proc/cpuinfo "CPU part" of Arm cores (ARM Linux gives no model name)
    "0xd03": "Cortex-A53",
    "0xd04": "Cortex-A35",
    "0xd05": "Cortex-A55",
    "0xd07": "Cortex-A57",
    "0xd08": "Cortex-A72",
    "0xd09": "Cortex-A73",
    "0xd0a": "Cortex-A75",
    "0xd0b": "Cortex-A76",
    "0xd0c": "Neoverse-N1",
    "0xd0d": "Cortex-A77",
    "0xd40": "Neoverse-V1",
    "0xd41": "Cortex-A78",
    "0xd42": "Cortex-A78AE",
    "0xd44": "Cortex-X1",
    "0xd46": "Cortex-A510",
    "0xd47": "Cortex-A710",
    "0xd49": "Neoverse-N2",
    "0xd4f": "Neoverse-V2",
}
_DEVICE_TREE_MODEL = (
    Path("/proc/device-tree/model"),
    Path("/sys/firmware/devicetree/base/model"),
)
_L4T_RELEASE = Path("/etc/nv_tegra_release")
_THREAD_ENV_PREFIXES = ("OMP_", "OPENBLAS_", "MKL_", "KMP_", "GOTO_", "VECLIB_", "ORT_")


def describe(*, name: str = "local", threads: int | None = None) -> dict[str, Any]:
    """Describe this device for a benchmark report.

    Args:
        name: The name the user gave the device ("local", a devices.toml entry, ...).
        threads: Engine threads the benchmark asked for (None: the engine's default).

    Returns:
        A JSON-ready dict: name, arch, cpu, memory_mb, board, jetson, gpu, os, python,
        versions, threads.
    """
    return {
        "name": name,
        "arch": normalize_arch(platform.machine()),
        "cpu": cpu_info(),
        "memory_mb": memory_mb(),
        "board": board_model(),
        "jetson": jetson_info(),
        "gpu": gpu_info(),
        "os": {
            "system": platform.system(),
            "release": platform.release(),
            "machine": platform.machine(),
        },
        "python": {"version": platform.python_version(), "implementation": sys.implementation.name},
        "versions": package_versions(),
        "threads": thread_settings(threads),
    }


def normalize_arch(machine: str) -> str:
    """One spelling per CPU architecture: "AMD64" -> "x86_64", "arm64" -> "aarch64"."""
    machine = machine.lower()
    return _ARCH_ALIASES.get(machine, machine)


def cpu_info(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, Any]:
    """CPU model, logical and physical core counts, and which of ``ISA_FLAGS`` it has."""
    model, flags, physical = _parse_cpuinfo(_read(cpuinfo))
    return {
        "model": model or platform.processor() or "unknown",
        "logical_cores": os.cpu_count(),
        "physical_cores": physical,
        "isa": {flag: flag in flags for flag in ISA_FLAGS},
    }


def memory_mb(meminfo: Path = Path("/proc/meminfo")) -> float | None:
    """Total memory in MB (MemTotal of /proc/meminfo), or None where it cannot be read."""
    match = re.search(r"^MemTotal:\s+(\d+)\s*kB", _read(meminfo), re.MULTILINE)
    return round(int(match.group(1)) / 1024, 1) if match else None


def board_model(paths: tuple[Path, ...] = _DEVICE_TREE_MODEL) -> str | None:
    """The board model from the device tree (Raspberry Pi, Jetson, ...), or None (PCs)."""
    for path in paths:
        text = _read(path).replace("\x00", "").strip()
        if text:
            return text
    return None


def jetson_info(release: Path = _L4T_RELEASE) -> dict[str, Any] | None:
    """L4T release (from /etc/nv_tegra_release) and JetPack version of a Jetson, or None."""
    text = _read(release)
    match = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    if not match:
        return None
    return {
        "l4t": f"{match.group(1)}.{match.group(2)}",
        "jetpack": _dpkg_version("nvidia-jetpack"),
        "model": board_model(),
    }


def gpu_info() -> dict[str, Any] | None:
    """An NVIDIA GPU's name and driver (nvidia-smi) and the TensorRT version, or None."""
    tensorrt = _version("tensorrt") or _dpkg_version("python3-libnvinfer")
    smi = shutil.which("nvidia-smi")
    gpus: list[str] = []
    driver = None
    if smi:
        out = _run([smi, "--query-gpu=name,driver_version", "--format=csv,noheader"])
        for line in out.splitlines():
            gpu, _, driver = (part.strip() for part in line.partition(","))
            gpus.append(gpu)
    if not gpus and tensorrt is None:
        return None
    return {"names": gpus, "driver": driver, "tensorrt": tensorrt}


def package_versions() -> dict[str, str | None]:
    """Installed versions of ``PACKAGES`` (None when absent); imports none of them."""
    return {package: _version(package) for package in PACKAGES}


def thread_settings(threads: int | None) -> dict[str, Any]:
    """Requested threads, CPUs this process may use, and thread-related environment variables."""
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    env = {k: v for k, v in sorted(os.environ.items()) if k.startswith(_THREAD_ENV_PREFIXES)}
    return {
        "requested": threads,
        "cpu_count": os.cpu_count(),
        "affinity": len(affinity) if affinity is not None else None,
        "env": env,
    }


def _parse_cpuinfo(text: str) -> tuple[str, set[str], int | None]:
    """(model, ISA flags, physical cores) from /proc/cpuinfo text (x86 or ARM layout)."""
    model, flags, part = "", set(), ""
    cores: set[tuple[str, str]] = set()
    physical_id = ""
    for line in text.splitlines():
        key, _, value = (s.strip() for s in line.partition(":"))
        key = key.lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
        elif key == "cpu part" and not part:
            part = value.lower()
        elif key == "physical id":
            physical_id = value
        elif key == "core id":
            cores.add((physical_id, value))
    if not model and part:
        model = _ARM_PARTS.get(part, f"Arm core part {part}")
    return model, flags, len(cores) or None


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _dpkg_version(package: str) -> str | None:
    """A Debian package's version (JetPack installs TensorRT and nvidia-jetpack this way)."""
    if not shutil.which("dpkg-query"):
        return None
    return _run(["dpkg-query", "-W", "-f=${Version}", package]).strip() or None


def _run(command: list[str]) -> str:
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return proc.stdout if proc.returncode == 0 else ""


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""
