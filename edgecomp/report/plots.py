"""The report's plots as PNG bytes, drawn with matplotlib's Agg backend (imported lazily).

error_vs_latency: mean MAE against batch-1 p50 latency, Pareto front marked; horizon_error: MAE
and its change against the fp32 reference per horizon step; latency: per-call latency
distributions per batch size; size: artifact and model file sizes, and peak memory.
"""

from __future__ import annotations

from typing import Any

from edgecomp.report.compare import artifact_key
from edgecomp.report.devices import device_plots
from edgecomp.report.mixed_precision import mixed_plots
from edgecomp.report.png import figure_png as _png

__all__ = ["render_plots"]

_MARKERS = {"fp32": "o", "fp16": "s", "int8": "^", "int4": "v"}
_LINES = {"fp32": "-", "fp16": "-.", "int8": "--", "int4": ":"}
_SIZE_LEGEND = (".edgepkg file (zipped; colour = model)", "model file inside, unzipped")
_BELOW = {"fontsize": 8, "loc": "upper center", "bbox_to_anchor": (0.5, -0.16), "frameon": False}
_MEMORY_LEGEND = ("peak after load + predict", "after importing the runtime")
_LATENCY_TITLE = (
    "Latency per predict call: box p25–p75, black tick p50, line p1–p99 "
    "(runs without quantiles: p50 to p99)"
)


def render_plots(report: dict[str, Any]) -> dict[str, bytes]:
    """PNG bytes by plot name; a plot whose figures are all missing is left out."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    rows = report["rows"]
    colors = _colors(rows)
    benches = {artifact_key(bench): bench for bench in report["artifacts"]}
    draw = {
        "error_vs_latency": lambda: _error_vs_latency(rows, colors),
        "horizon_error": lambda: _horizon_error(rows, colors),
        "latency": lambda: _latency(rows, benches, colors),
        "size": lambda: _size(rows, benches, colors),
    }
    images = {}
    for name, fn in draw.items():
        fig = fn()
        if fig is not None:
            images[name] = _png(fig)
    return images | device_plots(report) | mixed_plots(report)


def _family(row: dict[str, Any]) -> str:
    """The artifact's name without its precision suffix: artifacts of one model share a colour."""
    return row["name"].removesuffix(f"-{row['precision']}")


