"""Bench reports: JSON first (report.json), Markdown rendered from it (report.md), a rich table."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from edgecomp._io import atomic_write_text
from edgecomp.metrics import scored_note

__all__ = ["write_report", "render_markdown", "print_summary", "summary_rows", "SUMMARY_COLUMNS"]

SUMMARY_COLUMNS = (
    "artifact",
    "target",
    "precision",
    "size KB",
    "p50 b1 ms",
    "p99 b1 ms",
    "p50 b64 ms",
    "throughput b64 /s",
    "peak RSS MB",
    "MAE mean",
    "ΔMAE% worst h",
)
# print_summary's columns: (header, index into SUMMARY_COLUMNS)
_SHORT_COLUMNS = (
    ("artifact", 0),
    ("target", 1),
    ("prec", 2),
    ("KB", 3),
    ("b1 p50 ms", 4),
    ("b64 p50 ms", 6),
    ("RSS MB", 8),
    ("MAE", 9),
    ("ΔMAE%", 10),
)
_DASH = "–"


def write_report(
    reports: list[dict[str, Any]], out_dir: str | Path, *, title: str = "edgecomp bench"
) -> dict[str, Path]:
    """Write ``report.json`` (the list of reports) and ``report.md`` into ``out_dir``, atomically.

    Args:
        reports: Reports from ``bench_artifact``, one per artifact.
        out_dir: Destination folder (created when missing).
        title: Heading of the Markdown report.

    Returns:
        {"json": path of report.json, "md": path of report.md}.
    """
    out_dir = Path(out_dir)
    text = json.dumps(_finite(reports), indent=2, allow_nan=False)
    return {
        "json": atomic_write_text(out_dir / "report.json", text + "\n"),
        "md": atomic_write_text(out_dir / "report.md", render_markdown(reports, title=title)),
    }


def render_markdown(reports: list[dict[str, Any]], *, title: str = "edgecomp bench") -> str:
    """Markdown: a summary row per artifact, latency and memory detail, per-horizon MAE, hosts."""
    parts = [f"# {title}", "", _table(SUMMARY_COLUMNS, summary_rows(reports)), ""]
    parts += [_engine_note(r) for r in reports if not r.get("engine", {}).get("native", True)]
    parts += ["## Latency per batch size", "", _latency_table(reports), ""]
    parts += ["## Memory and load", "", _memory_table(reports), ""]
    accuracy = [r for r in reports if r.get("accuracy")]
    if accuracy:
        parts += ["## Per-horizon MAE (artifact vs fp32 reference)", ""]
        parts += [_horizon_section(r) for r in accuracy]
    parts += ["## Host", ""]
    parts += [_host_section(host) for host in _unique_hosts(reports)]
    return "\n".join(parts)


def print_summary(reports: list[dict[str, Any]], console: Any = None) -> None:
    """Print a short table (one row per artifact) with rich."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="edgecomp bench")
    for i, (name, _) in enumerate(_SHORT_COLUMNS):
        table.add_column(name, justify="left" if i < 3 else "right")
    for row in summary_rows(reports):
        table.add_row(*(row[index] for _, index in _SHORT_COLUMNS))
    (console or Console()).print(table)


def summary_rows(reports: list[dict[str, Any]]) -> list[list[str]]:
    """One row of formatted cells per report, in ``SUMMARY_COLUMNS`` order."""
    return [_summary_row(r) for r in reports]


def _summary_row(report: dict[str, Any]) -> list[str]:
    art, lat = report["artifact"], report.get("latency", {})
    acc = report.get("accuracy") or {}
    mae = [v for v in (acc.get("artifact") or {}).get("mae") or [] if v is not None]
    deltas = [d for d in acc.get("delta_mae_pct") or [] if d is not None]
    return [
        art["name"],
        str(art.get("target")),
        str(art.get("precision")),
        _num(art["file_size"] / 1024, 1),
        _num(lat.get("b1", {}).get("p50_ms")),
        _num(lat.get("b1", {}).get("p99_ms")),
        _num(lat.get("b64", {}).get("p50_ms")),
        _num(report.get("throughput", {}).get("b64"), 0),
        _num((report.get("memory") or {}).get("peak_rss_mb"), 1),
        _num(sum(mae) / len(mae) if mae else None, 4),
        _num(max(deltas) if deltas else None, 2, signed=True),  # the step that lost most
    ]


