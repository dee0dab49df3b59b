"""Adjacency of a sensor network from station coordinates, and the graph convolution supports.

``distance_graph`` builds the thresholded Gaussian kernel of DCRNN (Li et al., ICLR 2018) and
STGCN (Yu et al., IJCAI 2018): ``w_ij = exp(-(d_ij / sigma)^2)`` on the great-circle distance
``d_ij`` in km, set to 0 below ``threshold``; ``sigma`` defaults to the standard deviation of the
pairwise distances. The diagonal is 0; a node left with no edge gets a self-loop and a note, so
every row of the transition matrix is defined. ``supports`` turns adjacencies into the dense
matrices that the graph convolution multiplies by: the diffusion powers ``P^k`` of the random-walk
transition ``P = D^-1 W`` (both directions for a directed graph), or the Chebyshev polynomials
``T_k(L~)`` of the scaled normalized Laplacian. Everything here is numpy, computed once at build
time; the model carries the result as a constant.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "EARTH_RADIUS_KM",
    "GRAPH_CONVS",
    "Coordinates",
    "DistanceGraph",
    "GraphError",
    "distance_graph",
    "great_circle_km",
    "read_coordinates",
    "supports",
]

EARTH_RADIUS_KM = 6371.0088  # mean Earth radius (IUGG)
GRAPH_CONVS = ("diffusion", "chebyshev")
_ID_NAMES = ("node", "id", "node_id", "location", "station", "sensor", "detector", "origin")
_LAT_NAMES = ("lat", "latitude")
_LON_NAMES = ("lon", "lng", "long", "longitude")


class GraphError(ValueError):
    """Bad coordinates or graph settings; the one-line message names the file and the node."""


@dataclass(frozen=True)
class Coordinates:
    """Latitude and longitude (degrees) of each node, in the order of ``nodes``.

    Attributes:
        file: The coordinates file read (its name only, for the manifest).
        nodes: Node ids, in model order.
        lat: Latitude per node, degrees in [-90, 90].
        lon: Longitude per node, degrees in [-180, 180].
    """

    file: str
    nodes: list[str]
    lat: list[float]
    lon: list[float]


@dataclass(frozen=True)
class DistanceGraph:
    """A thresholded Gaussian-kernel adjacency and how it was built.

    Attributes:
        weights: float64 [N, N], symmetric, diagonal 0 except self-loops of isolated nodes.
        sigma_km: Kernel width used.
        threshold: Weights below it were set to 0.
        notes: Isolated nodes given a self-loop, one line each.
    """

    weights: np.ndarray
    sigma_km: float
    threshold: float
    notes: list[str] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        """JSON-ready description: kernel, width, threshold, edge count, isolated nodes."""
        off = self.weights - np.diag(np.diag(self.weights))
        return {
            "kernel": "gaussian",
            "distance": "great-circle km",
            "sigma_km": self.sigma_km,
            "threshold": self.threshold,
            "edges": int(np.count_nonzero(off)),
            "notes": list(self.notes),
        }


def read_coordinates(path: str | Path, nodes: list[str]) -> Coordinates:
    """Read ``path`` (CSV: node id, latitude, longitude; header names detected) for ``nodes``.

    Raises:
        GraphError: Unreadable file, no id/lat/lon columns, a node of ``nodes`` missing, a node
            not in ``nodes``, a repeated node, or a non-numeric or out-of-range coordinate; the
            message names the file and the node.
    """
    path = Path(path)
    rows = _read_rows(path)
    found: dict[str, tuple[float, float]] = {}
    known = {n.strip(): n for n in nodes}  # ids compare without surrounding spaces
    for text, lat_text, lon_text in rows:
        if text not in known:
            raise GraphError(
                f"{path}: node '{text}' is not a node of the data ({len(nodes)} nodes)"
            )
        node = known[text]
        if node in found:
            raise GraphError(f"{path}: node '{node}' appears twice")
        found[node] = (
            _coordinate(lat_text, "latitude", 90.0, path, node),
            _coordinate(lon_text, "longitude", 180.0, path, node),
        )
    missing = [n for n in nodes if n not in found]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise GraphError(f"{path}: no coordinates for node '{missing[0]}'{more}")
    lat, lon = zip(*(found[n] for n in nodes), strict=True)
    return Coordinates(path.name, list(nodes), list(lat), list(lon))


def _read_rows(path: Path) -> list[tuple[str, str, str]]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            table = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise GraphError(f"{path}: cannot read coordinates: {exc}") from None
    if not table:
        raise GraphError(f"{path}: empty coordinates file")
    header = [h.strip().lower() for h in table[0]]
    cols = [_column(header, names, path, what) for names, what in _COLUMNS]
    out = []
    for line, row in enumerate(table[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < len(header):
            raise GraphError(f"{path}: line {line} has {len(row)} fields, expected {len(header)}")
        out.append(tuple(row[c].strip() for c in cols))
    return out


_COLUMNS = ((_ID_NAMES, "node id"), (_LAT_NAMES, "latitude"), (_LON_NAMES, "longitude"))


def _column(header: list[str], names: tuple[str, ...], path: Path, what: str) -> int:
    for name in names:
        if name in header:
            return header.index(name)
    raise GraphError(f"{path}: no {what} column; expected one of {list(names)}, got {header}")


def _coordinate(text: str, what: str, bound: float, path: Path, node: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise GraphError(f"{path}: node '{node}': {what} '{text}' is not a number") from None
    if not math.isfinite(value) or abs(value) > bound:
        raise GraphError(f"{path}: node '{node}': {what} {text} is outside [-{bound:g}, {bound:g}]")
    return value


def great_circle_km(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Pairwise haversine distances [N, N] in km between points given in degrees."""
    phi, lam = np.radians(np.asarray(lat, float)), np.radians(np.asarray(lon, float))
    dphi = phi[:, None] - phi[None, :]
    dlam = lam[:, None] - lam[None, :]
    h = np.sin(dphi / 2) ** 2 + np.cos(phi)[:, None] * np.cos(phi)[None, :] * np.sin(dlam / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def distance_graph(
    coords: Coordinates, *, sigma_km: float | None = None, threshold: float = 0.1
) -> DistanceGraph:
    """Thresholded Gaussian kernel on great-circle distance (see the module docstring).

    Args:
        coords: Node coordinates.
        sigma_km: Kernel width in km; None: the std of the pairwise distances.
        threshold: Weights below this are dropped, in [0, 1).

    Raises:
        GraphError: A bad ``sigma_km`` or ``threshold``.
    """
    if not (isinstance(threshold, int | float) and 0 <= threshold < 1):
        raise GraphError(f"graph threshold must be a number in [0, 1), got {threshold!r}")
    dist = great_circle_km(np.array(coords.lat), np.array(coords.lon))
    n = len(coords.nodes)
    if sigma_km is None:
        off = dist[~np.eye(n, dtype=bool)]
        sigma_km = float(off.std()) if off.size and off.std() > 0 else 1.0
    if not (isinstance(sigma_km, int | float) and math.isfinite(sigma_km) and sigma_km > 0):
        raise GraphError(f"graph sigma_km must be a positive number, got {sigma_km!r}")
    weights = np.exp(-np.square(dist / sigma_km))
    weights[weights < threshold] = 0.0
    np.fill_diagonal(weights, 0.0)
    notes = []
    for i in np.flatnonzero(weights.sum(axis=1) == 0):
        weights[i, i] = 1.0
        notes.append(
            f"{coords.file}: node '{coords.nodes[i]}' has no neighbour within the threshold "
            f"{threshold:g} (sigma {sigma_km:.4g} km): given a self-loop"
        )
    return DistanceGraph(weights, float(sigma_km), float(threshold), notes)


def supports(adjacency: np.ndarray, conv: str, order: int) -> list[np.ndarray]:
    """The dense matrices a graph convolution of ``order`` K multiplies node features by.

    ``diffusion``: ``P^1..P^K`` with ``P = D^-1 W`` (rows sum to 1), and ``Q^1..Q^K`` with
    ``Q = D^-1 W^T`` when ``W`` is not symmetric. ``chebyshev``: ``T_1..T_K`` of
    ``L~ = -D^-1/2 W D^-1/2`` (the normalized Laplacian scaled with lambda_max = 2). The
    identity term (order 0) is left out: the convolution adds it itself.
    """
    if conv not in GRAPH_CONVS:
        raise GraphError(f"unknown graph convolution '{conv}'. Available: {list(GRAPH_CONVS)}")
    w = np.asarray(adjacency, dtype=np.float64)
    if conv == "chebyshev":
        d = w.sum(axis=1)
        inv_sqrt = np.where(d > 0, 1.0 / np.sqrt(np.where(d > 0, d, 1.0)), 0.0)
        scaled = -(inv_sqrt[:, None] * w * inv_sqrt[None, :])
        return _chebyshev(scaled, order)
    out = _powers(_transition(w), order)
    if not np.allclose(w, w.T):
        out += _powers(_transition(w.T), order)
    return out


def _transition(w: np.ndarray) -> np.ndarray:
    d = w.sum(axis=1, keepdims=True)
    return np.divide(w, d, out=np.zeros_like(w), where=d > 0)


def _powers(p: np.ndarray, order: int) -> list[np.ndarray]:
    out = [p]
    for _ in range(order - 1):
        out.append(out[-1] @ p)
    return out


def _chebyshev(scaled: np.ndarray, order: int) -> list[np.ndarray]:
    out = [scaled]
    previous = np.eye(len(scaled))
    for _ in range(order - 1):
        previous, current = out[-1], 2 * scaled @ out[-1] - previous
        out.append(current)
    return out
