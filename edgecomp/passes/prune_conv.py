"""Channel pruning of the TCN (Conv1d) through torch-pruning's dependency graph.

torch-pruning traces the forecaster and groups channels that must go together: the residual
stream (``conv2`` of every block, the first block's 1x1 ``skip``, every consumer's input columns
and the head's input features) is one group, and each block's ``conv1`` output is a group of its
own. We score each group with the chosen criterion and keep the same number of channels in every
group, so the result is again a ``TCNForecaster`` with ``channels=width`` and round-trips through
a checkpoint. A removed channel whose producing rows are zeroed stays zero through ReLU and the
residual adds, so the pruned model equals the original with those rows zeroed.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from edgecomp.passes.importance import loss_gradients, top_units, torch_pruning_importance

__all__ = ["prune_tcn_state"]


def prune_tcn_state(
    module: nn.Module,
    criterion: str,
    width: int,
    calibration: tuple[np.ndarray, np.ndarray],
) -> tuple[dict[str, torch.Tensor], dict[str, list[int]]]:
    """The state_dict of the TCN keeping ``width`` channels per group, and the kept channels.

    Returns:
        (state, kept): ``state`` loads into the same architecture with ``channels=width``;
        ``kept`` maps each group, named by the convolutions that produce it joined with "+",
        to its kept channel indices (ascending).
    """
    import torch_pruning as tp

    work = copy.deepcopy(module).eval()
    if criterion == "taylor":
        grads = loss_gradients(work, *calibration)
        for name, p in work.named_parameters():
            p.grad = grads[name]
    example = torch.from_numpy(np.ascontiguousarray(calibration[0][:2], dtype=np.float32))
    graph = tp.DependencyGraph().build_dependency(work, example_inputs=example)
    scorer = torch_pruning_importance(criterion)
    groups = list(graph.get_all_groups(ignored_layers=[work.head], root_module_types=[nn.Conv1d]))
    plans, kept = [], {}
    for group in groups:
        scores = scorer(group)
        if not 1 <= width <= len(scores):
            raise ValueError(f"cannot keep {width} of {len(scores)} channels")
        keep = top_units(scores, width)
        remove = sorted(set(range(len(scores))) - set(keep.tolist()))
        plans.append((group, remove))
        kept[_group_name(graph, group)] = keep.tolist()
    for group, remove in plans:
        if remove:
            group.prune(idxs=remove)
    return {k: v.detach().contiguous() for k, v in work.state_dict().items()}, kept


def _group_name(graph, group) -> str:
    """The group's producing convolutions (output channels pruned), joined with '+'."""
    names = {
        graph._module2name[item.dep.target.module]  # noqa: SLF001 - torch-pruning's name map
        for item in group.items
        if isinstance(item.dep.target.module, nn.Conv1d)
        and graph.is_out_channel_pruning_fn(item.dep.handler)
    }
    return "+".join(sorted(names))
