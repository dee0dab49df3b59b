"""Bike-share: Montréal BIXI daily departures per station -> graph model beside LSTM/GRU/TCN.

Forecasts the next 7 days of departures at every kept station from the last 14 days, with the
day's weather and a weekend flag as inputs shared by all stations; the forecast days' day of week,
holiday flag and (unless --no-weather-ahead) weather are known-future inputs (the observed
weather stands in for a weather forecast). The graph model (stgnn) joins the stations by a
Gaussian kernel on their great-circle distances (edgecomp.graph). Each model is built as fp32 and
int8 x86 artifacts and benchmarked through the runtime.
Run: python examples/bikeshare/run.py [--quick] [--stations N] [--no-weather-ahead]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bixi  # noqa: E402

from edgecomp.bench import bench_artifact, print_summary, write_report  # noqa: E402
from edgecomp.data import DataConfig  # noqa: E402
from edgecomp.graph import distance_weights  # noqa: E402
from edgecomp.pipeline import BuildConfig  # noqa: E402
from edgecomp.report.graph_plot import adjacency_plot  # noqa: E402
from edgecomp.train import TrainConfig  # noqa: E402
from edgecomp.workflow import build_artifact, train_checkpoint  # noqa: E402

MAX_MISSING = 0.05  # stations missing at most 5 % of their days (339 of 587)
INPUT_LEN, HORIZON, SEASON = 14, 7, 7
TRAIN = TrainConfig(epochs=150, patience=8, lr=1e-3, loss="mae")
HPARAMS = {  # graph: distance kernel + learned adjacency, graph convolution on the last step;
    # the base: a learned blend of the past weeks, started at the value one week earlier
    "stgnn": {
        "channels": 16,
        "seasonal_residual": SEASON,
        "highway": True,
        "zero_head": True,
        "graph_layers": 1,
        "adjacency": "both",
    }
}
# the graph model's input 1x1 convolution reads every station beside the heavy-tailed weather
# (rain): one per-tensor int8 range over them moves its forecasts by up to 10 %; kept in float
GRAPH_INT8 = {"keep_float": ["inp"]}
QUICK = {
    "stgnn": {"channels": 4},
    "lstm": {"hidden": 8, "layers": 1},
    "gru": {"hidden": 8, "layers": 1},
    "tcn": {"channels": 8},
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="edgecomp bike-share example, end to end")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    parser.add_argument(
        "--stations", type=int, default=100, help="busiest N kept stations; 0: all 587"
    )
    parser.add_argument("--archs", default="stgnn,lstm,gru,tcn")
    parser.add_argument(
        "--no-weather-ahead",
        dest="weather_ahead",
        action="store_false",
        help="no weather of the forecast days (calendar and holiday only)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny models, 2 epochs (smoke test)")
    return parser.parse_args()


def data_config(names: list[str], every_station: bool, weather_ahead: bool) -> DataConfig:
    """14 days -> 7 of every station; with every station, one that is down in a window is
    its mean there (``sparse_columns="fill"``) instead of the window being refused."""
    ahead = bixi.WEATHER_COLUMNS if weather_ahead else ["holiday", "weekend"]
    return DataConfig(
        INPUT_LEN,
        HORIZON,
        split=(0.6, 0.2, 0.2),
        targets=tuple(names),
        calendar=("dow",),
        future_cols=tuple(ahead),
        sparse_columns="fill" if every_station else "refuse",
    )


def main() -> dict:
    args = parse_args()
    console = Console(width=140)
    every = args.stations == 0
    names = (
        bixi.stations(1.0, None, split=None) if every else bixi.stations(MAX_MISSING, args.stations)
    )
    table = bixi.daily_table(args.out / "bixi_daily.csv", names)
    coords = bixi.coordinates(args.out / "coordinates.csv", names)
    config = data_config(names, every, args.weather_ahead)
    graph = {"coordinates": str(coords), "globals": bixi.WEATHER_COLUMNS}
    results = {"stations": len(names), "max_missing": None if every else MAX_MISSING}
    results |= {"weather_ahead": args.weather_ahead, "models": {}, "seconds": {}}
    artifacts = []
    for arch in args.archs.split(","):
        console.rule(f"bikeshare: train {arch}")
        hparams = {**HPARAMS.get(arch, {}), **(graph if arch == "stgnn" else {})}
        train = replace(TRAIN, arch=arch, hparams=hparams)
        if args.quick:
            train = replace(train, epochs=2, hparams={**hparams, **QUICK[arch]})
        start = time.perf_counter()
        outcome = train_checkpoint(table, config, train, args.out / "checkpoints" / arch)
        results["seconds"][arch] = round(time.perf_counter() - start, 1)
        console.print(outcome.table())
        results["models"][arch] = outcome.evaluation
        if arch == "stgnn":
            _plot_graph(outcome.model, args.out / "adjacency.png", results)
        for precision in ("fp32", "int8"):
            path = args.out / "artifacts" / f"bikeshare-{arch}-{precision}.edgepkg"
            options = GRAPH_INT8 if arch == "stgnn" and precision == "int8" else {}
            build_artifact(
                str(outcome.path), table, BuildConfig(precision=precision, options=options), path
            )
            artifacts.append(path)
    bench_kw = {"min_iters": 5, "min_seconds": 0.0} if args.quick else {"min_seconds": 1.0}
    reports = [bench_artifact(a, data=table, **bench_kw) for a in artifacts]
    write_report(reports, args.out / "bench", title="edgecomp bike-share example")
    print_summary(reports, console=console)
    results["bench"] = [_bench_row(r) for r in reports]
    (args.out / "summary.json").write_text(json.dumps(results, indent=2))
    (args.out / "summary.md").write_text(render(results))
    console.print(f"wrote {args.out / 'summary.md'} and {args.out / 'adjacency.png'}")
    return results


def _plot_graph(model, out: Path, results: dict) -> None:
    layout = model.spec.layout
    weights = distance_weights(layout)  # the kernel weights; else the learned transition
    weights = model.module.adjacency().numpy() if weights is None else weights
    out.write_bytes(adjacency_plot(layout, weights))
    results["graph"] = {k: v for k, v in layout["graph"].items() if k != "coordinates"}


def _bench_row(report: dict) -> dict:
    acc = report.get("accuracy") or {}
    return {
        "artifact": Path(report["artifact"]["path"]).name,
        "size_bytes": report["artifact"]["file_size"],
        "p50_b1_ms": report["latency"]["b1"]["p50_ms"],
        "p50_b64_ms": report["latency"]["b64"]["p50_ms"],
        "mae": acc.get("artifact", {}).get("mae"),
        "delta_mae_pct": acc.get("delta_mae_pct"),
    }


def render(results: dict) -> str:
    """Markdown: one per-horizon MAE table (models and baselines), then the artifacts."""
    first = next(iter(results["models"].values()))
    rows = {a: ev["model"]["mae"] for a, ev in results["models"].items()}
    rows |= {b: m["mae"] for b, m in first["baselines"].items()}
    steps = len(first["model"]["mae"])
    lines = [
        f"# bike-share example: {results['stations']} BIXI stations, daily departures",
        "",
        f"Test MAE (departures per station and day) per horizon step, {first['n_windows']} "
        "test windows.",
        "",
        "| forecaster | " + " | ".join(f"h{h + 1}" for h in range(steps)) + " | mean |",
        "|---" * (steps + 2) + "|",
    ]
    for name, mae in rows.items():
        cells = " | ".join("n/a" if v is None else f"{v:.3f}" for v in mae)
        mean = np.mean([v for v in mae if v is not None])
        lines.append(f"| {name} | {cells} | {mean:.3f} |")
    lines += [
        "",
        "| artifact | size KB | p50 b1 ms | p50 b64 ms | ΔMAE % per step |",
        "|---" * 5 + "|",
    ]
    for row in results["bench"]:
        delta = row["delta_mae_pct"]
        worst = "n/a" if not delta else f"{max(d for d in _flat(delta) if d is not None):+.2f}"
        lines.append(
            f"| {row['artifact']} | {row['size_bytes'] / 1024:.1f} | {row['p50_b1_ms']:.3f} | "
            f"{row['p50_b64_ms']:.3f} | {worst} |"
        )
    return "\n".join(lines) + "\n"


def _flat(value) -> list:
    return list(value) if isinstance(value, list) else [value]


if __name__ == "__main__":
    main()
