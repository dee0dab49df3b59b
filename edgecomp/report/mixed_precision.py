"""The report's mixed-precision section: per artifact built by `edgecomp analyze --out`, what each
layer cost when quantized alone (layer x horizon), its final precision, and a heat map."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgecomp.report.compare import artifact_key

Cell = tuple[str, str]


def manifest_from_disk(art: dict[str, Any]) -> dict[str, Any] | None:
    """The manifest of the artifact a bench measured, if that same file (sha256) is still there."""
    path = Path(art.get("path") or "")
    if not art.get("path") or not path.is_file() or not art.get("sha256"):
        return None
    with open(path, "rb") as fh:
        if hashlib.file_digest(fh, "sha256").hexdigest() != art["sha256"]:
            return None
    from edgecomp.manifest import read_manifest

    return read_manifest(path)


def mixed_records(benches: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Artifact key -> ``recipe.mixed_precision`` of each benched artifact that has one (read
    from the artifact on disk when it is still the file the bench measured)."""
    out = {}
    for bench in benches:
        manifest = manifest_from_disk(bench["artifact"])
        record = ((manifest or {}).get("recipe") or {}).get("mixed_precision")
        if record:
            layers = {la["name"]: la["precision"] for la in manifest.get("layers") or []}
            out[artifact_key(bench)] = {**record, "final_precision": layers}
    return out


def mixed_sections(report: dict[str, Any]) -> list[tuple[str, str, tuple[list[str], list]]]:
    """(heading, note, table) per mixed-precision artifact in ``report``."""
    records = report.get("mixed_precision") or {}
    if not records:
        return []
    from edgecomp.analyze import sensitivity_table

    sections = []
    for key, record in records.items():
        columns, rows = sensitivity_table(record["sensitivity"])
        final = record["final_precision"]
        cells = [[(c, "") for c in row] + [(final.get(row[0], ""), "")] for row in rows]
        int8 = ", ".join(record.get("kept_int8") or ())
        note = (
            f"Budget {record['budget']['text']} on the {record['split']} split; kept in float: "
            f"{', '.join(record['kept_float']) or 'nothing'}"
            + (f"; kept in int8: {int8}" if int8 else "")
            + f". Each row: {record['base_precision']} "
            "on that layer alone, MAE change against the all-float artifact."
        )
        sections.append(
            (f"Mixed precision: {key.split('|')[0]}", note, ([*columns, "final"], cells))
        )
    return sections


def mixed_plots(report: dict[str, Any]) -> dict[str, bytes]:
    """A layer x horizon heat map per mixed-precision artifact, by plot name."""
    records = report.get("mixed_precision") or {}
    if not records:
        return {}
    from edgecomp.analyze import heatmap_png

    return {
        f"sensitivity_{i}": heatmap_png(record["sensitivity"])
        for i, record in enumerate(records.values())
    }
