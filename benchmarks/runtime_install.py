"""Runtime-only installs per extra: size on disk, import and load time, what each one holds.

    .venv/bin/python benchmarks/runtime_install.py [--python python3.11] [--repeats 5]

For each extra set (none, [onnx], [litert], [onnx,serve,signing], ...) a fresh venv under a temp
folder gets ``pip install './runtime[EXTRAS]'`` (no torch, no compiler). Size: the installed files
of every distribution except the bare venv's own (pip, setuptools). Time, in fresh processes
(median of --repeats): ``import edgecomp_runtime``, then ``load`` of the traffic TCN int8 artifact
its engine reads (tests/runtime/fixtures; a LiteRT int8 TCN built here for [litert]). Also: which
engines' packages each install holds (the LiteRT-only one must hold no onnxruntime), and the
oldest onnxruntime that loads fp32, int8 and int4 artifacts (1.18.0 and 1.19.0 tried).
Prints a table and writes benchmarks/out/runtime_install.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "runtime" / "fixtures"
OUT = ROOT / "benchmarks" / "out"
INSTALLS = {  # name -> (extras, artifact its engine loads, or None)
    "base (numpy only)": ("", FIXTURES / "tcn-int8.edgepkg"),
    "[onnx]": ("onnx", FIXTURES / "tcn-int8.edgepkg"),
    "[litert]": ("litert", "tflite"),
    "[onnx,serve,signing]": ("onnx,serve,signing", FIXTURES / "tcn-int8.edgepkg"),
}
ENGINE_PACKAGES = ("onnxruntime", "ai-edge-litert", "paho-mqtt", "cryptography", "numpy")
_SIZES = r"""
import json, sys
from importlib.metadata import distributions
out = {}
for dist in distributions():
    size = 0
    for f in dist.files or []:
        try:
            size += f.locate().stat().st_size
        except OSError:
            pass
    out[dist.metadata["Name"].lower()] = size
print(json.dumps(out))
"""
_TIMES = r"""
import json, sys, time
t0 = time.perf_counter()
import edgecomp_runtime
t1 = time.perf_counter()
try:
    edgecomp_runtime.load(sys.argv[1])
    error = None
except edgecomp_runtime.EdgecompRuntimeError as exc:
    error = str(exc)
t2 = time.perf_counter()
print(json.dumps({"import_ms": (t1 - t0) * 1e3, "load_ms": (t2 - t1) * 1e3, "error": error}))
"""
_FLOOR = r"""
import json, sys
from edgecomp_runtime import read_artifact
from edgecomp_runtime.engines.onnxruntime import OnnxRuntimeEngine
out = {}
for precision in ("fp32", "int8", "int4"):
    manifest, files = read_artifact(f"{sys.argv[1]}/tcn-{precision}.edgepkg")
    try:
        OnnxRuntimeEngine(files[manifest["model_file"]], manifest, threads=1)
        out[precision] = "loads"
    except Exception as exc:
        out[precision] = str(exc).split("(", 1)[-1].rstrip(")")[:120]
print(json.dumps(out))
"""


def main() -> None:
    """Measure every install in INSTALLS and the onnxruntime floor; print and write JSON."""
    args = _args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tflite = _tflite_artifact(Path(tmp))
        for name, (extras, artifact) in INSTALLS.items():
            path = tflite if artifact == "tflite" else artifact
            results[name] = _measure(args.python, Path(tmp) / "venv", extras, path, args.repeats)
            _print_row(name, results[name])
        floor = {v: _floor(args.python, Path(tmp) / f"ort{v}", v) for v in ("1.18.0", "1.19.0")}
    for version, outcome in floor.items():
        print(f"onnxruntime {version}: " + ", ".join(f"{k} {v}" for k, v in outcome.items()))
    OUT.mkdir(parents=True, exist_ok=True)
    report = {"python": args.python, "installs": results, "onnxruntime_floor": floor}
    (OUT / "runtime_install.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {OUT / 'runtime_install.json'}")


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="interpreter for the venvs")
    parser.add_argument("--repeats", type=int, default=5, help="fresh processes per timing")
    return parser.parse_args()


def _venv(python: str, folder: Path, *packages: str) -> Path:
    subprocess.run(["rm", "-rf", str(folder)], check=True)
    subprocess.run([python, "-m", "venv", str(folder)], check=True)
    pip = [str(folder / "bin/python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    if packages:
        subprocess.run([*pip, *packages], check=True, capture_output=True)
    return folder / "bin/python"


def _measure(python: str, folder: Path, extras: str, artifact: Path, repeats: int) -> dict:
    bare = _run_json(_venv(python, folder.with_name("bare")), _SIZES)
    start = time.monotonic()
    venv_python = _venv(
        python, folder, f"{ROOT / 'runtime'}[{extras}]" if extras else str(ROOT / "runtime")
    )
    install_s = time.monotonic() - start
    sizes = {k: v for k, v in _run_json(venv_python, _SIZES).items() if k not in bare}
    runs = [_run_json(venv_python, _TIMES, str(artifact)) for _ in range(repeats)]
    return {
        "extras": extras,
        "install_s": install_s,
        "size_mb": sum(sizes.values()) / 2**20,
        "per_distribution_mb": {k: v / 2**20 for k, v in sorted(sizes.items())},
        "holds": {p: p in sizes for p in ENGINE_PACKAGES},
        "artifact": artifact.name,
        "import_ms": statistics.median(r["import_ms"] for r in runs),
        "load_ms": statistics.median(r["load_ms"] for r in runs),
        "load_error": runs[0]["error"],
    }


def _floor(python: str, folder: Path, version: str) -> dict:
    numpy = "numpy<2" if version < "1.19" else "numpy"  # 1.18 wheels are built against numpy 1.x
    venv_python = _venv(
        python, folder, f"onnxruntime=={version}", numpy, "-e", str(ROOT / "runtime")
    )
    return _run_json(venv_python, _FLOOR, str(FIXTURES))


def _tflite_artifact(tmp: Path) -> Path:
    """A LiteRT int8 TCN of the traffic data, built by edgecomp (for the [litert] install)."""
    data = ROOT / "examples" / "data" / "odot_detector_counts_15min.parquet"
    edgecomp = str(Path(sys.executable).with_name("edgecomp"))
    common = ["--id-col", "detector", "--value-col", "total"]
    subprocess.run(
        [edgecomp, "train", str(data), *common, "--arch", "tcn", "-L", "16", "-H", "4",
         "--hparam", "channels=8", "--epochs", "2", "--out-dir", str(tmp / "tcn")],
        check=True, capture_output=True,
    )  # fmt: skip
    out = tmp / "tcn-int8-arm.edgepkg"
    subprocess.run(
        [edgecomp, "build", str(tmp / "tcn"), "--data", str(data), "-t", "arm64-gateway",
         "-p", "int8", "-o", str(out)],
        check=True, capture_output=True,
    )  # fmt: skip
    return out


def _run_json(python: Path, script: str, *args: str) -> dict:
    proc = subprocess.run([str(python), "-c", script, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{python}: {proc.stderr.strip().splitlines()[-1]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _print_row(name: str, r: dict) -> None:
    holds = ", ".join(p for p, present in r["holds"].items() if present)
    load = f"{r['load_ms']:.0f} ms" if r["load_error"] is None else f"refused: {r['load_error']}"
    print(
        f"{name:24s} {r['size_mb']:6.1f} MB  import {r['import_ms']:5.0f} ms  "
        f"load {r['artifact']}: {load}  [{holds}]"
    )


if __name__ == "__main__":
    main()
