"""Jetson (TensorRT) artifacts of the traffic models: fp32 vs fp16 vs int8 (explicit Q/DQ).

For each checkpoint (LSTM, GRU, TCN) builds the jetson-orin-nano artifact at each precision through
the real pipeline: per-horizon test MAE of the emitted graph run by onnxruntime (CPU: the numerical
proof on a host without TensorRT), its change against the fp32 artifact, the model size, and the
TensorRT parse + build by tensorrt-rtx on this CPU-only host (success, seconds). Prints a table and
writes benchmarks/out/tensorrt_traffic.json.

    python benchmarks/tensorrt_traffic.py [--checkpoints examples/traffic/out/checkpoints]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from edgecomp.bench.host import host_info
from edgecomp.pipeline import BuildConfig
from edgecomp.workflow import build_artifact

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "data" / "odot_detector_counts_15min.parquet"
PRECISIONS = ("fp32", "fp16", "int8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--checkpoints", type=Path, default=ROOT / "examples/traffic/out/checkpoints"
    )
    parser.add_argument("--target", default="jetson-orin-nano")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/out/tensorrt_traffic.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch in ("lstm", "gru", "tcn"):
            source = args.checkpoints / arch
            if not source.exists():
                raise SystemExit(f"{source} is missing: run examples/traffic/run.py --quick first")
            for precision in PRECISIONS:
                rows.append(_build(source, arch, precision, args.target, Path(tmp)))
    _relative_to_fp32(rows)
    report = {"host": host_info(threads=1), "target": args.target, "data": DATA.name, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    _print(rows)
    print(f"wrote {args.out}")


def _build(source: Path, arch: str, precision: str, target: str, tmp: Path) -> dict[str, Any]:
    config = BuildConfig(target=target, precision=precision)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the onnxruntime fallback: expected here
        result = build_artifact(str(source), DATA, config, tmp / f"{arch}-{precision}.edgepkg")
    manifest = result.manifest
    lowering = manifest["recipe"]["lowering"]
    files = {f["name"]: f["size"] for f in manifest["files"]}
    return {
        "arch": arch,
        "precision": precision,
        "build_s": time.perf_counter() - start,
        "model_bytes": files[manifest["model_file"]],
        "artifact_bytes": result.path.stat().st_size,
        "mae": manifest["metrics"]["artifact"]["mae"],
        "reference_mae": manifest["metrics"]["reference"]["mae"],
        "parity_max_abs_diff": manifest["metrics"]["parity"]["max_abs_diff"],
        "host_build": lowering["host_build"],
        "layers": [(r["name"], r["op_type"], r["precision"]) for r in manifest["layers"]],
    }


def _relative_to_fp32(rows: list[dict[str, Any]]) -> None:
    fp32 = {r["arch"]: r for r in rows if r["precision"] == "fp32"}
    for row in rows:
        base = fp32[row["arch"]]
        row["delta_mae_pct"] = [
            100 * (m - b) / b for m, b in zip(row["mae"], base["mae"], strict=True)
        ]
        row["size_ratio"] = row["model_bytes"] / base["model_bytes"]


def _print(rows: list[dict[str, Any]]) -> None:
    print(
        "| model | precision | model KB | size vs fp32 | MAE h1 | MAE h8 | MAE mean | "
        "ΔMAE % worst step | TensorRT parse+build | parse s | build s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        proof = r["host_build"]
        ok = "ok" if proof.get("built") else proof.get("skipped", "failed")
        worst = max(r["delta_mae_pct"], key=abs)
        print(
            f"| {r['arch']} | {r['precision']} | {r['model_bytes'] / 1024:.1f} | "
            f"{r['size_ratio']:.2f} | {r['mae'][0]:.4f} | {r['mae'][-1]:.4f} | "
            f"{sum(r['mae']) / len(r['mae']):.4f} | {worst:+.2f} | {ok} | "
            f"{proof.get('parse_s', float('nan')):.3f} | {proof.get('build_s', float('nan')):.2f} |"
        )


if __name__ == "__main__":
    main()
