"""Which int8 settings pay on this CPU? Per-tensor vs per-channel weights, with and without
reduce_range, for the traffic LSTM and TCN: engine latency (interleaved, one thread) and MAE change
against fp32 per horizon step. The x86 target profiles' defaults come from runs of this script.

    python benchmarks/x86_int8_options.py --checkpoints examples/traffic/out/checkpoints
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

import edgecomp_runtime
from edgecomp.bench.host import host_info
from edgecomp.checkpoint import load_checkpoint
from edgecomp.pipeline import BuildConfig, build
from edgecomp.workflow import dataset_for

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "data" / "odot_detector_counts_15min.parquet"
VARIANTS = {
    "per_tensor": {"per_channel": False, "reduce_range": False},
    "per_tensor_reduce_range": {"per_channel": False, "reduce_range": True},
    "per_channel": {"per_channel": True, "reduce_range": False},
    "per_channel_reduce_range": {"per_channel": True, "reduce_range": True},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=Path, required=True)
    parser.add_argument("--archs", default="lstm,tcn")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--iters", type=int, default=40)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "out" / "int8_options.json"
    )
    args = parser.parse_args()
    results = {"host": host_info(), "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.archs.split(","):
            results["models"][arch] = compare(args.checkpoints / arch, Path(tmp) / arch, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


def compare(checkpoint: Path, work: Path, args: argparse.Namespace) -> dict:
    model = load_checkpoint(checkpoint)
    dataset = dataset_for(model.spec, DATA)
    models, rows = {}, {}
    for name, options in VARIANTS.items():
        built = build(model, dataset, BuildConfig(options=options), work / f"{name}.edgepkg")
        ref = np.asarray(built.manifest["metrics"]["reference"]["mae"])
        art = np.asarray(built.manifest["metrics"]["artifact"]["mae"])
        rows[name] = {
            "mae_change_pct": ((art / ref - 1) * 100).tolist(),
            "size_bytes": built.path.stat().st_size,
        }
        models[name] = edgecomp_runtime.load(built.path, threads=1)
    times = {name: {1: [], 64: []} for name in models}
    rng = np.random.default_rng(0)
    for _ in range(args.rounds):
        for b in (1, 64):
            x = dataset.test.x[rng.integers(0, len(dataset.test) - b) :][:b]
            for name in rng.permutation(list(models)):
                models[name].run_scaled(x)
                for _ in range(args.iters):
                    t0 = time.perf_counter_ns()
                    models[name].run_scaled(x)
                    times[name][b].append((time.perf_counter_ns() - t0) / 1e6)
    print(f"\n== {checkpoint.name} ==  engine p50 ms b1 / b64, worst MAE change %")
    for name, row in rows.items():
        row["p50_ms"] = {f"b{b}": float(np.median(v)) for b, v in times[name].items()}
        print(
            f"  {name:<26} {row['p50_ms']['b1']:.4f} / {row['p50_ms']['b64']:.3f}   "
            f"{max(row['mae_change_pct']):+.2f}"
        )
    return rows


if __name__ == "__main__":
    main()
