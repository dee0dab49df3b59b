"""Assemble a comparison report from bench dicts: summary rows, Pareto front, regression, files."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgecomp import __version__
from edgecomp._io import atomic_write_bytes, atomic_write_text

# NOTE: the bench package's JSON cleaner (NaN -> None, numpy -> lists), shared, not duplicated.
from edgecomp.bench.report import _finite
from edgecomp.metrics import scored_note
from edgecomp.report.compare import Rules, artifact_key, compare_runs
from edgecomp.report.devices import device_name
from edgecomp.report.inputs import SCHEMA, SCHEMA_VERSION, ReportError, load_bench_json
from edgecomp.report.mixed_precision import manifest_from_disk, mixed_records

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "build_report",
    "pareto_front",
    "summary_row",
    "write_full_report",
    "write_report_files",
]

_ENGINES = {"onnx": "onnxruntime"}  # backend -> engine package, for bench JSONs without "engine"


def build_report(
    benches: Sequence[dict[str, Any]],
    *,
    title: str = "edgecomp report",
    baseline: str | Path | Sequence[dict[str, Any]] | None = None,
    rules: Rules | None = None,
) -> dict[str, Any]:
    """The report dict (schema "edgecomp-report", version 1; see edgecomp/report/SCHEMA.md).

    Args:
        benches: Bench dicts, one per artifact (``bench_artifact`` or ``load_inputs``).
        title: Report title.
        baseline: An earlier run (bench or report JSON path, or its bench dicts) to check for
            regressions against.
        rules: Noise thresholds of the regression check (default ``Rules()``).

    Raises:
        ReportError: No bench dicts, or one artifact (name, target, precision) appears twice.
    """
    benches = [_with_defaults(b) for b in benches]
    if not benches:
        raise ReportError("nothing to report: no artifacts or bench results were given")
    _check_unique(benches, "inputs")
    hosts, host_of = _hosts(benches)
    rows = [summary_row(b, host_of[i]) for i, b in enumerate(benches)]
    front = _mark_pareto(rows)
    mixed = mixed_records(benches)  # per-layer cost of mixed-precision artifacts (optional key)
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "title": title,
        "producer": {"edgecomp": __version__},
        "hosts": hosts,
        "rows": rows,
        "pareto": {"x": "latency.b1.p50_ms", "y": "mae_mean", "front": front},
        "regression": _regression(benches, baseline, rules),
        "plots": {},
        "artifacts": _finite(benches),
        **({"mixed_precision": _finite(mixed)} if mixed else {}),
    }


def _with_defaults(bench: dict[str, Any]) -> dict[str, Any]:
    """``bench`` with ``engine`` and ``artifact.recipe`` (older bench JSONs lack them)."""
    art = bench["artifact"]
    if not art.get("recipe") and (recipe := _recipe_from_disk(art)):
        bench = {**bench, "artifact": {**art, "recipe": recipe}}
    if bench.get("engine"):
        return bench
    backend = art.get("backend")
    package = _ENGINES.get(backend, "unknown")
    version = ((bench.get("host") or {}).get("versions") or {}).get(package)
    engine = {
        "backend": backend,
        "engine": f"{package} {version or '?'}",
        "native": None,
        "note": "not recorded by the bench that measured this; inferred from the backend",
    }
    return {**bench, "engine": engine}


def _recipe_from_disk(art: dict[str, Any]) -> dict[str, Any] | None:
    """The recipe of the artifact a bench measured, if that same file (sha256) is still there."""
    from edgecomp.bench.runner import recipe_summary

    manifest = manifest_from_disk(art)
    return None if manifest is None else recipe_summary(manifest)


def _check_unique(benches: Sequence[dict[str, Any]], what: str) -> None:
    seen: set[str] = set()
    for bench in benches:
        key = artifact_key(bench)
        if key in seen:
            raise ReportError(
                f"artifact {key.replace('|', ' ')} appears twice in the {what}; rename one, or "
                "compare runs with --baseline"
            )
        seen.add(key)


def _hosts(benches: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[int]]:
    """Distinct hosts and, per bench, the index of its host."""
    hosts: list[dict[str, Any]] = []
    index: dict[str, int] = {}
    host_of = []
    for bench in benches:
        host = bench.get("host") or {}
        key = json.dumps(host, sort_keys=True)
        if key not in index:
            index[key] = len(hosts)
            hosts.append(host)
        host_of.append(index[key])
    return _finite(hosts), host_of


def summary_row(bench: dict[str, Any], host: int = 0) -> dict[str, Any]:
    """The report's figures for one artifact (one table row); ``pareto`` is filled in later."""
    art, acc = bench["artifact"], bench.get("accuracy") or {}
    latency = {k: _pick(v, ("p50_ms", "p90_ms", "p99_ms")) for k, v in bench["latency"].items()}
    mae = (acc.get("artifact") or {}).get("mae")
    kept = [v for v in mae or [] if v is not None]  # None: a step without an observed value
    deltas = [d for d in acc.get("delta_mae_pct") or [] if d is not None]
    return _finite(
        {
            "key": artifact_key(bench),
            "name": art["name"],
            "target": art.get("target"),
            "precision": art.get("precision"),
            "arch": art.get("arch"),
            "recipe": (art.get("recipe") or {}).get("summary"),
            "engine": bench["engine"],
            "host": host,
            "device": device_name(bench),
            "file_size": art["file_size"],
            "model_file_size": art.get("model_file_size"),
            "peak_rss_mb": (bench.get("memory") or {}).get("peak_rss_mb"),
            "latency": latency,
            "latency_runs": bench.get("latency_runs", 1),
            "batch_n": max(latency, key=lambda k: int(k.removeprefix("b"))),
            "throughput": bench.get("throughput") or {},
            "mae": mae,
            "mae_mean": sum(kept) / len(kept) if kept else None,
            "scored": scored_note(acc["artifact"]) if acc.get("artifact") else None,
            "reference_mae": (acc.get("reference") or {}).get("mae"),
            "delta_mae_pct": acc.get("delta_mae_pct"),
            "delta_mae_pct_worst": max(deltas) if deltas else None,
            "pareto": None,
        }
    )