def _colors(rows: list[dict[str, Any]]) -> dict[str, Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    families = list(dict.fromkeys(_family(r) for r in rows))
    return {r["key"]: cmap(families.index(_family(r)) % 10) for r in rows}


def _style(row: dict[str, Any], colors: dict[str, Any]) -> dict[str, Any]:
    return {
        "color": colors[row["key"]],
        "marker": _MARKERS.get(row["precision"], "D"),
        "linestyle": _LINES.get(row["precision"], ":"),
    }


def _error_vs_latency(rows: list[dict[str, Any]], colors: dict[str, Any]) -> Any:
    import matplotlib.pyplot as plt

    points = [r for r in rows if r["pareto"] is not None]
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    xy = [(r["latency"]["b1"]["p50_ms"], r["mae_mean"]) for r in points]
    for r, (x, y), dy in zip(points, xy, _label_offsets(xy), strict=True):
        style = _style(r, colors)
        ax.scatter(x, y, s=70, color=style["color"], marker=style["marker"], zorder=3)
        ax.annotate(r["name"], (x, y), xytext=(8, 4 + dy), textcoords="offset points", fontsize=8)
    front = sorted((r for r in points if r["pareto"]), key=lambda r: r["latency"]["b1"]["p50_ms"])
    xs = [r["latency"]["b1"]["p50_ms"] for r in front]
    ys = [r["mae_mean"] for r in front]
    ax.step(xs, ys, where="post", color="0.35", linewidth=1, zorder=2)
    ax.scatter(xs, ys, s=230, facecolors="none", edgecolors="0.2", linewidths=1.3, zorder=4)
    ax.set_xlabel("p50 latency per window at batch 1 (ms, through runtime predict)")
    ax.set_ylabel("mean MAE over horizon steps (data units)")
    ax.set_title("Error against latency (lower left is better)")
    ax.legend(handles=_legend(points, colors, pareto=True), fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    ax.margins(x=0.18, y=0.12)
    return fig


def _label_offsets(xy: list[tuple[float, float]]) -> list[float]:
    """Vertical label offsets (points) that stack the labels of points lying close together."""
    xs, ys = [x for x, _ in xy], [y for _, y in xy]
    width = (max(xs) - min(xs)) or 1.0
    height = (max(ys) - min(ys)) or 1.0
    offsets: list[float] = []
    for i, (x, y) in enumerate(xy):
        near = sum(abs(x - x2) < 0.08 * width and abs(y - y2) < 0.05 * height for x2, y2 in xy[:i])
        offsets.append(-11.0 * near)
    return offsets


def _legend(rows: list[dict[str, Any]], colors: dict[str, Any], *, pareto: bool) -> list[Any]:
    """Handles: one per model (colour), one per precision (marker), and the Pareto ring."""
    from matplotlib.lines import Line2D

    handles, seen = [], set()
    for r in rows:
        if _family(r) not in seen:
            seen.add(_family(r))
            handles.append(Line2D([], [], color=colors[r["key"]], lw=3, label=_family(r)))
    for precision in dict.fromkeys(r["precision"] for r in rows):
        style = {"marker": _MARKERS.get(precision, "D"), "linestyle": _LINES.get(precision, ":")}
        handles.append(Line2D([], [], color="0.3", label=str(precision), **style))
    if pareto:
        ring = {"marker": "o", "markersize": 12, "markerfacecolor": "none", "linestyle": "-"}
        handles.append(Line2D([], [], color="0.2", label="Pareto front", **ring))
    return handles


def _horizon_error(rows: list[dict[str, Any]], colors: dict[str, Any]) -> Any:
    import matplotlib.pyplot as plt

    scored = [r for r in rows if r["mae"]]
    if not scored:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for r in scored:
        steps = range(1, len(r["mae"]) + 1)
        left.plot(steps, r["mae"], label=r["name"], **_style(r, colors))
        deltas = [float("nan") if d is None else d for d in r["delta_mae_pct"] or []]
        if deltas:
            right.plot(steps, deltas, label=r["name"], **_style(r, colors))
    right.axhline(0, color="0.5", linewidth=0.8)
    left.set(xlabel="horizon step", ylabel="MAE (data units)", title="Error per horizon step")
    right.set(
        xlabel="horizon step",
        ylabel="MAE change vs fp32 reference (%)",
        title="Error change from compression",
    )
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    right.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def _latency(
    rows: list[dict[str, Any]], benches: dict[str, dict[str, Any]], colors: dict[str, Any]
) -> Any:
    import matplotlib.pyplot as plt

    keys = sorted({k for r in rows for k in r["latency"]}, key=lambda k: int(k.removeprefix("b")))
    fig, axes = plt.subplots(1, len(keys), figsize=(5.2 * len(keys), 0.45 * len(rows) + 1.6))
    for ax, key in zip(axes if len(keys) > 1 else [axes], keys, strict=True):
        for i, r in enumerate(rows):
            stats = benches[r["key"]]["latency"].get(key)
            if stats:
                _box(ax, len(rows) - 1 - i, stats, colors[r["key"]])
        ax.set_yticks(range(len(rows)), [r["name"] for r in reversed(rows)], fontsize=8)
        _log_axis(ax)
        ax.set_xlabel(f"latency per call at batch {key.removeprefix('b')} (ms, log)")
        ax.grid(alpha=0.3, axis="x", which="both")
    fig.suptitle(_LATENCY_TITLE, fontsize=10)
    fig.tight_layout()
    return fig


def _log_axis(ax: Any) -> None:
    """Log x axis with plain-number ticks at 1, 2 and 5 per decade."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _box(ax: Any, y: float, stats: dict[str, Any], color: Any) -> None:
    """Box p25-p75, p50 tick, whiskers p1-p99; without quantiles, p50 and a p50-p99 line."""
    q = stats.get("quantiles_ms")
    if q and len(q) == 101:
        low, q1, q3, high = q[1], q[25], q[75], q[99]
        ax.barh(y, q3 - q1, left=q1, height=0.55, color=color, alpha=0.45, edgecolor=color)
    else:
        low, high = stats["p50_ms"], stats["p99_ms"]
    ax.plot([low, high], [y, y], color=color, linewidth=1.2)
    ax.plot([stats["p50_ms"]] * 2, [y - 0.3, y + 0.3], color="black", linewidth=1.6)


def _size(
    rows: list[dict[str, Any]], benches: dict[str, dict[str, Any]], colors: dict[str, Any]
) -> Any:
    import matplotlib.pyplot as plt

    ncols = 2 if any(r["peak_rss_mb"] is not None for r in rows) else 1
    fig, axes = plt.subplots(1, ncols, figsize=(5.5 * ncols, 0.45 * len(rows) + 1.8))
    axes = list(axes) if ncols == 2 else [axes]
    ys = list(range(len(rows)))[::-1]
    files = [r["file_size"] / 1024 for r in rows]
    models = [(r["model_file_size"] or 0) / 1024 for r in rows]
    _bars(axes[0], ys, files, models, [colors[r["key"]] for r in rows], "{:,.1f}")
    axes[0].set(xlabel="size (KB)", title="Artifact size (label: .edgepkg KB)")
    axes[0].legend(handles=_legend_patches(_SIZE_LEGEND), **_BELOW)
    if ncols == 2:
        peak = [r["peak_rss_mb"] or 0 for r in rows]
        base = [
            (benches[r["key"]].get("memory") or {}).get("rss_after_import_mb") or 0 for r in rows
        ]
        _bars(axes[1], ys, peak, base, [colors[r["key"]] for r in rows], "{:.1f}")
        axes[1].set(xlabel="resident memory of a fresh process (MB)", title="Peak memory")
        axes[1].legend(handles=_legend_patches(_MEMORY_LEGEND), **_BELOW)
    for ax in axes:
        ax.set_yticks(ys, [r["name"] for r in rows], fontsize=8)
        ax.margins(x=0.15)
    fig.tight_layout()
    return fig


def _bars(ax: Any, ys: list[int], full: list, part: list, colors: list, label: str) -> None:
    """Coloured bars ``full`` with a thin dark bar ``part`` over each, labelled with ``full``."""
    ax.barh(ys, full, color=colors)
    ax.barh(ys, part, height=0.3, color="0.15", alpha=0.55)
    for y, value, inner in zip(ys, full, part, strict=True):
        at = (max(value, inner), y)
        ax.annotate(label.format(value), at, xytext=(3, -3), textcoords="offset points", fontsize=7)


def _legend_patches(labels: tuple[str, str]) -> list[Any]:
    from matplotlib.patches import Patch

    return [
        Patch(facecolor="0.65", label=labels[0]),
        Patch(facecolor="0.15", alpha=0.55, label=labels[1]),
    ]
