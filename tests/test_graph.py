"""edgecomp.graph: distance adjacency (hand-checked), supports, coordinates refusals, layouts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgecomp.graph import (
    Coordinates,
    GraphError,
    distance_graph,
    great_circle_km,
    node_layout,
    read_coordinates,
    supports,
    target_channels,
)

DEG_KM = 6371.0088 * math.pi / 180  # one degree of the equator


def _coords(tmp_path, text: str):
    path = tmp_path / "coords.csv"
    path.write_text(text)
    return path


def test_three_nodes_hand_checked(tmp_path):
    # setup: a, b, c on the equator at longitudes 0, 1 and 3 degrees
    path = _coords(tmp_path, "node,lat,lon\na,0,0\nb,0,1\nc,0,3\n")
    # execute
    coords = read_coordinates(path, ["a", "b", "c"])
    graph = distance_graph(coords, sigma_km=DEG_KM, threshold=0.01)
    # assert: w = exp(-(d / sigma)^2): a-b 1 degree, b-c 2, a-c 3 (exp(-9) < 0.01: dropped)
    e1, e4 = math.exp(-1), math.exp(-4)
    expected = np.array([[0, e1, 0], [e1, 0, e4], [0, e4, 0]])
    np.testing.assert_allclose(graph.weights, expected, rtol=1e-9, atol=1e-12)
    assert graph.record()["edges"] == 4 and graph.notes == []
    p = supports(graph.weights, "diffusion", 1)
    assert len(p) == 1  # symmetric: one direction
    np.testing.assert_allclose(p[0][1], [e1 / (e1 + e4), 0, e4 / (e1 + e4)])
    np.testing.assert_allclose(p[0][0], [0, 1, 0])


def test_distance_is_great_circle():
    d = great_circle_km(np.array([0.0, 0.0, 90.0]), np.array([0.0, 90.0, 0.0]))
    np.testing.assert_allclose(d[0, 1], 90 * DEG_KM, rtol=1e-9)
    np.testing.assert_allclose(d[0, 2], 90 * DEG_KM, rtol=1e-9)
    assert d[1, 1] == 0


def test_default_sigma_is_std_of_distances():
    coords = Coordinates("c.csv", ["a", "b", "c"], [0.0, 0.0, 0.0], [0.0, 1.0, 3.0])
    graph = distance_graph(coords)
    off = np.array([1, 3, 1, 2, 3, 2]) * DEG_KM
    assert graph.sigma_km == pytest.approx(off.std(), rel=1e-9)


def test_isolated_node_gets_self_loop_and_note():
    coords = Coordinates("c.csv", ["a", "b", "far"], [0.0, 0.0, 0.0], [0.0, 1.0, 60.0])
    graph = distance_graph(coords, sigma_km=DEG_KM, threshold=0.01)
    assert graph.weights[2, 2] == 1.0 and graph.weights[2, :2].sum() == 0
    assert len(graph.notes) == 1 and "'far'" in graph.notes[0] and "self-loop" in graph.notes[0]
    p = supports(graph.weights, "diffusion", 2)
    np.testing.assert_allclose(p[1].sum(axis=1), 1.0)  # every row of P^2 still sums to 1


def test_chebyshev_recursion():
    w = np.array([[0, 1.0, 0], [1, 0, 1], [0, 1, 0]])
    t1, t2, t3 = supports(w, "chebyshev", 3)
    d = 1 / np.sqrt(w.sum(1))
    lap = -(d[:, None] * w * d[None, :])
    np.testing.assert_allclose(t1, lap)
    np.testing.assert_allclose(t2, 2 * lap @ lap - np.eye(3))
    np.testing.assert_allclose(t3, 2 * lap @ t2 - lap)


def test_directed_diffusion_has_both_directions():
    w = np.array([[0, 1.0], [0.5, 0]])
    w[0, 1] = 2.0
    assert len(supports(w, "diffusion", 2)) == 4


@pytest.mark.parametrize(
    ("text", "nodes", "message"),
    [
        ("node,lat,lon\na,0,0\n", ["a", "b"], "no coordinates for node 'b'"),
        ("node,lat,lon\na,0,0\nb,0,1\nz,1,1\n", ["a", "b"], "node 'z' is not a node"),
        ("node,lat,lon\na,0,0\nb,north,1\n", ["a", "b"], "node 'b': latitude 'north' is not"),
        ("node,lat,lon\na,0,0\nb,0,181\n", ["a", "b"], "node 'b': longitude 181 is outside"),
        ("node,lat,lon\na,95,0\nb,0,1\n", ["a", "b"], "node 'a': latitude 95 is outside"),
        ("node,lat,lon\na,0,0\na,0,1\n", ["a"], "node 'a' appears twice"),
        ("name,x,y\na,0,0\n", ["a"], "no node id column"),
    ],
)
def test_bad_coordinates_name_file_and_node(tmp_path, text, nodes, message):
    path = _coords(tmp_path, text)
    with pytest.raises(GraphError) as err:
        read_coordinates(path, nodes)
    assert message in str(err.value) and str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_kernel_settings():
    coords = Coordinates("c.csv", ["a", "b"], [0.0, 0.0], [0.0, 1.0])
    with pytest.raises(GraphError, match="threshold"):
        distance_graph(coords, threshold=1.5)
    with pytest.raises(GraphError, match="sigma_km"):
        distance_graph(coords, sigma_km=-1.0)
    with pytest.raises(GraphError, match="Available"):
        supports(np.eye(2), "spectral", 1)


def test_layout_of_long_data_with_channels():
    features = ["EWR_temp", "EWR_wind", "JFK_temp", "JFK_wind"]
    layout = node_layout(features, value_cols=["temp", "wind"], id_col="origin")
    assert layout["nodes"] == ["EWR", "JFK"] and layout["channels"] == ["temp", "wind"]
    assert layout["index"] == [[0, 1], [2, 3]] and layout["globals"] == []
    channels, select = target_channels(layout, [0, 2])
    assert channels == [0] and select is None
    channels, select = target_channels(layout, [2])
    assert channels == [0] and select == [1]


def test_layout_of_wide_data_with_globals():
    layout = node_layout(["s1", "temp", "s2"], globals_=["temp"])
    assert layout["nodes"] == ["s1", "s2"] and layout["index"] == [[0], [2]]
    assert layout["globals"] == [1]
    with pytest.raises(GraphError, match="belong to no node"):
        target_channels(layout, [1])
    with pytest.raises(GraphError, match="not features"):
        node_layout(["s1"], globals_=["rain"])


def test_cli_arch_choices_come_from_the_registry():
    from click.testing import CliRunner

    from edgecomp.cli import main
    from edgecomp.models import MODELS

    result = CliRunner().invoke(main, ["train", "--help"])
    assert result.exit_code == 0
    assert "stgnn" in MODELS and all(name in result.output for name in MODELS)


def test_graph_model_refuses_bad_coordinates_naming_file_and_node(tmp_path):
    from dataclasses import replace

    from edgecomp.models import complete_spec
    from helpers.testing import tiny_spec

    path = _coords(tmp_path, "node,lat,lon\nf0,45.5,-73.6\nf1,45.5,-73.5\nf2,45.6,-73.6\n")
    spec = tiny_spec("stgnn", n_features=4)
    spec = replace(spec, hparams={"coordinates": str(path)}, data={"layout": "wide"})
    with pytest.raises(GraphError, match=r"coords\.csv: no coordinates for node 'f3'"):
        complete_spec(spec)


def test_node_ids_match_without_surrounding_spaces(tmp_path):
    path = _coords(tmp_path, "node,lat,lon\nstation a,0,0\nb,0,1\n")
    coords = read_coordinates(path, ["station a ", "b"])
    assert coords.nodes == ["station a ", "b"] and coords.lon == [0.0, 1.0]
