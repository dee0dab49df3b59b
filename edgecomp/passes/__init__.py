"""Model passes (prune, fine-tune, distill, magnitude masks) and the registry that names them.

Passes are looked up by name in ``PASSES`` (name -> "module:Class") and imported lazily, like the
targets, so importing this package loads neither torch-pruning nor any pass module.
"""

from __future__ import annotations

import importlib
from typing import Any

from .base import (
    Pass,
    PassConfig,
    PassContext,
    PassError,
    PassResult,
    config_from_dict,
    count_params,
    measure,
    weight_bytes,
)

__all__ = [
    "PASSES",
    "Pass",
    "PassConfig",
    "PassContext",
    "PassError",
    "PassResult",
    "config_from_dict",
    "count_params",
    "get_pass",
    "make_pass",
    "measure",
    "run_passes",
    "weight_bytes",
]

PASSES: dict[str, str] = {
    "prune": "edgecomp.passes.prune:StructuredPrunePass",
    "finetune": "edgecomp.passes.finetune:FinetunePass",
    "distill": "edgecomp.passes.distill:DistillPass",
    "magnitude": "edgecomp.passes.unstructured:MagnitudePrunePass",
}


def get_pass(name: str) -> type[Pass]:
    """Return the pass class registered as ``name``.

    Raises:
        PassError: Unknown name (the message lists the known ones).
    """
    if name not in PASSES:
        raise PassError(f"unknown pass '{name}'. Available: {sorted(PASSES)}")
    module_name, _, class_name = PASSES[name].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def make_pass(name: str, options: dict[str, Any], *, where: str = "") -> Pass:
    """Instantiate pass ``name`` from a dict of options; errors name ``where`` and the key."""
    cls = get_pass(name)
    return cls(config_from_dict(cls.config_type, options, where=where or f"pass '{name}'"))


def run_passes(
    model: Any, passes: list[Pass], ctx: PassContext, *, log: Any = None
) -> tuple[Any, list[dict[str, Any]]]:
    """Apply ``passes`` in order; return the final model and one manifest record per pass.

    Each record is ``{"_type", "_version", "_data", "measured"}``: the pass name, its config
    version and fields, and what it measured (``before`` / ``after``: parameters, fp32 weight
    bytes, per-horizon MAE on ``ctx.eval_split``; ``stats``: what the pass itself reports).
    ``ctx.source_model`` is set to ``model`` when unset (the teacher of fine-tuning).
    A failing pass raises PassError naming it and the passes that ran before it.
    """
    records: list[dict[str, Any]] = []
    before = measure(model, ctx) if passes else None
    if ctx.source_model is None:
        ctx.source_model = model
    for p in passes:
        try:
            result = p(model, ctx)
        except PassError as exc:
            done = [r["_type"] for r in records]
            raise PassError(f"{exc} (after passes {done})" if done else str(exc)) from None
        after = measure(result.model, ctx)
        records.append(
            {
                "_type": p.name,
                "_version": p.config.version,
                "_data": p.config.to_dict(),
                "measured": {"before": before, "after": after, "stats": result.stats},
            }
        )
        if log is not None:
            log(summary_line(records[-1]))
        model, before = result.model, after
    return model, records


def summary_line(record: dict[str, Any]) -> str:
    """One line saying what a pass record measured: parameters, weight bytes, mean MAE."""
    m = record["measured"]
    b, a = m["before"], m["after"]

    def mean(v: list[float | None]) -> float:
        kept = [x for x in v if x is not None]  # None: a step without an observed value
        return sum(kept) / len(kept) if kept else float("nan")

    return (
        f"{record['_type']}: params {b['params']:,} -> {a['params']:,}, "
        f"weights {b['weight_bytes']:,} -> {a['weight_bytes']:,} B, "
        f"MAE {mean(b['mae']):.4g} -> {mean(a['mae']):.4g}"
    )
