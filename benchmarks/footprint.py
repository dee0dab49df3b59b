"""Gateway footprint: install size, import time, load time and resident memory while streaming.

    .venv/bin/python benchmarks/footprint.py               # fresh venv from PyPI (or the pip cache)
    .venv/bin/python benchmarks/footprint.py --offline     # sizes from this venv's installed files

Install size: ``pip install ./runtime[onnx]`` (numpy + onnxruntime, their dependencies) in a fresh
venv under a temp folder, then ``paho-mqtt`` (the ``[serve]`` extra); the size is the sum of the
installed files of each distribution (pip and setuptools of the bare venv excluded). For scale:
the installed files of torch, and of torch with its dependencies, in this project's venv (what
``pip install torch==2.13.0`` puts on disk, CPU wheel). Import time, load time and RSS come from
fresh interpreters of that venv (median of ``--runs``), which never import torch (checked): they
import the runtime, load the artifact (the traffic TCN int8 with its step model) and stream the
test split's real readings through ``Model.stream()``. Writes benchmarks/out/footprint.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples/data/odot_detector_counts_15min.parquet"
CHECKPOINT = ROOT / "examples/traffic/out/checkpoints/tcn"
OUT = ROOT / "benchmarks/out/footprint.json"
BARE = {"pip", "setuptools", "wheel"}

SIZES = """
import json
from importlib import metadata
sizes = {}
for dist in metadata.distributions():
    total = sum(f.locate().stat().st_size for f in dist.files or [] if f.locate().is_file())
    sizes[dist.metadata["Name"].lower()] = total
print(json.dumps(sizes))
"""

MEASURE = """
import json, sys, time
def rss(key="VmRSS"):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
t0 = time.perf_counter()
import numpy as np
import edgecomp_runtime as ecr
t1 = time.perf_counter()
rss_import = rss()
import onnxruntime
t2 = time.perf_counter()
model = ecr.load(sys.argv[1])
t3 = time.perf_counter()
rss_load = rss()
rows = np.load(sys.argv[2])
stream = model.stream()
period = model.spec["period_s"]
samples, t4 = [], time.perf_counter()
for i in range(int(sys.argv[3])):
    stream.push(i * period, rows[i % len(rows)])
    if i % 100 == 0:
        samples.append(rss())
t5 = time.perf_counter()
print(json.dumps({
    "import_runtime_ms": (t1 - t0) * 1e3, "import_onnxruntime_ms": (t2 - t1) * 1e3,
    "load_ms": (t3 - t2) * 1e3, "us_per_reading": (t5 - t4) / int(sys.argv[3]) * 1e6,
    "rss_after_import_mb": rss_import, "rss_after_load_mb": rss_load,
    "rss_streaming_max_mb": max(samples), "rss_peak_mb": rss("VmHWM"), "mode": stream.mode,
    "forecasts": stream.stats["forecasts"], "torch_imported": "torch" in sys.modules,
    "edgecomp_imported": "edgecomp" in sys.modules}))
