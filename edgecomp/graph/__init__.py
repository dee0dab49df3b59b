"""Graphs of sensor networks: adjacency from coordinates, node layouts of the input features."""

from edgecomp.graph.adjacency import (
    EARTH_RADIUS_KM,
    GRAPH_CONVS,
    Coordinates,
    DistanceGraph,
    GraphError,
    distance_graph,
    great_circle_km,
    read_coordinates,
    supports,
)
from edgecomp.graph.layout import (
    ADJACENCIES,
    attach_layout,
    check_layout,
    distance_weights,
    graph_record,
    node_layout,
    target_channels,
)

__all__ = [
    "ADJACENCIES",
    "EARTH_RADIUS_KM",
    "GRAPH_CONVS",
    "Coordinates",
    "DistanceGraph",
    "GraphError",
    "attach_layout",
    "check_layout",
    "distance_graph",
    "distance_weights",
    "graph_record",
    "great_circle_km",
    "node_layout",
    "read_coordinates",
    "supports",
    "target_channels",
]
