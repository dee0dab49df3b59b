"""Reports across devices: the same artifact per device side by side, and a plot per metric.

A bench dict names its device in ``device.name`` (``edgecomp-runtime bench``, ``edgecomp bench
--device``); benches without one (``edgecomp bench`` on the build host) count as "build host".
The view appears only when a report holds more than one device.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BUILD_HOST", "device_name", "device_plots", "device_sections", "METRICS"]

BUILD_HOST = "build host"
#: (plot name, title, x-axis label, how to read the figure from a row); latency is on a log axis
#: (an emulated device is 100x slower than the host)
METRICS = (
    ("device_latency", "p50 latency per predict call, batch 1 (log scale)", "ms", "latency_b1"),
    ("device_memory", "peak resident memory (fresh process)", "MB", "peak_rss_mb"),
    ("device_error", "mean MAE over the horizon (data units)", "MAE", "mae_mean"),
)
_DASH = "–"


def device_name(bench: dict[str, Any]) -> str:
    """The device a bench dict was measured on."""
    device = bench.get("device")
    name = device.get("name") if isinstance(device, dict) else None
    return str(name) if name else BUILD_HOST


def device_sections(report: dict[str, Any]) -> list[tuple[str, str, tuple[list[str], list]]]:
    """The side-by-side section (heading, note, table), or none with a single device."""
    devices = _devices(report["rows"])
    if len(devices) < 2:
        return []
    columns = ["artifact", "precision", "device", "engine", "p50 b1 ms", "p99 b1 ms"]
    columns += ["peak RSS MB", "mean MAE", "notes"]
    rows = []
    for key in _artifacts(report["rows"]):
        for row in (r for r in report["rows"] if _base(r["key"]) == key):
            rows.append([(cell, "") for cell in _cells(row)])
    note = (
        "The same artifacts measured on each device by edgecomp-runtime bench (build host: the "
        "compiler's bench). Errors differ only where the engine or its kernels differ."
    )
    return [("Devices side by side", note, (columns, rows))]


def device_plots(report: dict[str, Any]) -> dict[str, bytes]:
    """One grouped bar chart per metric in ``METRICS`` (PNG bytes by plot name), or none."""
    rows = report["rows"]
    devices = _devices(rows)
    if len(devices) < 2:
        return {}
    from edgecomp.report.png import figure_png as _png  # one PNG writer for every report plot

    images = {}
    for name, title, unit, field in METRICS:
        fig = _bars(rows, devices, title, unit, field)
        if fig is not None:
            images[name] = _png(fig)
    return images


def _devices(rows: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(r.get("device") or BUILD_HOST for r in rows))


def _artifacts(rows: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(_base(r["key"]) for r in rows))


def _base(key: str) -> str:
    """The artifact part of a row key ("name|target|precision"), without the device."""
    return "|".join(key.split("|")[:3])


def _value(row: dict[str, Any], field: str) -> float | None:
    if field == "latency_b1":
        return (row["latency"].get("b1") or {}).get("p50_ms")
    return row.get(field)


def _cells(row: dict[str, Any]) -> list[str]:
    engine = row["engine"]
    b1 = row["latency"].get("b1") or {}
    return [
        row["name"],
        str(row.get("precision")),
        row.get("device") or BUILD_HOST,
        str(engine.get("engine")),
        _num(b1.get("p50_ms")),
        _num(b1.get("p99_ms")),
        _num(row.get("peak_rss_mb"), 1),
        _num(row.get("mae_mean"), 4),
        "" if engine.get("native") is not False else str(engine.get("note") or ""),
    ]


def _num(value: float | None, digits: int = 3) -> str:
    return _DASH if value is None else f"{value:.{digits}f}"


def _bars(rows: list[dict], devices: list[str], title: str, unit: str, field: str) -> Any:
    """Horizontal bars: one group per artifact, one bar per device."""
    import matplotlib
    import matplotlib.pyplot as plt

    artifacts = _artifacts(rows)
    values = {(_base(r["key"]), r.get("device") or BUILD_HOST): _value(r, field) for r in rows}
    if all(v is None for v in values.values()):
        return None
    cmap = matplotlib.colormaps["tab10"]
    height = 0.8 / len(devices)
    fig, ax = plt.subplots(figsize=(7, 0.6 + 0.35 * len(artifacts) * len(devices)))
    for d, device in enumerate(devices):
        ys = [a + d * height for a in range(len(artifacts))]
        xs = [values.get((art, device)) for art in artifacts]
        ax.barh(
            [y for y, x in zip(ys, xs, strict=True) if x is not None],
            [x for x in xs if x is not None],
            height=height,
            color=cmap(d % 10),
            label=device,
        )
    ax.set_yticks([a + 0.4 - height / 2 for a in range(len(artifacts))])
    ax.set_yticklabels([art.split("|")[0] for art in artifacts], fontsize=8)
    ax.invert_yaxis()
    if field == "latency_b1":
        ax.set_xscale("log")
    ax.set_xlabel(unit)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    return fig
