"""Render a report dict as Markdown (PNGs beside it) and as one self-contained HTML page.

Both are rendered from the same cell tables, so they always show the same figures. The HTML page
embeds its images as base64 data URIs and its CSS inline: it opens offline and refers to nothing
outside itself.
"""

from __future__ import annotations

import base64
import html
import math
from typing import Any

from edgecomp.report.devices import device_sections
from edgecomp.report.mixed_precision import mixed_sections

__all__ = ["format_summary", "render_html", "render_markdown"]

_DASH = "–"
_TITLES = {
    "error_vs_latency": "Error against latency",
    "horizon_error": "Error per horizon step",
    "latency": "Latency distributions",
    "size": "Size and memory",
}
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:1200px;padding:0 1rem;color:#222;line-height:1.4}
table{border-collapse:collapse;margin:.6rem 0 1.4rem;font-size:.86rem}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:right;white-space:nowrap}
th{background:#f2f2f2}td:nth-child(-n+3),th:nth-child(-n+3){text-align:left}
td.wrap{white-space:normal;text-align:left;min-width:14rem}
.regressed{background:#fbd5d5}.improved{background:#d5f5dc}.new,.missing{background:#fff4cc}
img{max-width:100%;border:1px solid #eee;margin:.4rem 0 1.2rem}
.note{color:#555;font-size:.86rem}code{background:#f5f5f5;padding:0 .2rem}
"""


def render_markdown(report: dict[str, Any]) -> str:
    """Markdown with the tables, the host section and the plots as image links beside it."""
    parts = [f"# {report['title']}", "", _intro(report), ""]
    for heading, note, (columns, rows) in _sections(report):
        parts += [f"## {heading}", ""] + ([note, ""] if note else [])
        parts += [_md_table(columns, [[c for c, _ in row] for row in rows]), ""]
        if heading == "Summary":
            parts += [f"![{_TITLES.get(n, n)}]({f})" for n, f in report["plots"].items()] + [""]
    parts += ["## Host", ""] + [_host_md(i, h) for i, h in enumerate(report["hosts"])]
    return "\n".join(parts)


def render_html(report: dict[str, Any], images: dict[str, bytes]) -> str:
    """One HTML page: inline CSS, tables, and every plot as a base64 PNG data URI."""
    title = html.escape(report["title"])
    body = [f"<h1>{title}</h1>", f"<p>{html.escape(_intro(report))}</p>"]
    for heading, note, (columns, rows) in _sections(report):
        body.append(f"<h2>{html.escape(heading)}</h2>")
        if note:
            body.append(f'<p class="note">{html.escape(note)}</p>')
        body.append(_html_table(columns, rows))
        if heading == "Summary":
            body += [_html_image(name, png) for name, png in images.items()]
    body.append("<h2>Host</h2>")
    body += [_host_html(i, h) for i, h in enumerate(report["hosts"])]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def format_summary(report: dict[str, Any]) -> str:
    """Plain text for a terminal: the Pareto front and, with a baseline, the regression verdict."""
    front = ", ".join(k.split("|")[0] for k in report["pareto"]["front"]) or "none"
    lines = [f"Pareto front (mean MAE vs batch-1 p50 latency): {front}"]
    reg = report.get("regression")
    if reg:
        counts: dict[str, int] = {}
        for v in reg["verdicts"]:
            counts[v["status"]] = counts.get(v["status"], 0) + 1
        tally = ", ".join(f"{n} {status}" for status, n in counts.items())
        lines.append(
            f"regression check vs {reg['baseline']}: "
            + ("passed" if reg["passed"] else "REGRESSED")
            + f" ({tally})"
        )
        _, rows = _regression_table(reg)
        lines += [f"  {row[0][0]}: {row[3][0]}: {row[4][0]}" for row in rows if row[4][0] != _DASH]
    return "\n".join(lines)


Cell = tuple[str, str]  # (text, CSS class)
Table = tuple[list[str], list[list[Cell]]]


def _sections(report: dict[str, Any]) -> list[tuple[str, str, Table]]:
    rows = report["rows"]
    out = [("Summary", _summary_note(report), _summary_table(rows))]
    if report.get("regression"):
        reg = report["regression"]
        out.append(("Regression check", _regression_note(reg), _regression_table(reg)))
    if any(r["mae"] for r in rows):
        note = "Test-split MAE per horizon step on observed values (data units); in brackets its "
        note += "change (%) against the fp32 reference. "
        note += " ".join(f"{r['name']}: {r['scored']}." for r in rows if r.get("scored"))
        out.append(("Error per horizon step", note, _mae(rows)))
    out.append(("Engines", "What ran each artifact's figures.", _engine_table(rows)))
    return out + device_sections(report) + mixed_sections(report)


def _intro(report: dict[str, Any]) -> str:
    n = len(report["rows"])
    return (
        f"{n} artifact{'s' * (n != 1)}, report created {report['created']} by edgecomp "
        f"{report['producer']['edgecomp']} (schema {report['schema']} v{report['schema_version']})."
    )


def _summary_note(report: dict[str, Any]) -> str:
    front = ", ".join(k.split("|")[0] for k in report["pareto"]["front"]) or "none"
    again = [f"{r['name']} ({r['latency_runs']})" for r in report["rows"] if r["latency_runs"] > 1]
    return (
        "Latency per call through the runtime's predict (raw readings in, forecasts out). "
        f"★ = on the Pareto front of mean MAE against batch-1 p50 latency: {front}."
        + (f" Timing is the fastest of several runs for: {', '.join(again)}." if again else "")
    )


def _batch_n(rows: list[dict[str, Any]]) -> str:
    """The largest batch size every row measured (else the largest any row measured)."""
    common = set.intersection(*(set(r["latency"]) for r in rows))
    keys = common or {k for r in rows for k in r["latency"]}
    return max(keys, key=lambda k: int(k.removeprefix("b")))


def _summary_table(rows: list[dict[str, Any]]) -> Table:
    n = _batch_n(rows)
    columns = ["artifact", "target", "precision", "recipe", "size KB", "peak RSS MB"]
    columns += ["p50 b1 ms", "p99 b1 ms", f"p50 {n} ms", f"p99 {n} ms", f"{n} windows/s"]
    columns += ["MAE mean", "ΔMAE % worst step", "Pareto"]
    out = []
    for r in rows:
        b1, bn = r["latency"].get("b1") or {}, r["latency"].get(n) or {}
        cells = [r["name"], str(r["target"]), str(r["precision"]), r["recipe"] or _DASH]
        cells += [_num(r["file_size"] / 1024, 1), _num(r["peak_rss_mb"], 1)]
        cells += [_num(b1.get("p50_ms")), _num(b1.get("p99_ms"))]
        cells += [_num(bn.get("p50_ms")), _num(bn.get("p99_ms")), _num(r["throughput"].get(n), 0)]
        cells += [_num(r["mae_mean"], 4), _num(r["delta_mae_pct_worst"], 2, signed=True)]
        cells.append({True: "★", False: "", None: _DASH}[r["pareto"]])
        out.append([(c, "wrap" if i == 3 else "") for i, c in enumerate(cells)])
    return columns, out


def _mae(rows: list[dict[str, Any]]) -> Table:
    scored = [r for r in rows if r["mae"]]
    horizon = max(len(r["mae"]) for r in scored)
    columns = ["artifact", "target", "precision"] + [f"h{h + 1}" for h in range(horizon)]
    out = []
    for r in scored:
        deltas = r["delta_mae_pct"] or [None] * len(r["mae"])
        cells = [
            f"{_num(m, 4)} ({_num(d, 2, signed=True)})" if d is not None else _num(m, 4)
            for m, d in zip(r["mae"], deltas, strict=True)
        ]
        cells += [_DASH] * (horizon - len(cells))
        out.append([(c, "") for c in [r["name"], str(r["target"]), str(r["precision"]), *cells]])
    return columns, out


def _engine_table(rows: list[dict[str, Any]]) -> Table:
    columns = ["artifact", "target", "precision", "backend", "engine", "native", "host", "note"]
    out = []
    for r in rows:
        eng = r["engine"]
        native = {True: "yes", False: "no: host fallback", None: "not recorded"}[eng.get("native")]
        cells = [r["name"], str(r["target"]), str(r["precision"]), str(eng.get("backend"))]
        cells += [str(eng.get("engine")), native, f"#{r['host'] + 1}", str(eng.get("note") or "")]
        out.append([(c, "wrap" if i == 7 else "") for i, c in enumerate(cells)])
    return columns, out


def _regression_note(reg: dict[str, Any]) -> str:
    rules = reg["rules"]
    verdict = "PASSED" if reg["passed"] else f"REGRESSED: {', '.join(reg['regressed'])}"
    return (
        f"Against {reg['baseline']}: {verdict}. Latency p50 counts beyond "
        f"min({rules['latency_cap']:.0%}, max({rules['latency_floor']:.0%}, "
        f"{rules['latency_k']:g} × the larger relative IQR of the two runs)); "
        f"size beyond max({rules['size_rel']:.1%}, {rules['size_abs']} B); "
        f"peak RSS beyond max({rules['memory_rel']:.0%}, {rules['memory_abs_mb']:g} MB); "
        f"MAE beyond {rules['mae_rel']:.1%} at any horizon step."
    )


def _regression_table(reg: dict[str, Any]) -> Table:
    columns = ["artifact", "target", "precision", "status", "beyond noise", "other checks"]
    out = []
    for v in reg["verdicts"]:
        moved = [c for c in v["checks"] if c["status"] in ("regressed", "improved")]
        text = "; ".join(
            f"{c['metric']} {_num(c['change_pct'], 1, signed=True)} % "
            f"(limit {_num(c['threshold_pct'], 1)} %)"
            for c in moved
        )
        counts = {s: sum(c["status"] == s for c in v["checks"]) for s in ("ok", "skipped")}
        cells = [v["name"], str(v["target"]), str(v["precision"]), v["status"], text or _DASH]
        cells.append(", ".join(f"{n} {s}" for s, n in counts.items() if n) or _DASH)
        out.append(
            [(c, v["status"] if i == 3 else "wrap" if i == 4 else "") for i, c in enumerate(cells)]
        )
    return columns, out


def _host_lines(host: dict[str, Any]) -> list[str]:
    cpu, osi, threads = host.get("cpu", {}), host.get("os", {}), host.get("threads", {})
    isa = ", ".join(k for k, v in cpu.get("isa", {}).items() if v) or "none detected"
    versions = ", ".join(f"{k} {v}" for k, v in host.get("versions", {}).items() if v)
    env = ", ".join(f"{k}={v}" for k, v in threads.get("env", {}).items()) or "none set"
    return [
        f"CPU: {cpu.get('model')} ({cpu.get('logical_cores')} logical, "
        f"{cpu.get('physical_cores')} physical cores)",
        f"ISA: {isa}",
        f"OS: {osi.get('system')} {osi.get('release')} ({osi.get('machine')})",
        f"Python {host.get('python', {}).get('version')}; {versions}",
        f"Threads: requested {threads.get('requested')}, {threads.get('affinity')} CPUs usable; "
        f"env: {env}",
    ]


def _host_md(index: int, host: dict[str, Any]) -> str:
    return f"Host #{index + 1}\n\n" + "\n".join(f"- {line}" for line in _host_lines(host)) + "\n"


def _host_html(index: int, host: dict[str, Any]) -> str:
    items = "".join(f"<li>{html.escape(line)}</li>" for line in _host_lines(host))
    return f"<h3>Host #{index + 1}</h3><ul>{items}</ul>"


def _md_table(columns: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _html_table(columns: list[str], rows: list[list[Cell]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="{css}">{html.escape(text)}</td>'
            if css
            else f"<td>{html.escape(text)}</td>"
            for text, css in row
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html_image(name: str, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    alt = html.escape(_TITLES.get(name, name))
    return f'<figure><img alt="{alt}" src="data:image/png;base64,{data}"></figure>'


def _num(value: float | None, digits: int = 3, *, signed: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return _DASH
    if abs(value) < 0.5 * 10**-digits:
        value = 0.0  # no "-0.00"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
