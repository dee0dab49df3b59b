"""Shared driver of the examples: train -> build fp32 and int8 -> bench -> summary.

Each example (traffic/, weather/, finance/) calls `run_example` with its data file and windowing.
`--quick` shrinks everything (2 epochs, tiny models, short benches) for the smoke tests.
`calendar="auto"` trains each model with calendar features only where they win on validation
(`edgecomp.calendar_choice`); the summary says what was chosen and on which figures.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
from rich.console import Console

from edgecomp.bench import bench_artifact, print_summary, write_report
from edgecomp.calendar_choice import CalendarChoice, train_with_calendar_choice
from edgecomp.data import DataConfig
from edgecomp.pipeline import BuildConfig
from edgecomp.report import write_full_report
from edgecomp.report.graph_plot import adjacency_plot
from edgecomp.train import TrainConfig
from edgecomp.workflow import build_artifact, train_checkpoint

DATA = Path(__file__).parent / "data"
QUICK_HPARAMS = {
    "lstm": {"hidden": 8, "layers": 1},
    "gru": {"hidden": 8, "layers": 1},
    "tcn": {"channels": 8},
    "stgnn": {"channels": 4},
}


def parse_args(name: str, archs: str = "lstm,gru,tcn") -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=f"edgecomp {name} example, end to end")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / name / "out")
    parser.add_argument("--quick", action="store_true", help="tiny models, 2 epochs (smoke test)")
    parser.add_argument("--archs", default=archs)
    parser.add_argument("--epochs", type=int, default=None)
    return parser.parse_args()


def run_example(
    name: str,
    data_file: str,
    data_config: DataConfig,
    train: TrainConfig,
    args: argparse.Namespace,
    *,
    note: str = "",
    calendar: str | None = None,
    graph: TrainConfig | None = None,
) -> dict:
    """Train each architecture, build fp32 and int8 x86 artifacts, bench them, write a summary.

    ``graph`` holds the graph model's (``stgnn``) training settings and hyperparameters (by
    default ``train``'s); its adjacency is drawn to ``out/adjacency.png``.
    """
    console = Console(width=max(Console().width, 140))
    out: Path = args.out
    data = DATA / data_file
    results = {"example": name, "data": data_file, "note": note, "models": {}}
    artifacts = []
    for arch in args.archs.split(","):
        config = _train_config(graph if arch == "stgnn" and graph else train, arch, args)
        console.rule(f"{name}: train {arch}")
        outcome = _train(data, data_config, config, out / "checkpoints" / arch, calendar, console)
        console.print(outcome.table())
        results["models"][arch] = outcome.evaluation
        if arch == "stgnn":  # the adjacency it uses, drawn (learned: nodes on a circle)
            out.mkdir(parents=True, exist_ok=True)
            layout, module = outcome.model.spec.layout, outcome.model.module
            (out / "adjacency.png").write_bytes(adjacency_plot(layout, module.adjacency().numpy()))
        for precision in ("fp32", "int8"):
            path = out / "artifacts" / f"{name}-{arch}-{precision}.edgepkg"
            build_artifact(str(outcome.path), data, BuildConfig(precision=precision), path)
            artifacts.append(path)
    console.rule(f"{name}: bench")
    bench_kw = {"min_iters": 5, "min_seconds": 0.0} if args.quick else {}
    reports = [bench_artifact(a, data=data, **bench_kw) for a in artifacts]
    write_report(reports, out / "bench", title=f"edgecomp {name} example")
    write_full_report(reports, out / "report", title=f"edgecomp {name} example")
    print_summary(reports, console=console)
    results["bench"] = [_bench_row(r) for r in reports]
    (out / "summary.json").write_text(json.dumps(results, indent=2))
    (out / "summary.md").write_text(render_summary(results))
    for arch, ev in results["models"].items():
        if ev.get("calendar"):
            console.print(f"{arch}: {_choice(ev['calendar']).summary()}", highlight=False)
    console.print(
        f"wrote {out / 'summary.md'}, {out / 'bench' / 'report.md'} and "
        f"{out / 'report' / 'report.html'}"
    )
    return results


def _train(data, data_config, config, out: Path, calendar: str | None, console: Console):
    if calendar != "auto":
        return train_checkpoint(data, data_config, config, out)
    return train_with_calendar_choice(data, data_config, config, out, console=console)


def _choice(record: dict) -> CalendarChoice:
    return CalendarChoice(**{**record, "chosen": tuple(record["chosen"])})


def _train_config(base: TrainConfig, arch: str, args: argparse.Namespace) -> TrainConfig:
    config = replace(base, arch=arch)
    if args.epochs is not None:
        config = replace(config, epochs=args.epochs)
    if args.quick:
        config = replace(config, epochs=2, hparams={**config.hparams, **QUICK_HPARAMS[arch]})
    return config


def _bench_row(report: dict) -> dict:
    acc = report.get("accuracy") or {}
    return {
        "artifact": Path(report["artifact"]["path"]).name,
        "precision": report["artifact"]["precision"],
        "size_bytes": report["artifact"]["file_size"],
        "p50_b1_ms": report["latency"]["b1"]["p50_ms"],
        "mae": acc.get("artifact", {}).get("mae"),
        "delta_mae_pct": acc.get("delta_mae_pct"),
    }


def render_summary(results: dict) -> str:
    """Markdown: per-horizon test MAE of each model beside the naive baselines."""
    lines = [f"# {results['example']} example ({results['data']})", ""]
    if results["note"]:
        lines += [results["note"], ""]
    for arch, ev in results["models"].items():
        horizon = len(ev["model"]["mae"])
        lines += [
            f"## {arch}: test MAE per horizon step ({ev['n_windows']} windows, raw units)",
            "",
            "| forecaster | " + " | ".join(f"h{h + 1}" for h in range(horizon)) + " | mean |",
            "|---" * (horizon + 2) + "|",
        ]
        if ev.get("calendar"):
            lines[-2:-2] = [_choice(ev["calendar"]).summary(), ""]
        for label, metrics in {arch: ev["model"], **ev["baselines"]}.items():
            mae = metrics["mae"]
            lines.append(
                f"| {label} | " + " | ".join(f"{v:.4g}" for v in mae) + f" | {np.mean(mae):.4g} |"
            )
        lines.append("")
    return "\n".join(lines)
