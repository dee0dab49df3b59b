"""A short quantization-aware fine-tune: fake-quantized weights, straight-through gradients.

Each weight matrix (Linear, Conv1d, LSTM/GRU gates) is replaced in the forward pass by its
symmetric fake-quantized copy ``w + (q(w) - w).detach()``: the loss sees the rounded weights, the
gradient flows to the float weights as if rounding were the identity (straight-through). The
scales are per output channel, or per group of ``group_size`` inputs within each output channel
for group-wise int4. Only the training split is used. The result is a float model whose weights
sit where the target's own quantizer loses little; the target then quantizes it as usual.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgecomp.spec import Model

__all__ = ["QatConfig", "fake_quantize", "qat_finetune"]


@dataclass(frozen=True)
class QatConfig:
    """How the fine-tune runs.

    Attributes:
        bits: Weight bits the target will use (8 or 4).
        group_size: Inputs per scale within an output channel (None: one scale per channel).
        epochs: Passes over the (capped) training windows.
        lr: Adam learning rate; small, the model is already trained.
        batch_size: Windows per step.
        max_windows: Training windows drawn per epoch (bounds the time on a small gateway
            build machine).
        seed: Shuffling seed.
        search: int4: search each group's scale (``INT4_CLIP_RATIOS``), as the x86 int4 exporter
            does by default; False: plain peak / 7 (its ``int4_rounding`` "max").
    """

    bits: int = 8
    group_size: int | None = None
    epochs: int = 3
    lr: float = 1e-4
    batch_size: int = 64
    max_windows: int = 4096
    seed: int = 0
    search: bool = True

    def __post_init__(self) -> None:
        if self.bits not in (4, 8):
            raise ValueError(f"qat: bits must be 4 or 8; got {self.bits!r}")
        if self.group_size is not None and self.group_size < 1:
            raise ValueError(f"qat: group_size must be >= 1; got {self.group_size!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.max_windows < 1 or not self.lr > 0:
            raise ValueError("qat: epochs, batch_size, max_windows and lr must be positive")


#: int4 scale search, as the x86 int4 storage does it: per group, the scale among these
#: fractions of peak / 7 whose rounding has the least squared error (1: plain max-abs).
INT4_CLIP_RATIOS = tuple(1 - 0.025 * k for k in range(21))


def fake_quantize(
    weight: Any, bits: int, group_size: int | None = None, *, search: bool = True
) -> Any:
    """Symmetric fake quantization of a [out, in, ...] weight with a straight-through gradient.

    One scale per output channel, or per ``group_size`` consecutive inputs (dim 1) of each
    channel and trailing index (a Conv1d's kernel tap). int8: [-127, 127], scale peak / 127.
    int4: [-8, 7] with a float16 scale searched per group (``INT4_CLIP_RATIOS``), the rounding
    the int4 exporter applies, so that the weights settle where it will put them.
    """
    import torch

    if group_size is None:
        groups = weight.reshape(weight.shape[0], 1, -1)
    else:
        moved = weight.movedim(1, -1) if weight.ndim > 2 else weight
        flat = moved.reshape(-1, moved.shape[-1])
        size = min(group_size, flat.shape[1])
        padded = torch.nn.functional.pad(flat, (0, (-flat.shape[1]) % size))
        groups = padded.reshape(flat.shape[0], -1, size)
    with torch.no_grad():
        scale = _scales(groups, bits, INT4_CLIP_RATIOS if search else (1.0,))
    q = torch.clamp(
        torch.round(groups / scale), -(2 ** (bits - 1)) + (bits == 8), 2 ** (bits - 1) - 1
    )
    q = q * scale
    if group_size is None:
        q = q.reshape(weight.shape)
    else:
        q = q.reshape(flat.shape[0], -1)[:, : flat.shape[1]].reshape(moved.shape)
        q = q.movedim(-1, 1) if weight.ndim > 2 else q
    return weight + (q - weight).detach()


def _scales(groups: Any, bits: int, ratios: tuple[float, ...]) -> Any:
    """Per-group scales [..., 1] of ``fake_quantize`` (no gradient)."""
    import torch

    peak = groups.abs().amax(dim=-1, keepdim=True)
    if bits == 8:
        return peak.clamp_min(1e-12) / 127
    best, best_err = None, None
    for ratio in ratios:
        scale = (peak * ratio / 7).to(torch.float16).to(groups.dtype)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        err = ((torch.clamp(torch.round(groups / scale), -8, 7) * scale - groups) ** 2).sum(-1)
        if best is None:
            best, best_err = scale, err
            continue
        better = (err < best_err).unsqueeze(-1)
        best = torch.where(better, scale, best)
        best_err = torch.minimum(err, best_err)
    return best


def _quantized_names(module: Any) -> list[str]:
    return [n for n, p in module.named_parameters() if "weight" in n and p.ndim >= 2]


def qat_finetune(model: Model, train: Any, config: QatConfig) -> tuple[Model, dict[str, Any]]:
    """Fine-tune a copy of ``model`` on the training windows ``train`` under fake quantization.

    Returns:
        The new model (float weights) and a record: epochs, loss per epoch, seconds, layers.

    Raises:
        ValueError: The model is not a PyTorch module with weights, or there are no windows.
    """
    import torch
    from torch.func import functional_call

    if not isinstance(model.module, torch.nn.Module) or isinstance(
        model.module, torch.jit.ScriptModule
    ):
        raise ValueError("qat: needs a PyTorch nn.Module (not TorchScript or ONNX)")
    if len(train) == 0:
        raise ValueError("qat: the training split has no windows")
    module = copy.deepcopy(model.module).train()
    names = _quantized_names(module)
    if not names:
        raise ValueError("qat: the model has no weight matrix to quantize")
    optimizer = torch.optim.Adam(module.parameters(), lr=config.lr)
    rng = np.random.default_rng(config.seed)
    start, losses = time.perf_counter(), []
    for _ in range(config.epochs):
        losses.append(_epoch(module, names, train, optimizer, rng, config, functional_call))
    module.eval()
    record = {
        "bits": config.bits,
        "group_size": config.group_size,
        "search": config.search,
        "epochs": config.epochs,
        "lr": config.lr,
        "windows_per_epoch": min(len(train), config.max_windows),
        "loss_per_epoch": losses,
        "weights": names,
        "split": "train",
        "seconds": round(time.perf_counter() - start, 3),
    }
    return Model(module=module, spec=model.spec, source=model.source), record


def _epoch(module, names, train, optimizer, rng, config: QatConfig, functional_call) -> float:
    import torch

    order = rng.permutation(len(train))[: config.max_windows]
    total, count = 0.0, 0
    for i in range(0, len(order), config.batch_size):
        index = np.sort(order[i : i + config.batch_size])
        x = torch.from_numpy(np.ascontiguousarray(train.x[index], dtype=np.float32))
        y = torch.from_numpy(np.ascontiguousarray(train.y[index], dtype=np.float32))
        observed = torch.from_numpy(np.asarray(train.y_observed[index], dtype=np.float32))
        params = dict(module.named_parameters())
        for name in names:
            params[name] = fake_quantize(
                params[name], config.bits, config.group_size, search=config.search
            )
        err = (functional_call(module, params, (x,)) - y) ** 2 * observed  # imputed: no loss
        loss = err.sum() / observed.sum().clamp_min(1.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total, count = total + float(loss.detach()) * len(index), count + len(index)
    return total / max(count, 1)
