"""Federated: three NYC airports train one temperature forecaster without pooling their data.

Each airport (EWR, JFK, LGA) is a gateway holding only its own hourly weather (8 variables); a
Flower simulation trains one LSTM across them (FedAvg, or FedProx / int8 updates by flag), the
scaling agreed from per-site totals. The global checkpoint is then compiled with `edgecomp build`
into an int8 x86 artifact, verified on each airport's own test split. Writes out/summary.md and
out/summary.json. Run: .venv/bin/python examples/federated/run.py [--quick]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from edgecomp._io import atomic_write_text
from edgecomp.data import DataConfig
from edgecomp.fl.config import FLConfig
from edgecomp.fl.simulation import simulate
from edgecomp.fl.sites import split_by_site
from edgecomp.pipeline import BuildConfig
from edgecomp.train import TrainConfig
from edgecomp.workflow import build_artifact

HERE = Path(__file__).resolve().parent
WEATHER = HERE.parent / "data" / "nyc_airports_weather_2013_hourly.csv.gz"
VARIABLES = ("temp", "dewp", "humid", "wind_dir", "wind_speed", "precip", "pressure", "visib")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="edgecomp federated example (3 airports)")
    parser.add_argument("--out", type=Path, default=HERE / "out")
    parser.add_argument("--quick", action="store_true", help="30 days per site, tiny model")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--strategy", choices=["fedavg", "fedprox"], default="fedavg")
    parser.add_argument("--mu", type=float, default=0.0, help="FedProx proximal weight")
    parser.add_argument("--updates", choices=["fp32", "int8"], default="fp32")
    return parser.parse_args()


def build_per_site(checkpoint: Path, sites: dict[str, Path], out: Path) -> dict[str, dict]:
    """Compile the global model to int8 x86, verified on each airport's own test split."""
    results = {}
    for site, path in sites.items():
        build = build_artifact(
            str(checkpoint), path, BuildConfig(precision="int8"), out / f"{site}-int8.edgepkg"
        )
        metrics = build.manifest["metrics"]
        results[site] = {
            "artifact": str(build.path),
            "bytes": build.path.stat().st_size,
            "reference_mae": metrics["reference"]["mae"],
            "artifact_mae": metrics["artifact"]["mae"],
        }
    return results


def summary_markdown(summary: dict, builds: dict[str, dict]) -> str:
    lines = ["# Federated temperature forecaster, three NYC airports", ""]
    lines += ["| round | clients | up bytes | down bytes | val loss | val MAE °F (mean) |"]
    lines += ["|---|---|---|---|---|---|"]
    for r in summary["rounds"]:
        ev = r["evaluate"]
        lines.append(
            f"| {r['round']} | {r['clients']} | {r['up_bytes']:,} | {r['down_bytes']:,} | "
            f"{ev['val-loss']:.4f} | {ev['val-mae-mean']:.3f} |"
        )
    lines += [
        "",
        "| site | int8 artifact KB | test MAE °F torch | int8 artifact |",
        "|---|---|---|---|",
    ]
    for site, b in builds.items():
        lines.append(
            f"| {site} | {b['bytes'] / 1024:.1f} | {np.mean(b['reference_mae']):.3f} | "
            f"{np.mean(b['artifact_mae']):.3f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    torch.set_num_threads(1)
    args = parse_args()
    quick = args.quick
    sites = split_by_site(
        WEATHER, "origin", args.out / "sites", max_rows=24 * 30 if quick else None
    )
    config = FLConfig(
        data=DataConfig(input_len=24, horizon=6, features=VARIABLES, targets=("temp",)),
        train=TrainConfig(hparams={"hidden": 8 if quick else 32, "layers": 1}, epochs=1),
        sites=tuple(str(p) for p in sites.values()),
        rounds=1 if quick else args.rounds,
        strategy=args.strategy,
        proximal_mu=args.mu,
        updates=args.updates,
        out=str(args.out / "global"),
    )
    summary = simulate(config)
    builds = build_per_site(Path(config.out), sites, args.out / "artifacts")
    atomic_write_text(
        args.out / "summary.json", json.dumps({"fl": summary, "builds": builds}, indent=2)
    )
    text = summary_markdown(summary, builds)
    atomic_write_text(args.out / "summary.md", text)
    print(text)
    print(f"wrote {args.out / 'summary.md'}, {args.out / 'summary.json'}")


if __name__ == "__main__":
    main()
