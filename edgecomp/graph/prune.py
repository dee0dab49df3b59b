"""Channel pruning of the graph forecaster (``stgnn``): the model really shrinks.

Two kinds of channel group, scored like the other pruners (``edgecomp.passes.importance``):

* the residual stream: row c of the input 1x1 convolution and of every layer's mixing
  convolution produce it; column c of every filter, gate and head weight reads it;
* the gated channels of each layer: row j of its filter and gate produce them; the columns
  ``j + s * channels`` of its mixing convolution (one per support block s) read them.

The same number of channels is kept in every group, so the result is again a ``GraphForecaster``
with ``channels=width`` (adjacency buffers and node embeddings unchanged). A removed residual
channel whose producing rows are zero stays zero, as does a gated channel whose mixing columns
are zero, so the pruned model equals the original with those weights zeroed.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edgecomp.passes.importance import element_scores, finalize, loss_gradients, top_units

__all__ = ["prune_graph_state"]


def prune_graph_state(
    module: nn.Module,
    criterion: str,
    width: int,
    calibration: tuple[np.ndarray, np.ndarray] | None,
) -> tuple[dict[str, torch.Tensor], dict[str, list[int]]]:
    """The state_dict of ``module`` keeping ``width`` channels per group, and the kept channels.

    Returns:
        (state, kept): ``state`` loads into the same architecture with ``channels=width``;
        ``kept`` maps "residual" and each layer's "layers.i.gated" to kept channel indices.
    """
    channels = module.channels
    if not 1 <= width <= channels:
        raise ValueError(f"cannot keep {width} of {channels} channels")
    state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    grads = loss_gradients(module, *calibration) if criterion == "taylor" else {}
    groups = {"residual": _residual_parts(module)}
    for i, layer in enumerate(module.layers):
        groups[f"layers.{i}.gated"] = _gated_parts(i, 1 + layer.n_supports)
    # every score from the unpruned weights first, then every selection
    keep = {
        g: top_units(_scores(state, grads, criterion, parts, channels), width)
        for g, parts in groups.items()
    }
    for g, parts in groups.items():
        _select(state, parts, keep[g], channels)
    return state, {g: k.tolist() for g, k in keep.items()}


def _residual_parts(module: nn.Module) -> list[tuple[str, int, int]]:
    """(parameter, axis, blocks) of every weight producing or reading the residual stream."""
    parts = [("inp.weight", 0, 1), ("inp.bias", 0, 1), ("head.proj.weight", 1, 1)]
    if getattr(module, "node_bias", None) is not None:
        parts.append(("node_bias", 1, 1))
    for i in range(len(module.layers)):
        p = f"layers.{i}"
        parts += [(f"{p}.mix.weight", 0, 1), (f"{p}.mix.bias", 0, 1)]
        parts += [(f"{p}.filter.weight", 1, 1), (f"{p}.gate.weight", 1, 1)]
    return parts


def _gated_parts(i: int, blocks: int) -> list[tuple[str, int, int]]:
    p = f"layers.{i}"
    produce = [(f"{p}.{c}.{w}", 0, 1) for c in ("filter", "gate") for w in ("weight", "bias")]
    return [*produce, (f"{p}.mix.weight", 1, blocks)]


def _scores(state, grads, criterion: str, parts, channels: int) -> torch.Tensor:
    total = torch.zeros(channels, dtype=torch.float64)
    for name, axis, blocks in parts:
        e = element_scores(state[name], grads.get(name), criterion).double()
        per = e.transpose(0, axis).reshape(e.shape[axis], -1).sum(dim=1)
        total += per.reshape(blocks, channels).sum(dim=0)
    return finalize(total, criterion)


def _select(state, parts, keep: torch.Tensor, channels: int) -> None:
    for name, axis, blocks in parts:
        index = torch.cat([keep + b * channels for b in range(blocks)])
        state[name] = state[name].index_select(axis, index).contiguous()
