"""Regression view: compare a report's artifacts with a baseline run's, beyond measured noise.

Artifacts are matched by (name, target, precision) and, for benches measured on a named device,
the device: a Raspberry Pi run is never compared with a build-host run. Per matched artifact:

- latency, per batch size measured in both runs: p50 regressed when it grew by more than
  ``min(latency_cap, max(latency_floor, latency_k * spread))``, where spread is the larger
  relative interquartile range, (p75 - p25) / p50, of the two runs (the relative
  (p90 - p50) / p50 when a run kept no quantiles); the cap keeps a doubling visible however
  wide the distributions;
- size: the artifact file grew by more than ``max(size_rel, size_abs)``;
- peak memory (fresh process): grew by more than ``max(memory_rel, memory_abs_mb)``;
- error: MAE at any horizon step grew by more than ``mae_rel`` (relative) plus ``mae_abs``, when
  both runs scored the same split with the same number of windows.

A change beyond the threshold the other way is reported as "improved"; nothing fails on it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Rules", "artifact_key", "compare_runs"]


@dataclass(frozen=True)
class Rules:
    """Noise thresholds of the regression check (fractions, not percent).

    Attributes:
        latency_floor: Smallest relative latency change that counts, whatever the spread.
        latency_k: Multiple of the measured relative spread that counts.
        latency_cap: Largest latency threshold, whatever the spread.
        size_rel: Relative growth of the artifact file that counts...
        size_abs: ...when also above this many bytes.
        memory_rel: Relative growth of peak RSS that counts...
        memory_abs_mb: ...when also above this many MB.
        mae_rel: Relative MAE growth per horizon step that counts...
        mae_abs: ...plus this absolute slack (float noise on near-zero errors).
    """

    latency_floor: float = 0.10
    latency_k: float = 3.0
    latency_cap: float = 0.50
    size_rel: float = 0.005
    size_abs: int = 256
    memory_rel: float = 0.05
    memory_abs_mb: float = 2.0
    mae_rel: float = 0.001
    mae_abs: float = 1e-6


def artifact_key(bench: dict[str, Any]) -> str:
    """The matching key of a bench dict: "name|target|precision", plus "|device" for a bench
    measured on a named device (``edgecomp-runtime bench``), so runs compare like with like."""
    art = bench["artifact"]
    key = f"{art['name']}|{art.get('target')}|{art.get('precision')}"
    device = bench.get("device")
    return f"{key}|{device['name']}" if isinstance(device, dict) and device.get("name") else key


def compare_runs(
    new: list[dict[str, Any]], old: list[dict[str, Any]], rules: Rules | None = None
) -> dict[str, Any]:
    """Verdicts for every artifact of either run.

    Args:
        new: Bench dicts of the run under test.
        old: Bench dicts of the baseline run.
        rules: Noise thresholds (default ``Rules()``).

    Returns:
        {"rules", "verdicts", "regressed" (keys), "passed"}; each verdict has key, name, target,
        precision, status ("regressed", "improved", "unchanged", "new" or "missing") and checks.
    """
    rules = rules or Rules()
    old_by_key = {artifact_key(b): b for b in old}
    new_keys = {artifact_key(b) for b in new}
    verdicts = [_verdict(b, old_by_key.get(artifact_key(b)), rules) for b in new]
    verdicts += [_unmatched(b, "missing") for b in old if artifact_key(b) not in new_keys]
    regressed = [v["key"] for v in verdicts if v["status"] == "regressed"]
    return {
        "rules": asdict(rules),
        "verdicts": verdicts,
        "regressed": regressed,
        "passed": not regressed,
    }


def _verdict(new: dict[str, Any], old: dict[str, Any] | None, rules: Rules) -> dict[str, Any]:
    if old is None:
        return _unmatched(new, "new")
    checks = _latency_checks(new, old, rules)
    checks.append(_size_check(new, old, rules))
    checks.append(_memory_check(new, old, rules))
    checks += _mae_checks(new, old, rules)
    statuses = {c["status"] for c in checks}
    status = next((s for s in ("regressed", "improved") if s in statuses), "unchanged")
    return {**_ident(new), "status": status, "checks": checks}


def _unmatched(bench: dict[str, Any], status: str) -> dict[str, Any]:
    return {**_ident(bench), "status": status, "checks": []}


def _ident(bench: dict[str, Any]) -> dict[str, Any]:
    art = bench["artifact"]
    return {
        "key": artifact_key(bench),
        "name": art["name"],
        "target": art.get("target"),
        "precision": art.get("precision"),
    }


def _latency_checks(new: dict[str, Any], old: dict[str, Any], rules: Rules) -> list[dict]:
    checks = []
    new_lat, old_lat = new.get("latency") or {}, old.get("latency") or {}
    for key in sorted(set(new_lat) & set(old_lat), key=lambda k: int(k.removeprefix("b"))):
        spread = max(relative_spread(new_lat[key]), relative_spread(old_lat[key]))
        limit = min(rules.latency_cap, max(rules.latency_floor, rules.latency_k * spread))
        old_v, new_v = old_lat[key]["p50_ms"], new_lat[key]["p50_ms"]
        rule = (
            f"p50 change beyond min({rules.latency_cap:.0%}, max({rules.latency_floor:.0%}, "
            f"{rules.latency_k:g} x spread {spread:.1%})) = {limit:.1%}"
        )
        checks.append(_check(f"latency.{key}.p50_ms", old_v, new_v, limit * old_v, rule))
    return checks


def relative_spread(stats: dict[str, Any]) -> float:
    """(p75 - p25) / p50 from ``quantiles_ms``, else (p90 - p50) / p50; 0 when p50 is 0."""
    q = stats.get("quantiles_ms")
    p50 = stats["p50_ms"]
    if not p50:
        return 0.0
    if q and len(q) == 101:
        return (q[75] - q[25]) / p50
    return (stats["p90_ms"] - p50) / p50


def _size_check(new: dict[str, Any], old: dict[str, Any], rules: Rules) -> dict[str, Any]:
    old_v, new_v = old["artifact"]["file_size"], new["artifact"]["file_size"]
    limit = max(rules.size_rel * old_v, rules.size_abs)
    rule = f"file growth beyond max({rules.size_rel:.1%}, {rules.size_abs} B) = {limit:.0f} B"
    return _check("file_size", old_v, new_v, limit, rule)


def _memory_check(new: dict[str, Any], old: dict[str, Any], rules: Rules) -> dict[str, Any]:
    old_v = (old.get("memory") or {}).get("peak_rss_mb")
    new_v = (new.get("memory") or {}).get("peak_rss_mb")
    if old_v is None or new_v is None:
        return _skipped("memory.peak_rss_mb", old_v, new_v, "not measured in both runs")
    limit = max(rules.memory_rel * old_v, rules.memory_abs_mb)
    rule = (
        f"peak RSS growth beyond max({rules.memory_rel:.0%}, {rules.memory_abs_mb:g} MB) "
        f"= {limit:.1f} MB"
    )
    return _check("memory.peak_rss_mb", old_v, new_v, limit, rule)


def _mae_checks(new: dict[str, Any], old: dict[str, Any], rules: Rules) -> list[dict]:
    new_acc, old_acc = new.get("accuracy") or {}, old.get("accuracy") or {}
    new_mae = (new_acc.get("artifact") or {}).get("mae")
    old_mae = (old_acc.get("artifact") or {}).get("mae")
    if not new_mae or not old_mae:
        return [_skipped("mae", None, None, "error not measured in both runs")]
    same = [(old_acc.get(k), new_acc.get(k)) for k in ("split", "n_windows")]
    if len(new_mae) != len(old_mae) or any(a != b for a, b in same):
        why = "different windows: " + ", ".join(f"{a} vs {b}" for a, b in same)
        return [_skipped("mae", None, None, why + f", horizon {len(old_mae)} vs {len(new_mae)}")]
    rule = f"MAE growth beyond {rules.mae_rel:.1%} + {rules.mae_abs:g} per horizon step"
    return [
        _check(f"mae.h{h + 1}", o, n, rules.mae_rel * o + rules.mae_abs, rule)
        for h, (o, n) in enumerate(zip(old_mae, new_mae, strict=True))
    ]


def _check(metric: str, old: float, new: float, limit: float, rule: str) -> dict[str, Any]:
    """One comparison: "regressed" above old + limit, "improved" below old - limit, else "ok"."""
    status = "regressed" if new > old + limit else "improved" if new < old - limit else "ok"
    return {
        "metric": metric,
        "old": old,
        "new": new,
        "change_pct": 100 * (new - old) / old if old else None,
        "threshold_pct": 100 * limit / old if old else None,
        "status": status,
        "rule": rule,
    }


def _skipped(metric: str, old: Any, new: Any, why: str) -> dict[str, Any]:
    return {
        "metric": metric,
        "old": old,
        "new": new,
        "change_pct": None,
        "threshold_pct": None,
        "status": "skipped",
        "rule": why,
    }