"""


def run_json(python: Path | str, script: str, *args: str) -> dict:
    """Run ``script`` in a fresh interpreter, outside the repository (so nothing leaks in)."""
    result = subprocess.run(
        [str(python), "-c", script, *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=tempfile.gettempdir(),
    )
    if result.returncode != 0:
        raise SystemExit(f"{python}: {result.stderr.strip().splitlines()[-1:]}")
    return json.loads(result.stdout)


def fresh_venv(folder: Path) -> tuple[Path, dict, dict]:
    """A venv with only the runtime: (python, runtime sizes, serve-extra sizes)."""
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    python = folder / "bin/python"
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, f"{ROOT / 'runtime'}[onnx]"], check=True, capture_output=True)
    runtime = {k: v for k, v in run_json(python, SIZES).items() if k not in BARE}
    subprocess.run([*pip, "paho-mqtt"], check=True, capture_output=True)
    serve = {k: v for k, v in run_json(python, SIZES).items() if k not in BARE and k not in runtime}
    return python, runtime, serve


def closure(sizes: dict, roots: list[str]) -> dict:
    """Sizes of ``roots`` and everything they require, among installed distributions."""
    from importlib import metadata

    from packaging.requirements import Requirement

    seen, todo = {}, list(roots)
    while todo:
        name = todo.pop().lower()
        if name in seen or name not in sizes:
            continue
        seen[name] = sizes[name]
        for text in metadata.requires(name) or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return seen


def artifact_and_readings(tmp: Path) -> tuple[Path, Path]:
    """The traffic TCN int8 with its step model (trained here for 2 epochs when no checkpoint)."""
    import torch

    from edgecomp.data import DataConfig
    from edgecomp.pipeline import BuildConfig
    from edgecomp.spec import ModelSpec
    from edgecomp.train import TrainConfig
    from edgecomp.workflow import build_artifact, dataset_for, train_checkpoint

    torch.set_num_threads(1)
    checkpoint = CHECKPOINT
    if not (checkpoint / "spec.json").is_file():
        config = DataConfig(input_len=48, horizon=8, id_col="detector", value_cols=("total",))
        train = TrainConfig(arch="tcn", epochs=2)
        checkpoint = train_checkpoint(DATA, config, train, tmp / "ckpt").path
    options = {"stream": True}
    build = BuildConfig(precision="int8", options=options)
    result = build_artifact(str(checkpoint), DATA, build, tmp / "tcn-int8.edgepkg")
    dataset = dataset_for(ModelSpec.from_dict(result.manifest["spec"]), DATA)
    start, end = dataset.bounds["test"]
    rows = tmp / "readings.npy"
    np.save(rows, dataset.raw.to_numpy(dtype="float64")[start:end])
    return result.path, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--offline", action="store_true", help="no fresh venv: this venv's files")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--readings", type=int, default=3000)
    args = parser.parse_args()
    here = run_json(sys.executable, SIZES)
    with tempfile.TemporaryDirectory(prefix="footprint-") as tmp:
        artifact, rows = artifact_and_readings(Path(tmp))
        if args.offline:
            python, method = Path(sys.executable), "this venv's installed files"
            runtime = closure(here, ["edgecomp-runtime"])
            serve = closure(here, ["paho-mqtt"])
        else:
            python, runtime, serve = fresh_venv(Path(tmp) / "venv")
            method = "fresh venv, pip install ./runtime[onnx] then paho-mqtt"
        runs = [
            run_json(python, MEASURE, str(artifact), str(rows), str(args.readings))
            for _ in range(args.runs)
        ]
    report(method, runtime, serve, closure(here, ["torch"]), here.get("torch", 0), runs)


def report(method, runtime, serve, torch_closure, torch_only, runs) -> None:
    mb = 1 / 2**20
    medians = {
        k: float(np.median([r[k] for r in runs]))
        for k in runs[0]
        if k.endswith(("ms", "mb", "reading"))
    }
    result = {
        "method": method,
        "install_mb": {
            "runtime + numpy + onnxruntime": sum(runtime.values()) * mb,
            "per_distribution": {k: v * mb for k, v in sorted(runtime.items())},
            "serve extra (paho-mqtt)": sum(serve.values()) * mb,
            "torch alone": torch_only * mb,
            "torch with its dependencies": sum(torch_closure.values()) * mb,
        },
        "runs": len(runs),
        "median": medians,
        "torch_imported": any(r["torch_imported"] for r in runs),
        "edgecomp_imported": any(r["edgecomp_imported"] for r in runs),
        "mode": runs[0]["mode"],
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2))
    sizes = result["install_mb"]
    ratio = sizes["torch with its dependencies"] / sizes["runtime + numpy + onnxruntime"]
    print(f"install ({method}):")
    for name, size in sizes["per_distribution"].items():
        print(f"  {name:<22} {size:8.1f} MB")
    print(
        f"  runtime total {sizes['runtime + numpy + onnxruntime']:.1f} MB, "
        f"+{sizes['serve extra (paho-mqtt)']:.1f} MB for [serve]; torch "
        f"{sizes['torch alone']:.1f} MB alone, {sizes['torch with its dependencies']:.1f} MB "
        f"with its dependencies ({ratio:.1f}x the runtime)"
    )
    print(
        f"median of {len(runs)} fresh processes (mode {result['mode']}, "
        f"torch imported: {result['torch_imported']}):"
    )
    for name, value in medians.items():
        print(f"  {name:<24} {value:8.2f}")
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