def _pick(stats: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: stats.get(k) for k in keys}


def pareto_front(points: dict[str, tuple[float, float]]) -> list[str]:
    """Keys of the points no other point dominates (as good in both values, better in one)."""
    return [
        key
        for key, (x, y) in points.items()
        if not any(
            (x2 <= x and y2 <= y) and (x2 < x or y2 < y)
            for other, (x2, y2) in points.items()
            if other != key
        )
    ]


def _mark_pareto(rows: list[dict[str, Any]]) -> list[str]:
    """Set each row's ``pareto`` (None without both MAE and batch-1 latency); return the front."""
    points = {
        r["key"]: (r["latency"]["b1"]["p50_ms"], r["mae_mean"])
        for r in rows
        if r["mae_mean"] is not None and (r["latency"].get("b1") or {}).get("p50_ms") is not None
    }
    front = pareto_front(points)
    for row in rows:
        row["pareto"] = (row["key"] in front) if row["key"] in points else None
    return front


def _regression(
    benches: list[dict[str, Any]],
    baseline: str | Path | Sequence[dict[str, Any]] | None,
    rules: Rules | None,
) -> dict[str, Any] | None:
    if baseline is None:
        return None
    if isinstance(baseline, str | Path):
        label, old = str(baseline), load_bench_json(baseline)
    else:
        label, old = "given bench results", list(baseline)
    _check_unique(old, "baseline")
    return _finite({"baseline": label, **compare_runs(benches, old, rules)})


def write_report_files(report: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write the plots (PNG), report.json, report.md and a self-contained report.html.

    Returns:
        Paths by name: "json", "md", "html", and one per plot (e.g. "error_vs_latency").
    """
    from edgecomp.report.plots import render_plots
    from edgecomp.report.render import render_html, render_markdown

    out_dir = Path(out_dir)
    images = render_plots(report)
    report = {**report, "plots": {name: f"{name}.png" for name in images}}
    paths = {name: atomic_write_bytes(out_dir / f"{name}.png", png) for name, png in images.items()}
    text = json.dumps(report, indent=2, allow_nan=False) + "\n"
    paths["json"] = atomic_write_text(out_dir / "report.json", text)
    paths["md"] = atomic_write_text(out_dir / "report.md", render_markdown(report))
    paths["html"] = atomic_write_text(out_dir / "report.html", render_html(report, images))
    return paths


def write_full_report(
    benches: Sequence[dict[str, Any]],
    out_dir: str | Path,
    *,
    title: str = "edgecomp report",
    baseline: str | Path | Sequence[dict[str, Any]] | None = None,
) -> dict[str, Path]:
    """``build_report`` then ``write_report_files``: the whole report from bench dicts.

    Args:
        benches: Bench dicts from ``edgecomp.bench.bench_artifact``, one per artifact.
        out_dir: Destination folder (created when missing).
        title: Report title.
        baseline: Optional earlier run (path of a bench/report JSON, or its bench dicts).

    Returns:
        Paths by name: "json", "md", "html" and one per plot.
    """
    return write_report_files(build_report(benches, title=title, baseline=baseline), out_dir)
