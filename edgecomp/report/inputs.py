"""Report inputs: bench artifacts or load bench/report JSONs; re-measure suspected regressions."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from edgecomp.report.compare import Rules, compare_runs

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "ReportError",
    "load_bench_json",
    "load_inputs",
    "remeasure_flagged",
]

SCHEMA = "edgecomp-report"  # what build.py writes, and the newest version this code reads
SCHEMA_VERSION = 1
_BENCH_SCHEMA = "edgecomp-bench"
_BENCH_VERSION = 1
_LATENCY_SECTIONS = ("latency", "engine_latency", "throughput", "preprocess_overhead")


class ReportError(ValueError):
    """Report inputs cannot be used; the message names the file and what is wrong."""


def load_inputs(inputs: Iterable[str | Path], **bench_kw: Any) -> list[dict[str, Any]]:
    """Bench dicts from artifacts (benched now) and bench or report JSON files (loaded as is).

    Args:
        inputs: .edgepkg files, unpacked artifact folders, folders of .edgepkg files, bench
            report.json files (the list ``edgecomp bench`` writes), edgecomp-report JSON files,
            or folders holding a report.json.
        **bench_kw: Passed to ``edgecomp.bench.bench_artifact`` (data, batch_sizes, ...).

    Raises:
        FileNotFoundError: An input does not exist.
        ReportError: An input is none of the above, or a JSON file is not a bench report.
    """
    from edgecomp.bench import bench_artifact

    benches: list[dict[str, Any]] = []
    for item in inputs:
        artifacts, json_file = _classify(Path(item))
        benches += [bench_artifact(a, **bench_kw) for a in artifacts]
        if json_file is not None:
            benches += load_bench_json(json_file)
    return benches


def _classify(path: Path) -> tuple[list[Path], Path | None]:
    """(artifacts to bench, JSON file to load) for one input path."""
    if not path.exists():
        raise FileNotFoundError(f"report input not found: {path}")
    if path.is_file():
        if path.suffix == ".edgepkg":
            return [path], None
        if path.suffix == ".json":
            return [], path
    elif (path / "manifest.json").is_file():
        return [path], None
    elif packages := sorted(path.glob("*.edgepkg")):
        return packages, None
    elif (path / "report.json").is_file():
        return [], path / "report.json"
    raise ReportError(
        f"{path}: expected a .edgepkg artifact, an artifact folder, a bench or report .json, "
        "or a folder holding .edgepkg files or a report.json"
    )


def load_bench_json(path: str | Path) -> list[dict[str, Any]]:
    """Bench dicts from a bench report.json (a list), one bench dict, or an edgecomp-report.

    A folder stands for the report.json inside it.

    Raises:
        FileNotFoundError: The file does not exist.
        ReportError: It is not JSON, holds something other than bench reports, or a newer
            schema version than this edgecomp reads.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"bench JSON not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"{path}: not a readable JSON file ({exc})") from None
    if isinstance(data, dict) and data.get("schema") == SCHEMA:
        _check_version(path, data, SCHEMA_VERSION)
        data = data.get("artifacts")
    benches = data if isinstance(data, list) else [data]
    for i, bench in enumerate(benches):
        _check_bench(path, i, bench)
    return benches


def _check_bench(path: Path, index: int, bench: Any) -> None:
    where = f"{path}: entry {index}"
    if not isinstance(bench, dict) or bench.get("schema") != _BENCH_SCHEMA:
        raise ReportError(f"{where} is not a bench report (its 'schema' is not '{_BENCH_SCHEMA}')")
    _check_version(path, bench, _BENCH_VERSION)
    art = bench.get("artifact")
    if not isinstance(art, dict) or "name" not in art or "file_size" not in art:
        raise ReportError(f"{where}: field 'artifact' lacks 'name' or 'file_size'")
    if not isinstance(bench.get("latency"), dict) or not bench["latency"]:
        raise ReportError(f"{where} ({art['name']}): field 'latency' is missing or empty")


def _check_version(path: Path, data: dict[str, Any], supported: int) -> None:
    version = data.get("schema_version")
    if not isinstance(version, int) or version > supported:
        raise ReportError(
            f"{path}: {data.get('schema')} schema_version {version!r} is not readable by this "
            f"edgecomp (reads 1..{supported}); upgrade edgecomp"
        )


def remeasure_flagged(
    benches: Sequence[dict[str, Any]],
    baseline: Sequence[dict[str, Any]],
    *,
    retries: int = 2,
    rules: Rules | None = None,
    **bench_kw: Any,
) -> list[dict[str, Any]]:
    """Re-bench artifacts whose latency looks regressed against ``baseline``; keep the fastest.

    A slower code path stays slow when measured again; a burst of load from another process on
    the machine usually does not. Each flagged artifact (one benched from a path that still
    exists) is measured again, up to ``retries`` times while it stays flagged, and per batch size
    the run with the lowest p50 counts. ``latency_runs`` in its bench dict says how many ran.

    Args:
        benches: Bench dicts of the run under test.
        baseline: Bench dicts of the earlier run.
        retries: Most extra measurements per artifact.
        rules: Noise thresholds (default ``Rules()``).
        **bench_kw: Passed to ``edgecomp.bench.bench_artifact`` (memory is not measured again).
    """
    from edgecomp.bench import bench_artifact

    out = list(benches)
    for _ in range(retries):
        flagged = _latency_flagged(out, baseline, rules)
        if not flagged:
            break
        for i in flagged:
            again = bench_artifact(out[i]["artifact"]["path"], **{**bench_kw, "memory": False})
            out[i] = _fastest(out[i], again)
    return out


def _measurable(bench: dict[str, Any]) -> bool:
    path = bench["artifact"].get("path")
    return bool(path) and Path(path).exists()


def _latency_flagged(
    benches: list[dict[str, Any]], baseline: Sequence[dict[str, Any]], rules: Rules | None
) -> list[int]:
    """Indices of benches with a regressed latency check whose artifact can be measured again."""
    verdicts = compare_runs(benches, list(baseline), rules)["verdicts"]
    return [
        i
        for i, (bench, verdict) in enumerate(zip(benches, verdicts, strict=False))
        if _measurable(bench)
        and any(
            c["status"] == "regressed" and c["metric"].startswith("latency.")
            for c in verdict["checks"]
        )
    ]


def _fastest(first: dict[str, Any], again: dict[str, Any]) -> dict[str, Any]:
    """``first`` with, per batch size, the timing sections of whichever run had the lower p50."""
    merged = {**first, "latency_runs": first.get("latency_runs", 1) + 1}
    for section in _LATENCY_SECTIONS:
        merged[section] = dict(first.get(section) or {})
    for key, stats in (again.get("latency") or {}).items():
        if stats["p50_ms"] < (first["latency"].get(key) or {}).get("p50_ms", float("inf")):
            for section in _LATENCY_SECTIONS:
                merged[section][key] = (again.get(section) or {}).get(key)
    return merged
