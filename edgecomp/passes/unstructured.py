"""Unstructured magnitude pruning: zero the smallest weights. An option, documented honestly.

``W -> W * (|W| > t)`` per weight matrix. The tensors keep their shapes, so the ONNX (or TFLite)
file holds the same number of floats and runs exactly as fast: dense kernels multiply zeros too.
What it buys is compressibility: the zipped artifact (and this pass's ``zip_bytes``, the deflated
size of the fp32 weights) shrinks. For a smaller and faster model use the structured ``prune`` pass.
"""

from __future__ import annotations

import copy
import zlib
from dataclasses import dataclass

import torch

from edgecomp.passes.base import Pass, PassConfig, PassContext, PassResult, state_bytes
from edgecomp.spec import Model

__all__ = ["MagnitudeConfig", "MagnitudePrunePass", "magnitude_masks"]


@dataclass(frozen=True)
class MagnitudeConfig(PassConfig):
    """Unstructured pruning.

    Attributes:
        sparsity: Fraction of each weight matrix (2-D or more; biases are kept) set to zero.
    """

    sparsity: float = 0.5

    def __post_init__(self) -> None:
        ok = isinstance(self.sparsity, int | float) and not isinstance(self.sparsity, bool)
        if not (ok and 0 <= self.sparsity < 1):
            raise ValueError(f"'sparsity' must be a number in [0, 1), got {self.sparsity!r}")


def magnitude_masks(module: torch.nn.Module, sparsity: float) -> dict[str, torch.Tensor]:
    """Per weight matrix, a boolean mask keeping all but its ``sparsity`` smallest |w|."""
    masks = {}
    for name, p in module.named_parameters():
        if p.ndim < 2:
            continue
        k = int(sparsity * p.numel())
        flat = p.detach().abs().flatten()
        mask = torch.ones_like(flat, dtype=torch.bool)
        if k:
            mask[torch.argsort(flat, stable=True)[:k]] = False
        masks[name] = mask.reshape(p.shape)
    return masks


def _zip_bytes(module: torch.nn.Module) -> int:
    return len(zlib.compress(state_bytes(module), 6))  # the level zipfile's DEFLATED uses


class MagnitudePrunePass(Pass):
    """Zero the smallest weights: ``W -> W * mask``; same shapes, same latency, smaller zip."""

    name = "magnitude"
    config_type = MagnitudeConfig

    def call(self, model: Model, ctx: PassContext) -> PassResult:
        module = copy.deepcopy(model.module)
        masks = magnitude_masks(module, self.config.sparsity)
        params = dict(module.named_parameters())
        with torch.no_grad():
            for name, mask in masks.items():
                params[name].mul_(mask)
        zeros = sum(int((~m).sum()) for m in masks.values())
        stats = {
            "zeroed_weights": zeros,
            "zip_bytes_before": _zip_bytes(model.module),
            "zip_bytes_after": _zip_bytes(module),
            "note": "tensor shapes unchanged: model file size and latency do not change",
        }
        return PassResult(Model(module=module, spec=model.spec, source=model.source), stats)
