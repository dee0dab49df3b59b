"""Benchmark artifacts through the runtime and report latency, size, memory and accuracy."""

from edgecomp.bench.host import host_info
from edgecomp.bench.report import print_summary, render_markdown, write_report
from edgecomp.bench.runner import BenchError, bench_artifact

__all__ = [
    "BenchError",
    "bench_artifact",
    "host_info",
    "print_summary",
    "render_markdown",
    "write_report",
]
