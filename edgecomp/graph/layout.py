"""Node layout: which input feature is which (node, channel), and the graph that joins the nodes.

A layout is a plain JSON object carried in ``ModelSpec.layout`` and the artifact's manifest, so the
runtime can take windows ``[L, N, C]`` without the compiler:

``{"nodes": [N names], "channels": [C names], "index": [[feature index of (n, c)] * C] * N,
"globals": [feature indices outside the node grid], "graph": {...how the adjacency was built}}``

Feature names follow the data loader (``edgecomp/data/io.py``): long data with one value column
names each feature after its node id; with several value columns ``f"{node}_{value_col}"``, node
major. Wide data has no node ids: each feature column is a node with one channel, except the
columns named as ``globals`` (e.g. city-wide weather beside per-station counts).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edgecomp.graph.adjacency import Coordinates, GraphError, distance_graph, read_coordinates

__all__ = [
    "ADJACENCIES",
    "attach_layout",
    "check_layout",
    "distance_weights",
    "node_layout",
    "target_channels",
]

ADJACENCIES = ("auto", "distance", "adaptive", "both")


def node_layout(
    features: list[str],
    *,
    value_cols: list[str] | None = None,
    id_col: str | None = None,
    globals_: list[str] | tuple[str, ...] = (),
) -> dict[str, Any]:
    """The layout of ``features`` (see the module docstring).

    Args:
        features: Feature names in model order.
        value_cols: Value columns of a long table (from the spec's ``data``).
        id_col: Id column of a long table; None for wide data.
        globals_: Feature names that belong to no node (broadcast to every node by graph models).

    Raises:
        GraphError: A global is not a feature, or the names do not form a full node grid.
    """
    unknown = [g for g in globals_ if g not in features]
    if unknown:
        raise GraphError(f"layout: global feature(s) {unknown} are not features")
    node_features = [f for f in features if f not in set(globals_)]
    if not node_features:
        raise GraphError("layout: every feature is global; no node is left")
    cols = list(value_cols or [])
    if id_col and len(cols) > 1:
        nodes, channels = _split_names(node_features, cols)
    else:
        nodes, channels = node_features, [cols[0] if id_col and cols else "value"]
    position = {name: i for i, name in enumerate(features)}
    index = [[position[_name(n, c, channels)] for c in channels] for n in nodes]
    return {
        "nodes": nodes,
        "channels": channels,
        "index": index,
        "globals": [position[g] for g in globals_],
    }


def _name(node: str, channel: str, channels: list[str]) -> str:
    return node if len(channels) == 1 else f"{node}_{channel}"


def _split_names(names: list[str], cols: list[str]) -> tuple[list[str], list[str]]:
    nodes: list[str] = []
    for name in names:
        col = next((c for c in cols if name.endswith(f"_{c}")), None)
        if col is None:
            raise GraphError(f"layout: feature '{name}' ends in none of the value columns {cols}")
        node = name[: -len(col) - 1]
        if node not in nodes:
            nodes.append(node)
    channels = [c for c in cols if any(f"{n}_{c}" in names for n in nodes)]
    holes = [f"{n}_{c}" for n in nodes for c in channels if f"{n}_{c}" not in names]
    if holes:
        raise GraphError(f"layout: the nodes x channels grid misses feature(s) {holes[:5]}")
    return nodes, channels


def check_layout(layout: Any, n_features: int) -> None:
    """Raise GraphError unless ``layout`` is a valid layout of ``n_features`` features."""
    if not isinstance(layout, dict):
        raise GraphError(f"layout must be an object, got {type(layout).__name__}")
    for key in ("nodes", "channels", "index", "globals"):
        if not isinstance(layout.get(key), list):
            raise GraphError(f"layout.{key} must be a list")
    n, c = len(layout["nodes"]), len(layout["channels"])
    rows = layout["index"]
    if n < 1 or c < 1 or len(rows) != n or any(len(r) != c for r in rows):
        raise GraphError(f"layout.index must be {n} rows of {c} feature indices")
    flat = [i for r in rows for i in r] + list(layout["globals"])
    if sorted(flat) != list(range(n_features)):
        raise GraphError(
            f"layout: index and globals must name each of the {n_features} features once"
        )


def target_channels(
    layout: dict[str, Any], target_index: list[int]
) -> tuple[list[int], list[int] | None]:
    """Channels a graph model forecasts for every node, and which of those forecasts are targets.

    Returns:
        (channels, select): ``channels`` holds the channel positions of the targets; the model
        forecasts ``(n, c)`` for every node n and c in ``channels``, node major, and ``select``
        picks the targets from that grid (None when the targets are the whole grid, in order).

    Raises:
        GraphError: A target is a global feature.
    """
    where = {i: (n, c) for n, row in enumerate(layout["index"]) for c, i in enumerate(row)}
    outside = [i for i in target_index if i not in where]
    if outside:
        raise GraphError(f"layout: target feature(s) {outside} belong to no node (globals)")
    channels = sorted({where[i][1] for i in target_index})
    grid = [(n, c) for n in range(len(layout["index"])) for c in channels]
    select = [grid.index(where[i]) for i in target_index]
    return channels, None if select == list(range(len(grid))) else select


def attach_layout(spec: Any) -> Any:
    """``spec`` with a node layout (and, with coordinates, the distance graph) of its features.

    Reads the graph hyperparameters of ``spec.hparams``: ``globals`` (feature names broadcast to
    all nodes; the known-future lead channels of ``spec.future`` join them), ``coordinates``
    (CSV path: node id, lat, lon), ``adjacency``, ``sigma_km`` and ``threshold``. Every note
    (isolated nodes) is also returned in ``layout.graph.notes``.
    """
    hp = spec.hparams
    data = spec.data or {}
    globals_ = list(hp.get("globals") or [])
    leads = (getattr(spec, "future", None) or {}).get("features", [])
    globals_ += [f for f in leads if f not in globals_]  # known-future channels: every node's
    layout = node_layout(
        list(spec.features),
        value_cols=data.get("value_cols"),
        id_col=data.get("id_col") if data.get("layout") == "long" else None,
        globals_=globals_,
    )
    layout["graph"] = graph_record(layout["nodes"], hp)
    return replace(spec, layout=layout)


def graph_record(nodes: list[str], hp: dict[str, Any]) -> dict[str, Any]:
    """How the adjacency is built: ``{"adjacency": kind, ...}``; with coordinates, the
    coordinates themselves (so the graph is rebuilt without the file) and the kernel record."""
    kind = hp.get("adjacency", "auto")
    if kind not in ADJACENCIES:
        raise GraphError(f"unknown adjacency '{kind}'. Available: {list(ADJACENCIES)}")
    path = hp.get("coordinates")
    if kind == "auto":
        kind = "distance" if path else "adaptive"
    if kind == "adaptive":
        return {"adjacency": "adaptive"}
    if not path:
        raise GraphError(f"adjacency '{kind}' needs coordinates (a CSV of node id, lat, lon)")
    coords = read_coordinates(path, nodes)
    graph = distance_graph(coords, sigma_km=hp.get("sigma_km"), threshold=hp.get("threshold", 0.1))
    return {
        "adjacency": kind,
        **graph.record(),
        "coordinates": {
            "file": coords.file,
            "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest(),
            "lat": coords.lat,
            "lon": coords.lon,
        },
    }


def distance_weights(layout: dict[str, Any]) -> np.ndarray | None:
    """The Gaussian-kernel weights [N, N] rebuilt from the layout's recorded coordinates,
    kernel width and threshold; None for a graph without coordinates (adaptive only)."""
    graph = layout.get("graph") or {}
    coords = graph.get("coordinates")
    if not coords:
        return None
    nodes = list(layout["nodes"])
    c = Coordinates(coords["file"], nodes, list(coords["lat"]), list(coords["lon"]))
    return distance_graph(c, sigma_km=graph["sigma_km"], threshold=graph["threshold"]).weights
