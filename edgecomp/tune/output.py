"""What `edgecomp tune` hands back: the trials as rows, the Pareto front, the chosen recipe."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgecomp._io import atomic_write_text
from edgecomp.tune.evaluate import TuneError

__all__ = [
    "choose",
    "failed_trials",
    "pareto_rows",
    "plot_front",
    "results_json",
    "to_toml",
    "trial_rows",
]

_AXES = ("error_increase", "p50_ms", "size_bytes")


def trial_rows(study: Any) -> list[dict[str, Any]]:
    """One row per distinct recipe that finished: its measurements, feasibility and trials."""
    from optuna.trial import TrialState

    rows: dict[str, dict[str, Any]] = {}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        key = trial.user_attrs.get("key")
        if key is None or "measured" not in trial.user_attrs:
            continue
        if key in rows:
            rows[key]["trials"].append(trial.number)
            continue
        violations = trial.user_attrs.get("violations", {})
        rows[key] = {
            "trial": trial.number,
            "trials": [trial.number],
            "recipe": trial.user_attrs["recipe"],
            "summary": summarize(trial.user_attrs["recipe"]),
            "measured": trial.user_attrs["measured"],
            "violations": violations,
            "feasible": all(v <= 0 for v in violations.values()),
        }
    out = list(rows.values())
    front = _front([r["measured"] for r in out])
    for row, on_front in zip(out, front, strict=True):
        row["pareto"] = on_front
    return out


def failed_trials(study: Any) -> list[dict[str, Any]]:
    """One entry per trial that failed: its number, recipe summary and error (first line)."""
    from optuna.trial import TrialState

    return [
        {
            "trial": t.number,
            "summary": summarize(t.user_attrs["recipe"]) if "recipe" in t.user_attrs else "",
            "error": t.user_attrs.get("error", "failed"),
        }
        for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    ]


def pareto_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The non-dominated rows (error increase, median latency, size), fastest first."""
    return sorted((r for r in rows if r["pareto"]), key=lambda r: r["measured"]["p50_ms"])


def choose(rows: list[dict[str, Any]], objective_key: str) -> dict[str, Any]:
    """The feasible row that minimizes ``objective_key`` (ties: smaller, then more accurate).

    Raises:
        TuneError: No row meets the constraints; the message lists the three closest recipes.
    """
    feasible = [r for r in rows if r["feasible"]]
    if feasible:
        return min(feasible, key=lambda r: tuple(r["measured"][k] for k in _order(objective_key)))
    if not rows:
        raise TuneError("no trial finished: nothing was measured (see the failed trials above)")
    closest = sorted(rows, key=lambda r: sum(max(v, 0.0) for v in r["violations"].values()))
    lines = [f"  {_closest_line(r)}" for r in closest[:3]]
    raise TuneError(
        "no recipe meets the constraints; the closest:\n" + "\n".join(lines) + "\n"
        "Loosen a limit, widen the space (--space) or run more trials."
    )


def summarize(recipe: dict[str, Any]) -> str:
    """One line: the passes and the lowering, e.g. 'prune 0.5 (l2) + finetune -> int8 minmax'."""
    parts = []
    for p in recipe["passes"]:
        if p["pass"] == "prune":
            parts.append(f"prune {p['ratio']:g} ({p['importance']})")
        elif p["pass"] == "distill":
            size = next(iter(p["hparams"].values()))
            parts.append(f"distill {p['student']}-{size}")
        else:
            parts.append(p["pass"])
    lower = recipe["lower"][0]
    detail = [lower["precision"]]
    options = lower.get("options", {})
    if "calibration_windows" in lower:
        detail.append(
            f"{options.get('calibration_method', 'minmax')}/{lower['calibration_windows']}"
        )
    if options.get("keep_float"):
        detail.append("float " + "+".join(options["keep_float"]))
    return " + ".join(parts or ["as trained"]) + " -> " + " ".join(detail)


def results_json(path: Path, rows: list[dict[str, Any]], extra: dict[str, Any]) -> None:
    """Write every distinct recipe's row plus ``extra`` (config, reference, chosen) as JSON."""
    atomic_write_text(path, json.dumps({**extra, "rows": rows}, indent=2, default=str))


def plot_front(path: Path, rows: list[dict[str, Any]], budget: float | None) -> None:
    """Error increase against median latency for every recipe, size as colour, front outlined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    x = [r["measured"]["p50_ms"] for r in rows]
    y = [100 * r["measured"]["error_increase"] for r in rows]
    size = [r["measured"]["size_bytes"] / 1024 for r in rows]
    dots = ax.scatter(x, y, c=size, cmap="viridis", s=36)
    front = pareto_rows(rows)
    ax.plot(
        [r["measured"]["p50_ms"] for r in front],
        [100 * r["measured"]["error_increase"] for r in front],
        "o",
        mfc="none",
        mec="red",
        ms=11,
        label="Pareto front",
    )
    if budget is not None:
        ax.axhline(100 * budget, color="grey", ls="--", lw=1, label="error budget")
    fig.colorbar(dots, ax=ax, label="artifact size (KiB)")
    ax.set(
        xlabel="median latency, batch 1, this host (ms)",
        ylabel="MAE increase vs fp32, worst step (%)",
    )
    ax.legend(loc="best")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def to_toml(recipe: dict[str, Any], comment: str = "") -> str:
    """A recipe dict as TOML that `edgecomp build --recipe` reads back unchanged."""
    lines = [f"# {line}" for line in comment.splitlines()]
    lines += [f"{k} = {_value(v)}" for k, v in recipe.items() if not isinstance(v, list)]
    for table in ("passes", "lower"):
        for entry in recipe.get(table, []):
            lines += ["", f"[[{table}]]"]
            lines += [f"{k} = {_value(v)}" for k, v in entry.items()]
    return "\n".join(lines) + "\n"


def _value(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)  # strings, numbers, booleans and lists read back the same in TOML


def _order(objective_key: str) -> list[str]:
    return [
        objective_key,
        *(k for k in ("p50_ms", "size_bytes", "error_increase") if k != objective_key),
    ]


def _front(points: list[dict[str, Any]]) -> list[bool]:
    values = [tuple(p[k] for k in _AXES) for p in points]

    def dominated(a: tuple, b: tuple) -> bool:  # b dominates a
        return all(y <= x for x, y in zip(a, b, strict=True)) and b != a

    return [not any(dominated(a, b) for b in values) for a in values]


def _closest_line(row: dict[str, Any]) -> str:
    m = row["measured"]
    over = ", ".join(f"{k} +{100 * v:.0f} % over" for k, v in row["violations"].items() if v > 0)
    return (
        f"trial {row['trial']}: {row['summary']}: MAE {100 * m['error_increase']:+.2f} %, "
        f"p50 {m['p50_ms']:.3f} ms, p99 {m['p99_ms']:.3f} ms, "
        f"{m['size_bytes'] / 1024:.1f} KiB ({over})"
    )
