"""Node layout: windows shaped by node and channel, [L, N, C] or [B, L, N, C], for graph artifacts.

An artifact whose spec carries a ``layout`` (``nodes``, ``channels``, ``index``: the feature index
of each (node, channel), ``globals``: features of no node) also takes windows shaped [L, N, C] or
[batch, L, N, C]; ``flatten_nodes`` maps them onto the model's [L, F] / [batch, L, F] feature
order. Flat windows pass through unchanged, so [L, F] keeps working. Known-future lead channels
(``spec.future``, the last K features) are globals of a graph artifact that the runtime builds
itself: a node window maps onto the F - K sensor features and ``add_future`` appends them.
numpy only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgecomp_runtime.errors import InputShapeError

__all__ = ["flatten_nodes", "lead_count", "node_shape"]


def node_shape(layout: dict | None) -> tuple | None:
    """(N, C) of ``layout``, or None without one."""
    if not layout:
        return None
    return len(layout["nodes"]), len(layout["channels"])


def lead_count(spec: dict) -> int:
    """K, the known-future lead channels at the end of ``spec.features`` (0 without)."""
    future = spec.get("future")
    return len(future["features"]) if future else 0


def flatten_nodes(
    array: np.ndarray, layout: dict | None, input_len: int, *, leads: int = 0
) -> np.ndarray:
    """``array`` as [L, F] / [B, L, F] when it is a node window of ``layout``, else unchanged.

    A 3-D array whose first axis is L and last is C is read as [L, N', C], a 4-D array as
    [B, L, N', C]; anything else is left for the caller's shape check. With ``leads`` = K
    known-future lead channels, a node window maps onto the first F - K features.

    Raises:
        InputShapeError: The window's node count differs from the artifact's (both named), or
            the artifact also needs global features, which a node window cannot hold.
    """
    if not layout or array.ndim not in (3, 4):
        return array
    n, c = node_shape(layout)
    n_features = n * c + len(layout["globals"])
    batched = array.ndim == 4
    if (
        not batched
        and array.shape[1] == input_len
        and array.shape[2] in (n_features, n_features - leads)
    ):
        return array  # a flat batch [B, L, F] (or [B, L, F - K] before the lead channels)
    lead = array.shape[1:2] if batched else array.shape[:1]
    if lead != (input_len,) or array.shape[-1] != c:
        return array
    if array.shape[-2] != n:
        raise InputShapeError(
            f"window: {array.shape[-2]} nodes, the artifact has {n} nodes "
            f"(shape [L={input_len}, N={n}, C={c}]); got {list(array.shape)}"
        )
    if len(layout["globals"]) > leads:
        raise InputShapeError(
            f"window: this artifact also takes {len(layout['globals']) - leads} global "
            f"feature(s) beside its {n} x {c} node values; pass [L, {n_features - leads}] windows"
        )
    return _scatter(array, layout, n_features - leads)


def _scatter(array: np.ndarray, layout: Any, n_features: int) -> np.ndarray:
    index = np.asarray(layout["index"], dtype=np.intp).reshape(-1)
    flat = array.reshape(*array.shape[:-2], -1)
    if np.array_equal(index, np.arange(n_features)):
        return flat
    out = np.empty(flat.shape[:-1] + (n_features,), dtype=flat.dtype)
    out[..., index] = flat
    return out
