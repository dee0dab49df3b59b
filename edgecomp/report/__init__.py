"""Compare benchmarked artifacts: tables, plots, Pareto front, regression check; JSON, MD, HTML.

``edgecomp report`` and ``write_full_report`` turn bench dicts (``edgecomp.bench``) into
report.json (schema "edgecomp-report", documented in SCHEMA.md beside this file, JSON Schema in
schema.json), report.md with PNG plots beside it, and a self-contained report.html.
"""

from edgecomp.report.build import (
    build_report,
    pareto_front,
    write_full_report,
    write_report_files,
)
from edgecomp.report.compare import Rules, compare_runs
from edgecomp.report.inputs import (
    SCHEMA,
    SCHEMA_VERSION,
    ReportError,
    load_bench_json,
    load_inputs,
    remeasure_flagged,
)
from edgecomp.report.render import format_summary, render_html, render_markdown

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "ReportError",
    "Rules",
    "build_report",
    "compare_runs",
    "format_summary",
    "load_bench_json",
    "load_inputs",
    "pareto_front",
    "remeasure_flagged",
    "render_html",
    "render_markdown",
    "report_schema",
    "write_full_report",
    "write_report_files",
]


def report_schema() -> dict:
    """The JSON Schema (draft 2020-12) of report.json, from the package's schema.json."""
    import json
    from importlib import resources

    return json.loads(resources.files("edgecomp.report").joinpath("schema.json").read_text())
