"""The adjacency of a graph model drawn on a map: nodes at their coordinates, edges by weight.

``adjacency_plot`` reads what an artifact or a checkpoint carries: the spec's ``layout`` (node
names and, for a distance graph, the recorded coordinates) and the model's weight matrix. Nodes
without coordinates (an adaptive-only graph) are placed on a circle. PNG bytes, matplotlib Agg.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

__all__ = ["adjacency_plot", "node_positions"]

MAX_EDGES = 20_000  # the heaviest edges drawn; more only blur the picture


def node_positions(layout: dict[str, Any]) -> tuple[np.ndarray, bool]:
    """[N, 2] (lon, lat) from the layout's recorded coordinates, or a circle; and whether they
    are geographic."""
    coords = (layout.get("graph") or {}).get("coordinates")
    if coords:
        return np.column_stack([coords["lon"], coords["lat"]]), True
    angle = 2 * np.pi * np.arange(len(layout["nodes"])) / max(len(layout["nodes"]), 1)
    return np.column_stack([np.cos(angle), np.sin(angle)]), False


def adjacency_plot(layout: dict[str, Any], weights: np.ndarray, *, title: str = "") -> bytes:
    """PNG of the graph: one dot per node, one line per non-zero off-diagonal weight, darker and
    wider with the weight (scaled to the largest); self-loops are ringed.

    Args:
        layout: The spec's node layout (``edgecomp.graph``).
        weights: [N, N] adjacency (or transition matrix) in the layout's node order.
        title: Plot title; by default, the graph's kind and edge count.

    Raises:
        ValueError: ``weights`` is not [N, N] for the layout's N nodes.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib import pyplot as plt
    from matplotlib.collections import LineCollection

    pos, geographic = node_positions(layout)
    n = len(pos)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n, n):
        raise ValueError(f"adjacency: expected [{n}, {n}] weights, got {list(w.shape)}")
    sym = np.triu(np.maximum(w, w.T), k=1)
    rows, cols = np.nonzero(sym)
    order = np.argsort(sym[rows, cols])[-MAX_EDGES:]
    rows, cols = rows[order], cols[order]
    strength = sym[rows, cols] / (sym.max() or 1.0)
    fig, ax = plt.subplots(figsize=(7, 7), dpi=110)
    segments = np.stack([pos[rows], pos[cols]], axis=1)
    colors = np.zeros((len(strength), 4))
    colors[:, 2], colors[:, 3] = 0.6, 0.15 + 0.7 * strength
    ax.add_collection(LineCollection(segments, colors=colors, linewidths=0.3 + 1.7 * strength))
    ax.scatter(pos[:, 0], pos[:, 1], s=8, c="black", zorder=3)
    loops = np.flatnonzero(np.diag(w) > 0)
    ax.scatter(pos[loops, 0], pos[loops, 1], s=60, facecolors="none", edgecolors="red", zorder=4)
    kind = (layout.get("graph") or {}).get("adjacency", "graph")
    ax.set_title(title or f"{kind} adjacency: {n} nodes, {len(rows)} edges drawn")
    if geographic:
        ax.set_xlabel("longitude")
        ax.set_ylabel("latitude")
        ax.set_aspect(1 / np.cos(np.radians(pos[:, 1].mean())))
    else:
        ax.set_axis_off()
    ax.autoscale_view()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()
