"""Node windows [L, N, C] / [B, L, N, C] onto the model's features (numpy only, no torch)."""

from __future__ import annotations

import numpy as np
import pytest

from edgecomp_runtime.errors import InputShapeError
from edgecomp_runtime.layout import flatten_nodes

L = 4
# 3 nodes x 2 channels, features stored channel major (a wide table) to exercise the scatter
LAYOUT = {
    "nodes": ["a", "b", "c"],
    "channels": ["x", "y"],
    "index": [[0, 3], [1, 4], [2, 5]],
    "globals": [],
}


def test_node_window_is_scattered_to_feature_order():
    # setup: value 10 n + c at (node n, channel c)
    window = np.tile((10 * np.arange(3)[:, None] + np.arange(2)[None, :]), (L, 1, 1))
    # execute
    flat = flatten_nodes(window.astype(float), LAYOUT, L)
    # assert: feature f holds node f % 3, channel f // 3
    assert flat.shape == (L, 6)
    np.testing.assert_array_equal(flat[0], [0, 10, 20, 1, 11, 21])


def test_batched_node_window():
    window = np.random.default_rng(0).normal(size=(5, L, 3, 2))
    flat = flatten_nodes(window, LAYOUT, L)
    assert flat.shape == (5, L, 6)
    np.testing.assert_array_equal(flat[:, :, 3], window[:, :, 0, 1])


def test_flat_windows_and_no_layout_pass_through():
    flat = np.zeros((L, 6))
    batch = np.zeros((2, L, 6))
    assert flatten_nodes(flat, LAYOUT, L) is flat
    assert flatten_nodes(batch, LAYOUT, L) is batch
    nodes = np.zeros((L, 3, 2))
    assert flatten_nodes(nodes, None, L) is nodes


def test_node_major_layout_is_a_reshape():
    layout = {"nodes": ["a", "b"], "channels": ["x"], "index": [[0], [1]], "globals": []}
    window = np.arange(2 * L, dtype=float).reshape(L, 2, 1)
    np.testing.assert_array_equal(flatten_nodes(window, layout, L), window.reshape(L, 2))


@pytest.mark.parametrize("shape", [(L, 4, 2), (7, L, 2, 2)])
def test_wrong_node_count_is_refused_naming_both(shape):
    with pytest.raises(InputShapeError) as err:
        flatten_nodes(np.zeros(shape), LAYOUT, L)
    message = str(err.value)
    assert f"{shape[-2]} nodes, the artifact has 3 nodes" in message and "\n" not in message


def test_node_window_refused_when_globals_are_needed():
    layout = {**LAYOUT, "index": [[0, 1], [2, 3], [4, 5]], "globals": [6]}
    with pytest.raises(InputShapeError, match="1 global feature"):
        flatten_nodes(np.zeros((L, 3, 2)), layout, L)
