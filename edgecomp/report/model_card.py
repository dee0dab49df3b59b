"""MODEL_CARD.md: what an artifact is, what it was trained and tested on, what compression cost.

The card is written into every artifact by the build's package stage, rendered from the manifest
(spec, recipe, layers, metrics, budget) and a few facts about the data and the model that the
manifest does not hold (rows, split dates, parameter count). Every number comes from those; the
per-step table is the manifest's test metrics, on observed values only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["CARD_NAME", "card_facts", "render_model_card"]

CARD_NAME = "MODEL_CARD.md"
SPLITS = ("train", "val", "test")


def card_facts(dataset: Any, model: Any) -> dict[str, Any]:
    """What the card needs beyond the manifest: rows and date range per split, windows and
    observed target values per split, left-out windows, and the model's fp32 weight bytes.

    Args:
        dataset: ``edgecomp.data.Dataset`` the artifact was built and verified on.
        model: The ``Model`` lowered (after its passes); its parameter count when it has one.
    """
    index = dataset.raw.index
    splits = {}
    for name in SPLITS:
        start, end = dataset.bounds[name]
        windows = dataset.split(name)
        observed = getattr(windows, "y_observed", None)
        splits[name] = {
            "rows": [int(start), int(end)],
            "first": str(index[start]) if end > start else None,
            "last": str(index[end - 1]) if end > start else None,
            "windows": len(windows),
            "observed": None if observed is None else int(observed.sum()),
            "values": None if observed is None else int(observed.size),
            "left_out": int(dataset.left_out.get(name, {}).get("windows", 0)),
        }
    params = getattr(model.module, "parameters", None)
    n_params = sum(p.numel() for p in params()) if callable(params) else None
    return {"rows": len(dataset.raw), "splits": splits, "params": n_params}


def render_model_card(
    manifest: dict[str, Any],
    facts: dict[str, Any],
    *,
    test_metrics: dict[str, Any] | None,
    sizes: dict[str, int],
) -> str:
    """The card as Markdown.

    Args:
        manifest: The artifact's manifest (``files`` not needed).
        facts: ``card_facts(dataset, model)``.
        test_metrics: Metrics on the test split (the manifest's ``metrics`` layout), or None
            when the test split was not evaluated.
        sizes: File name -> bytes of the artifact's files.
    """
    spec, target = manifest["spec"], manifest["target"]
    title = f"# Model card: {spec['arch']} forecaster, {target['name']} ({manifest['precision']})"
    sections = [
        [title, "", *_header(manifest)],
        _data(spec, facts),
        _splits(facts),
        _errors(test_metrics),
        _compression(manifest, facts, sizes),
        _limits(manifest, facts, test_metrics),
    ]
    return "\n\n".join("\n".join(lines) for lines in sections) + "\n"


def _header(manifest: dict[str, Any]) -> list[str]:
    producer = ", ".join(f"{k} {v}" for k, v in manifest.get("producer", {}).items())
    target = manifest["target"]
    return [
        f"- build id: `{manifest.get('build_id', 'n/a')}` (also in the ONNX metadata)",
        f"- created: {manifest.get('created', 'n/a')}",
        f"- target: {target['name']} (backend {target['backend']}, {target.get('arch', '?')}), "
        f"model file `{manifest['model_file']}`",
        f"- produced by: {producer}",
    ]


def _data(spec: dict[str, Any], facts: dict[str, Any]) -> list[str]:
    data = spec.get("data") or {}
    period = spec.get("period_s")
    return [
        "## Data",
        "",
        f"- file: `{data.get('file', 'unknown')}`",
        f"- sha256: `{data['sha256']}`" if data.get("sha256") else "- sha256: unknown",
        f"- rows: {facts['rows']:,} on a regular grid"
        + (f", one every {_duration(period)}" if period else ""),
        f"- features ({len(spec['features'])}): {_names(spec['features'])}",
        f"- target columns ({len(spec['targets'])}): {_names(spec['targets'])}",
    ]


def _splits(facts: dict[str, Any]) -> list[str]:
    lines = [
        "## Splits (by time)",
        "",
        "| split | rows | from | to | windows | observed target values |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in facts["splits"].items():
        observed = "n/a" if s["observed"] is None else f"{s['observed']:,} of {s['values']:,}"
        lines.append(
            f"| {name} | {s['rows'][0]}–{s['rows'][1]} | {s['first'] or 'n/a'} | "
            f"{s['last'] or 'n/a'} | {s['windows']:,} | {observed} |"
        )
    return lines


def error_rows(metrics: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-step table: step, reference MAE, artifact MAE and RMSE,
    each baseline's MAE, observed values scored."""
    baselines = list(metrics.get("baselines", {}))
    header = ["step", "reference MAE", "artifact MAE", "artifact RMSE"]
    header += [f"{name} MAE" for name in baselines] + ["scored"]
    artifact, reference = metrics["artifact"], metrics["reference"]
    rows = []
    for h in range(len(artifact["mae"])):
        row = [f"h{h + 1}", _num(reference["mae"][h]), _num(artifact["mae"][h])]
        row.append(_num(artifact["rmse"][h]))
        row += [_num(metrics["baselines"][name]["mae"][h]) for name in baselines]
        rows.append([*row, str(artifact["scored"][h])])
    return header, rows


def _errors(metrics: dict[str, Any] | None) -> list[str]:
    lines = ["## Error per horizon step (test split)", ""]
    if metrics is None:
        return [*lines, "The test split was not evaluated (it holds no window)."]
    header, rows = error_rows(metrics)
    lines += [
        f"Raw target units, averaged over the target columns, on observed values only "
        f"({metrics['artifact']['n_scored']:,} scored, {metrics['artifact']['n_imputed']:,} "
        f"imputed values never scored), {metrics['n_windows']:,} windows. The reference is the "
        "float model before lowering; the baselines are naive forecasters.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]
    return lines


def _compression(manifest: dict[str, Any], facts: dict[str, Any], sizes: dict[str, int]) -> list:
    recipe = manifest.get("recipe") or {}
    lines = ["## Compression", ""]
    passes = recipe.get("passes") or []
    lines.append(f"- model passes: {_passes(passes) if passes else 'none'}")
    lines.append(f"- precision: {manifest['precision']}; layers: {_layers(manifest['layers'])}")
    quantization = (recipe.get("lowering") or {}).get("quantization")
    if isinstance(quantization, dict):
        lines.append(f"- quantization: {_quantization(quantization)}")
    lines.append(f"- accuracy ladder: {_ladder(manifest.get('budget'))}")
    model_size = sizes.get(manifest["model_file"], 0)
    total = sum(sizes.values())
    fp32 = _fp32_bytes(passes, facts)
    ratio = f", {model_size / fp32:.2f}x the fp32 weights ({fp32:,} B)" if fp32 else ""
    lines.append(f"- size: model file {model_size:,} B{ratio}; model files in all {total:,} B")
    return lines


def _limits(
    manifest: dict[str, Any], facts: dict[str, Any], metrics: dict[str, Any] | None
) -> list[str]:
    spec = manifest["spec"]
    period = spec.get("period_s")
    steps = lambda n: f"{n} steps" + (f" ({_duration(n * period)})" if period else "")  # noqa: E731
    test = facts["splits"]["test"]
    left = sum(s["left_out"] for s in facts["splits"].values())
    lines = [
        "## Limits",
        "",
        f"- input: the last {steps(spec['input_len'])} of every feature; output: the next "
        f"{steps(spec['horizon'])} of each target column",
        f"- missing values: {_imputation(spec.get('imputation'))}",
        f"- not tested on: data after {test['last'] or 'the test split'}, other columns or "
        "sites than those listed, windows the missing-value policy refuses "
        f"({left:,} left out over the splits), imputed truth values (never scored)",
        f"- error budget: {_budget(manifest.get('budget'))}",
    ]
    if metrics is not None and metrics["artifact"].get("unscored"):
        lines.append(
            f"- steps without an observed value: {sorted(metrics['artifact']['unscored'])}"
        )
    return lines


def _passes(passes: Sequence[dict[str, Any]]) -> str:
    from edgecomp.passes import summary_line

    out = []
    for record in passes:
        try:
            out.append(summary_line(record))
        except (KeyError, TypeError):  # a record from an older build without measurements
            out.append(str(record.get("_type", "?")))
    return "; ".join(out)


def _quantization(record: dict[str, Any]) -> str:
    parts = [str(record.get("tool") or record.get("method") or "as recorded in the manifest")]
    if record.get("steps"):
        parts.append("steps " + " -> ".join(map(str, record["steps"])))
    if record.get("n_calibration_windows"):
        parts.append(f"{record['n_calibration_windows']} calibration windows")
    return ", ".join(parts)


def _layers(layers: Sequence[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for layer in layers:
        method = f" {layer['method']}" if layer.get("method") else ""
        key = f"{layer['precision']}{method}"
        counts[key] = counts.get(key, 0) + 1
    kept = [layer["name"] for layer in layers if layer["precision"] == "fp32"]
    text = ", ".join(f"{n} {p}" for p, n in sorted(counts.items())) or "none recorded"
    mixed = kept and len(kept) < len(layers)
    return text + (f" (float: {', '.join(kept)})" if mixed else "")


def _ladder(budget: dict[str, Any] | None) -> str:
    if not budget or not budget.get("checked"):
        return "not run"
    tried = [t.get("rung", "?") for t in budget.get("ladder", [])]
    rungs = f"; rungs tried: {', '.join(tried)}" if tried else ""
    return f"met by '{budget.get('met_by', '?')}'{rungs}"


def _budget(budget: dict[str, Any] | None) -> str:
    if not budget:
        return "not recorded"
    if not budget.get("checked"):
        return f"not checked ({budget.get('reason', 'no budget given')})"
    gate = budget.get("gate") or {}
    text = (budget.get("budget") or {}).get("text", "a budget")
    verdict = "met" if gate.get("passed") else "missed"
    worst = gate.get("worst_change")
    change = "" if worst is None else f", worst step h{gate.get('worst_step')} {worst * 100:+.2f} %"
    return f"{text}: {verdict} on the {gate.get('split', 'test')} split{change}"


def _fp32_bytes(passes: Sequence[dict[str, Any]], facts: dict[str, Any]) -> int | None:
    """fp32 bytes of the model's parameters before its passes (parameters x 4 B)."""
    try:
        return int(passes[0]["measured"]["before"]["params"]) * 4
    except (IndexError, KeyError, TypeError):
        return None if facts.get("params") is None else int(facts["params"]) * 4


def _imputation(policy: dict[str, Any] | None) -> str:
    if not policy:
        return "none recorded: the runtime needs complete windows"
    return (
        f"a window is refused when a column misses more than "
        f"{policy.get('max_missing_fraction', 0):.0%} of its values; otherwise gaps are "
        f"interpolated linearly (at most {policy.get('interpolate_limit', 0)} steps), then "
        f"filled by {policy.get('then', 'ffill')}"
    )


def _names(names: Sequence[str], most: int = 24) -> str:
    shown = ", ".join(f"`{n}`" for n in names[:most])
    return shown + (f", … ({len(names) - most} more)" if len(names) > most else "")


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.6g}"


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"