def _latency_table(reports: list[dict[str, Any]]) -> str:
    columns = (
        "artifact",
        "batch",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "mean ms",
        "engine p50 ms",
        "preprocess %",
        "windows/s",
        "iters",
    )
    rows = []
    for r in reports:
        for key, lat in r.get("latency", {}).items():
            eng = r.get("engine_latency", {}).get(key, {})
            over = r.get("preprocess_overhead", {}).get(key, {})
            rows.append(
                [
                    r["artifact"]["name"],
                    key.removeprefix("b"),
                    _num(lat["p50_ms"]),
                    _num(lat["p90_ms"]),
                    _num(lat["p99_ms"]),
                    _num(lat["mean_ms"]),
                    _num(eng.get("p50_ms")),
                    _num(over.get("pct"), 1),
                    _num(r.get("throughput", {}).get(key), 0),
                    str(lat["iters"]),
                ]
            )
    return _table(columns, rows)


def _memory_table(reports: list[dict[str, Any]]) -> str:
    columns = (
        "artifact",
        "model file KB",
        "load ms",
        "cold load ms",
        "RSS after import MB",
        "peak RSS MB",
        "load+predict RSS MB",
        "torch imported",
    )
    rows = []
    for r in reports:
        mem = r.get("memory") or {}
        torch = mem.get("torch_imported")
        rows.append(
            [
                r["artifact"]["name"],
                _num(r["artifact"]["model_file_size"] / 1024, 1),
                _num(r.get("load_ms")),
                _num(mem.get("cold_load_ms")),
                _num(mem.get("rss_after_import_mb"), 1),
                _num(mem.get("peak_rss_mb"), 1),
                _num(mem.get("artifact_rss_mb"), 1),
                _DASH if torch is None else ("yes" if torch else "no"),
            ]
        )
    return _table(columns, rows)


def _horizon_section(report: dict[str, Any]) -> str:
    acc = report["accuracy"]
    mae = acc["artifact"]["mae"]
    ref = (acc.get("reference") or {}).get("mae") or [None] * len(mae)
    delta = acc.get("delta_mae") or [None] * len(mae)
    pct = acc.get("delta_mae_pct") or [None] * len(mae)
    gateway = acc.get("gateway") or {}
    raw = gateway.get("mae") or [None] * len(mae)
    rows = [
        [str(h + 1), _num(a, 4), _num(r, 4), _num(d, 4, signed=True), _num(p, 2, signed=True)]
        + [_num(g, 4)]
        for h, (a, r, d, p, g) in enumerate(zip(mae, ref, delta, pct, raw, strict=True))
    ]
    note = (
        f"{acc['split']} split, {acc['n_windows']} windows ({acc.get('n_refused', 0)} refused); "
        f"reference: {acc.get('reference_split')} split, {acc.get('reference_n_windows')} windows"
        + ("" if acc.get("comparable") else " (not the same windows)")
        + f". {scored_note(acc['artifact']).capitalize()}. Raw-window MAE: the same windows "
        f"with their {gateway.get('n_with_missing', 0)} gappy ones filled per window by the "
        f"runtime ({gateway.get('n_refused', 0)} refused)."
    )
    head = f"### {report['artifact']['name']}\n\n{note}\n\n"
    columns = ("h", "MAE", "reference MAE", "Δ", "Δ%", "raw-window MAE")
    return head + _table(columns, rows) + "\n"


def _engine_note(report: dict[str, Any]) -> str:
    """One line per artifact not measured on its target's own engine, saying what ran instead."""
    engine = report["engine"]
    return f"- **{report['artifact']['name']}**: {engine['note']}\n"


def _host_section(host: dict[str, Any]) -> str:
    cpu, osi, threads = host.get("cpu", {}), host.get("os", {}), host.get("threads", {})
    isa = ", ".join(k for k, v in cpu.get("isa", {}).items() if v) or "none detected"
    versions = ", ".join(f"{k} {v}" for k, v in host.get("versions", {}).items() if v)
    env = ", ".join(f"{k}={v}" for k, v in threads.get("env", {}).items()) or "none set"
    return "\n".join(
        [
            f"- CPU: {cpu.get('model')} ({cpu.get('logical_cores')} logical, "
            f"{cpu.get('physical_cores')} physical cores)",
            f"- ISA: {isa}",
            f"- OS: {osi.get('system')} {osi.get('release')} ({osi.get('machine')})",
            f"- Python: {host.get('python', {}).get('version')}; {versions}",
            f"- Threads: requested {threads.get('requested')}, "
            f"{threads.get('affinity')} CPUs usable; env: {env}",
            "",
        ]
    )


def _unique_hosts(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for r in reports:
        seen.setdefault(json.dumps(r.get("host", {}), sort_keys=True), r.get("host", {}))
    return list(seen.values())


def _table(columns: tuple[str, ...], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _num(value: float | None, digits: int = 3, *, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return _DASH
    if abs(value) < 0.5 * 10**-digits:
        value = 0.0  # no "-0.00"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as None and numpy values as plain numbers and lists."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
