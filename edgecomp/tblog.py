"""TensorBoard records of a training run beyond the per-epoch losses (``edgecomp.train``).

Per epoch ``train_module`` logs ``loss/train``, ``loss/val``, ``lr`` and, given a validation
error function (``workflow.val_error``), ``val_mae/h<k>`` and ``val_mae/mean`` (raw target
units, observed values only).
At the end ``log_final`` adds the per-horizon table of the trained model and the naive
baselines on the test and validation splits: scalars ``final/<split>/<forecaster>/<metric>``
(the TensorBoard step is the horizon step, 1..H) and a Markdown table (text tag ``final/table``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["FINAL_METRICS", "final_table", "log_epoch", "log_final"]

FINAL_METRICS = ("mae", "rmse")


def log_epoch(
    writer: Any, epoch: int, lr: float, mae: Sequence[float | None] | None = None
) -> None:
    """``lr`` and, when given, ``val_mae/h<k>`` per step and ``val_mae/mean`` at ``epoch``."""
    writer.add_scalar("lr", lr, epoch)
    if mae is None:
        return
    for h, value in enumerate(mae, 1):
        if value is not None:
            writer.add_scalar(f"val_mae/h{h}", value, epoch)
    kept = [v for v in mae if v is not None]
    if kept:
        writer.add_scalar("val_mae/mean", float(np.mean(kept)), epoch)


def final_table(evaluations: dict[str, dict[str, Any]]) -> str:
    """Markdown: one row per (split, forecaster, metric), one column per step, plus the mean.

    Args:
        evaluations: Split name -> ``workflow.evaluate`` output (``model`` and ``baselines``).
    """
    horizon = len(next(iter(evaluations.values()))["model"]["mae"])
    head = ["split", "forecaster", "metric", *(f"h{h}" for h in range(1, horizon + 1)), "mean"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for split, name, metric, values in _rows(evaluations):
        cells = ["n/a" if v is None else f"{v:.4g}" for v in values]
        kept = [v for v in values if v is not None]
        mean = f"{np.mean(kept):.4g}" if kept else "n/a"
        lines.append("| " + " | ".join([split, name, metric, *cells, mean]) + " |")
    return "\n".join(lines)


def log_final(log_dir: str | Path, evaluations: dict[str, dict[str, Any]]) -> None:
    """Write the final per-horizon table to TensorBoard in ``log_dir`` (scalars and text)."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(log_dir))
    try:
        for split, name, metric, values in _rows(evaluations):
            for h, value in enumerate(values, 1):
                if value is not None:
                    writer.add_scalar(f"final/{split}/{name}/{metric}", value, h)
        writer.add_text("final/table", final_table(evaluations))
    finally:
        writer.close()


def _rows(evaluations: dict[str, dict[str, Any]]):
    for split, evaluation in evaluations.items():
        forecasters = {"model": evaluation["model"], **evaluation.get("baselines", {})}
        for name, metrics in forecasters.items():
            for metric in FINAL_METRICS:
                yield split, name, metric, metrics[metric]


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    """The learning rate of the optimizer's first parameter group."""
    return float(optimizer.param_groups[0]["lr"])
