"""Importance of prunable units: L1 / L2 magnitude, or first-order Taylor on calibration data.

``l1`` and ``l2`` score a unit by the norm of every weight it owns (the rows that produce it and
the columns that consume it). ``taylor`` is data-driven: ``|w * dL/dw|`` summed over the same
weights, with the gradient of the training loss (MSE, scaled units) on calibration windows, the
group Taylor criterion of Molchanov et al. (CVPR 2019): the first-order estimate of how much the
loss changes when the unit is removed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "CRITERIA",
    "check_criterion",
    "element_scores",
    "finalize",
    "loss_gradients",
    "top_units",
    "torch_pruning_importance",
]

CRITERIA = ("l1", "l2", "taylor")


def check_criterion(criterion: str) -> None:
    """Raise ValueError unless ``criterion`` is one of ``CRITERIA``."""
    if criterion not in CRITERIA:
        raise ValueError(f"unknown importance '{criterion}'. Available: {list(CRITERIA)}")


def loss_gradients(
    module: nn.Module, x: np.ndarray, y: np.ndarray, *, batch_size: int = 128
) -> dict[str, torch.Tensor]:
    """Gradients of the mean squared error over all ``(x, y)`` windows, by parameter name.

    The module runs in eval mode (no dropout); its ``.grad`` fields are left as they were.
    """
    if len(x) == 0:
        raise ValueError("the Taylor criterion needs calibration windows, got none")
    params = dict(module.named_parameters())
    grads = {name: torch.zeros_like(p) for name, p in params.items()}
    was_training = module.training
    module.eval()
    try:
        for begin in range(0, len(x), batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(x[begin : begin + batch_size], "float32"))
            yb = torch.from_numpy(np.ascontiguousarray(y[begin : begin + batch_size], "float32"))
            loss = nn.functional.mse_loss(module(xb), yb, reduction="sum") / yb[0].numel()
            batch = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
            for name, g in zip(params, batch, strict=True):
                if g is not None:
                    grads[name] += g / len(x)
    finally:
        module.train(was_training)
    return grads


def element_scores(weight: torch.Tensor, grad: torch.Tensor | None, criterion: str) -> torch.Tensor:
    """Per-element contribution to a unit's score, to be summed over the unit's weights."""
    w = weight.detach()
    if criterion == "l1":
        return w.abs()
    if criterion == "l2":
        return w.square()
    if grad is None:
        raise ValueError("the Taylor criterion needs gradients (calibration windows)")
    return (w * grad).abs()


def finalize(scores: torch.Tensor, criterion: str) -> torch.Tensor:
    """Turn summed element scores into unit scores (the square root for L2)."""
    return scores.sqrt() if criterion == "l2" else scores


def torch_pruning_importance(criterion: str) -> Any:
    """The torch-pruning group importance matching ``criterion`` (for Conv1d / Linear groups)."""
    import torch_pruning as tp

    check_criterion(criterion)
    if criterion == "taylor":
        return tp.importance.GroupTaylorImportance()
    return tp.importance.GroupMagnitudeImportance(p=1 if criterion == "l1" else 2)


def top_units(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """Indices of the ``keep`` highest scores, in ascending index order (ties: lower index)."""
    order = torch.argsort(-scores.detach().double(), stable=True)
    return torch.sort(order[:keep]).values
