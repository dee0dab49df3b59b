"""int4 weight-only and error-budget mixed precision on the traffic models, side by side.

For each checkpoint: fp32, int8 and int4 artifacts for x86 (ONNX Runtime), then the per-layer
int4 sensitivity on the validation split and the mixed-precision artifact that meets the budget
(default: MAE +1 % at every horizon step). Reports artifact and model-file size (and ratio to
fp32), runtime load time and batch-1 latency (medians, interleaved in one run), and per-horizon
test MAE change against the torch reference.

    python benchmarks/int4_mixed.py --checkpoints examples/traffic/out/checkpoints

Train the checkpoints first if they are missing: python examples/traffic/run.py --quick
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import torch

import edgecomp_runtime
from edgecomp.analyze import analyze, relative_increase
from edgecomp.bench.host import host_info
from edgecomp.checkpoint import load_checkpoint
from edgecomp.mixed import Budget, parse_increase, plan_mixed
from edgecomp.pipeline import BuildConfig, build
from edgecomp.workflow import dataset_for

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "data" / "odot_detector_counts_15min.parquet"
PRECISIONS = ("fp32", "int8", "int4")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--checkpoints", type=Path, default=ROOT / "examples/traffic/out/checkpoints"
    )
    parser.add_argument("--archs", default="lstm,gru,tcn")
    parser.add_argument("--budget", default="1%", help="MAE increase allowed at every step.")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/out/int4_mixed.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {"host": host_info(), "budget": args.budget, "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.archs.split(","):
            if not (args.checkpoints / arch).is_dir():
                raise SystemExit(f"{args.checkpoints / arch}: missing; run examples/traffic/run.py")
            results["models"][arch] = compare(args.checkpoints / arch, Path(tmp) / arch, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


def compare(checkpoint: Path, work: Path, args: argparse.Namespace) -> dict:
    model = load_checkpoint(checkpoint)
    dataset = dataset_for(model.spec, DATA)
    paths = {
        p: build(model, dataset, BuildConfig(precision=p), work / f"{p}.edgepkg").path
        for p in PRECISIONS
    }
    sens = analyze(model, dataset, precision="int4")
    plan = plan_mixed(model, dataset, sens, Budget(max_increase=parse_increase(args.budget)))
    options = {"keep_float": plan.kept_float}
    config = BuildConfig(precision="int4", options=options)
    paths["mixed"] = build(model, dataset, config, work / "mixed.edgepkg", mixed=plan.record()).path
    rows = {name: describe(path) for name, path in paths.items()}
    timings(paths, dataset.test.x, rows, args.rounds)
    for row in rows.values():
        row["size_ratio"] = row["size_bytes"] / rows["fp32"]["size_bytes"]
        row["model_file_ratio"] = row["model_file_bytes"] / rows["fp32"]["model_file_bytes"]
    result = {
        "artifacts": rows,
        "sensitivity": sens.to_dict(),
        "mixed": {"kept_float": plan.kept_float, "val_steps": len(plan.steps)},
    }
    print_model(checkpoint.name, result, plan)
    return result


def describe(path: Path) -> dict:
    manifest = edgecomp_runtime.load(path).manifest
    metrics = manifest["metrics"]
    with zipfile.ZipFile(path) as archive:
        model_bytes = archive.getinfo(manifest["model_file"]).file_size
    return {
        "size_bytes": path.stat().st_size,
        "model_file_bytes": model_bytes,
        "test_mae": metrics["artifact"]["mae"],
        "test_mae_change": relative_increase(
            metrics["artifact"]["mae"], metrics["reference"]["mae"]
        ),
        "layers": {la["name"]: [la["precision"], la.get("method")] for la in manifest["layers"]},
    }


def timings(paths: dict[str, Path], windows: np.ndarray, rows: dict, rounds: int) -> None:
    """Median load time and batch-1 engine latency, interleaved across the artifacts."""
    loads: dict[str, list[float]] = {name: [] for name in paths}
    runs: dict[str, list[float]] = {name: [] for name in paths}
    rng = np.random.default_rng(0)
    for _ in range(rounds):
        for name in rng.permutation(list(paths)):
            t0 = time.perf_counter()
            loaded = edgecomp_runtime.load(paths[name], threads=1)
            loads[name].append(time.perf_counter() - t0)
            x = windows[rng.integers(0, len(windows)) :][:1]
            loaded.run_scaled(x)
            for _ in range(20):
                t0 = time.perf_counter()
                loaded.run_scaled(x)
                runs[name].append(time.perf_counter() - t0)
    for name in paths:
        rows[name]["load_ms_p50"] = float(np.median(loads[name]) * 1e3)
        rows[name]["run_b1_ms_p50"] = float(np.median(runs[name]) * 1e3)


def print_model(name: str, result: dict, plan) -> None:
    rows = result["artifacts"]
    print(
        f"\n== {name} ==  size (ratio to fp32), model file ratio, load / run b1 ms p50, "
        "test MAE change per step"
    )
    for precision, row in rows.items():
        change = " ".join(f"{v * 100:+.2f}" for v in row["test_mae_change"])
        print(
            f"  {precision:<6} {row['size_bytes']:>8,} B ({row['size_ratio'] * 100:5.1f} %)  "
            f"model {row['model_file_ratio'] * 100:5.1f} %  {row['load_ms_p50']:6.2f} / "
            f"{row['run_b1_ms_p50']:.4f} ms  [{change}] %"
        )
    print(
        f"  mixed keeps in float: {plan.kept_float or 'nothing'} ({plan.budget.describe()} on val)"
    )
    for layer, note in plan.layer_notes().items():
        print(f"    {layer:<16} {note.split(': ')[-1]}  -> {rows['mixed']['layers'][layer][0]}")


if __name__ == "__main__":
    main()
