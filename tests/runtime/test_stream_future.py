"""Stream and gateway with known-future columns and node layouts, on the toy (no torch)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import edgecomp_runtime as ecr
from edgecomp_runtime.calendar import MissingFutureError
from edgecomp_runtime.errors import InputError, InputShapeError
from edgecomp_runtime.serve import Gateway, GatewayConfig
from edgecomp_runtime.stream import StreamError

T0 = 1_700_000_000.0
PERIOD = 900.0
# the toy's three inputs read as two sensors and the lead channel of a declared column "c"
FUTURE = {
    "spec.features": ["c", "a", "c@+2"],
    "spec.future": {"calendar": [], "columns": ["c"], "lead": 2, "features": ["c@+2"]},
}
# the toy's three inputs read as three nodes of one channel, stored in reverse order
LAYOUT = {
    "spec.layout": {
        "nodes": ["n1", "n2", "n3"],
        "channels": ["v"],
        "index": [[2], [1], [0]],
        "globals": [],
    }
}


@pytest.fixture
def future_model(make_artifact):
    return ecr.load(make_artifact(manifest=FUTURE))


def _series(toy, n: int = 14, seed: int = 5) -> np.ndarray:
    """Raw readings [n, 2] of the two sensors (c, a)."""
    rows = toy.window(batch=3, seed=seed).reshape(-1, 3)[:n]
    return rows[:, [2, 0]]


def _ahead(series: np.ndarray, r: int) -> list[float]:
    return series[r + 1 : r + 3, 0].tolist()


def test_stream_with_future_columns_equals_predict(future_model, toy):
    # setup
    series = _series(toy)
    stream = future_model.stream(max_ahead_s=math.inf)
    length = future_model.input_len
    # execute
    out = {}
    for r in range(len(series) - 2):
        forecast = stream.push(T0 + r * PERIOD, series[r], future={"c": _ahead(series, r)})
        if forecast is not None:
            out[r] = forecast
    # assert: one forecast per full window, each equal to predict on the same window
    assert sorted(out) == list(range(length - 1, len(series) - 2))
    assert stream.mode == "windowed" and stream.features == ["c", "a"]
    for r, forecast in out.items():
        window = series[r - length + 1 : r + 1]
        expected = future_model.predict(window, future={"c": _ahead(series, r)})
        np.testing.assert_array_equal(forecast, expected)
        lead = np.concatenate([window[:, :1], series[r + 1 : r + 3, :1]])[2:]
        full = np.concatenate([window, lead], axis=1)  # [c, a, c@+2] built by hand
        np.testing.assert_array_equal(forecast, future_model.predict(full))


def test_push_many_batches_the_due_forecasts_like_predict(future_model, toy):
    # setup
    series = _series(toy, seed=6)
    readings = [
        (T0 + r * PERIOD, series[r], {"c": _ahead(series, r)}) for r in range(len(series) - 2)
    ]
    length = future_model.input_len
    # execute
    results = future_model.stream(max_ahead_s=math.inf).push_many(readings)
    # assert
    rows = range(length - 1, len(series) - 2)
    windows = np.stack([series[r - length + 1 : r + 1] for r in rows])
    ahead = np.stack([_ahead(series, r) for r in rows])
    expected = future_model.predict(windows, future={"c": ahead})
    got = np.stack([results[r].forecast for r in rows])
    np.testing.assert_array_equal(got, expected)


def test_a_due_forecast_without_its_future_values_is_refused_and_the_stream_goes_on(
    future_model, toy
):
    # setup
    series = _series(toy, seed=7)
    stream = future_model.stream(max_ahead_s=math.inf)
    length = future_model.input_len
    for r in range(length - 1):  # not due yet: no future needed
        assert stream.push(T0 + r * PERIOD, series[r]) is None
    # execute
    results = stream.push_many([(T0 + (length - 1) * PERIOD, series[length - 1])])
    later = stream.push(T0 + length * PERIOD, series[length], future={"c": _ahead(series, length)})
    # assert
    assert isinstance(results[0], MissingFutureError) and isinstance(results[0], InputError)
    assert "lacks the known-future column(s) ['c']" in str(results[0])
    assert stream.stats["refused"] == 1 and "['c']" in stream.last_refusal
    assert later is not None and stream.stats["forecasts"] == 1
    with pytest.raises(MissingFutureError, match=r"\['c'\]"):
        stream.push(T0 + (length + 1) * PERIOD, series[length + 1])


@pytest.mark.parametrize(
    ("future", "error"),
    [
        ({"x": [1.0, 2.0]}, r"unknown column\(s\) \['x'\]; the artifact's known-future columns"),
        ({"c": [1.0]}, r"future\['c'\] must be 2 finite numbers"),
        ({"c": [1.0, None]}, r"future\['c'\] must be 2 finite numbers"),
        ([1.0, 2.0], "future must be a dict column -> next 2 values"),
        ({"c": [1.0, 10**400]}, r"future\['c'\] must be 2 finite numbers"),
    ],
)
def test_bad_future_values_refuse_the_reading(future_model, future, error):
    stream = future_model.stream(max_ahead_s=math.inf)
    with pytest.raises(InputError, match=error):
        stream.push(T0, [1.0, 2.0], future=future)
    assert stream.stats["readings"] == 0


def test_a_future_model_cannot_stream_incrementally(future_model):
    with pytest.raises(StreamError, match="known-future columns, given anew"):
        future_model.stream(mode="incremental")


def test_a_future_stream_saves_and_resumes(future_model, toy, tmp_path):
    # setup
    series = _series(toy, seed=8)
    first = future_model.stream(max_ahead_s=math.inf)
    for r in range(4):
        first.push(T0 + r * PERIOD, series[r])
    first.save(tmp_path / "s.npz")
    # execute
    resumed = future_model.stream(resume=tmp_path / "s.npz", max_ahead_s=math.inf)
    forecasts = [
        s.push(T0 + 5 * PERIOD, series[5], future={"c": _ahead(series, 5)})
        for s in (first, resumed)
    ]
    # assert
    np.testing.assert_array_equal(forecasts[0], forecasts[1])


def _message(readings) -> bytes:
    return json.dumps(readings).encode()


def test_gateway_takes_future_values_and_counts_a_reading_without_them(future_model, toy):
    # setup
    series = _series(toy, seed=9)
    gateway = Gateway(future_model.stream(max_ahead_s=math.inf), GatewayConfig(device="site"))
    length = future_model.input_len
    readings = [
        {"t": T0 + r * PERIOD, "values": series[r].tolist(), "future": {"c": _ahead(series, r)}}
        for r in range(length + 2)
    ]
    del readings[length]["future"]  # the second due forecast lacks its future values
    # execute
    forecasts, errors = gateway.handle(_message(readings))
    # assert
    assert len(forecasts) == 2 and len(errors) == 1 and "['c']" in errors[0]
    assert gateway.counters["rejected"]["missing_future"] == 1
    window = series[length - 1 - length + 1 : length]
    expected = future_model.predict(window, future={"c": _ahead(series, length - 1)})
    np.testing.assert_allclose(forecasts[0]["forecast"], expected, rtol=1e-6)
    code, body = gateway.routes()["/manifest"]()
    assert code == 200 and body["readings"]["future_columns"] == ["c"]


@pytest.fixture
def graph_model(make_artifact):
    return ecr.load(make_artifact(manifest=LAYOUT))


def _node_rows(toy, n: int = 12) -> np.ndarray:
    """Raw readings [n, N=3, C=1] in node order (n1, n2, n3)."""
    rows = toy.window(batch=2, seed=11).reshape(-1, 3)[:n]
    return rows[:, ::-1, None].copy()  # node k holds feature 2 - k


@pytest.mark.parametrize("form", ["grid", "nested", "nodes", "flat"])
def test_graph_stream_takes_node_readings_and_equals_predict(graph_model, toy, form):
    # setup
    nodes = _node_rows(toy)
    length = graph_model.input_len

    def reading(r: int):
        grid = nodes[r]
        if form == "grid":
            return grid
        if form == "nested":
            return grid.tolist()
        if form == "nodes":
            return {name: grid[k].tolist() for k, name in enumerate(["n1", "n2", "n3"])}
        return grid[::-1, 0]  # the features in model order: n3, n2, n1

    stream = graph_model.stream(max_ahead_s=math.inf)
    # execute
    out = [stream.push(T0 + r * PERIOD, reading(r)) for r in range(len(nodes))]
    # assert
    for r in range(length - 1, len(nodes)):
        expected = graph_model.predict(nodes[r - length + 1 : r + 1])  # [L, N, C]
        np.testing.assert_array_equal(out[r], expected)
    assert all(f is None for f in out[: length - 1])


def test_graph_stream_refuses_a_reading_of_another_node_count(graph_model):
    stream = graph_model.stream(max_ahead_s=math.inf)
    with pytest.raises(InputShapeError, match=r"reading: 4 nodes, the artifact has 3 nodes"):
        stream.push(T0, np.ones((4, 1)))
    with pytest.raises(InputShapeError, match="2 channels per node, the artifact has 1"):
        stream.push(T0, [[1.0, 2.0]] * 3)
    with pytest.raises(InputError, match=r"unknown feature\(s\) or node\(s\) \['n9'\]"):
        stream.push(T0, {"n9": [1.0]})
    with pytest.raises(InputShapeError, match="node 'n1' has 2 values, the artifact has 1"):
        stream.push(T0, {"n1": [1.0, 2.0]})
    with pytest.raises(InputShapeError, match="2 channels per node, the artifact has 1"):
        stream.push(T0, [[1.0], [1.0, 2.0], [3.0]])
    with pytest.raises(InputError, match="feature 'n2/v' is True, not a number"):
        stream.push(T0, [[1.0], [True], [3.0]])
    with pytest.raises(InputError, match="'n3/v' is an integer of 1329 bits, beyond the float32"):
        stream.push(T0, [[1.0], [2.0], [10**400]])
    with pytest.raises(InputError, match="node 'n2', channel 0 is infinite"):
        stream.push(T0, np.array([[1.0], [np.inf], [3.0]]))
    assert stream.stats["readings"] == 0


def test_graph_gateway_reads_node_values_and_missing_nodes(graph_model, toy):
    # setup: node n2 missing at one step (imputed as predict does)
    nodes = _node_rows(toy)
    gateway = Gateway(graph_model.stream(max_ahead_s=math.inf), GatewayConfig(device="g"))
    readings = [{"t": T0 + r * PERIOD, "values": nodes[r].tolist()} for r in range(6)]
    readings[3]["values"] = {"n1": [nodes[3, 0, 0]], "n3": [nodes[3, 2, 0]]}
    # execute
    forecasts, errors = gateway.handle(_message(readings))
    # assert
    window = nodes[:6].copy()
    window[3, 1, 0] = np.nan
    assert errors == [] and len(forecasts) == 1
    np.testing.assert_allclose(forecasts[0]["forecast"], graph_model.predict(window), rtol=1e-6)
    assert gateway.routes()["/manifest"]()[1]["readings"]["nodes"] == ["n1", "n2", "n3"]
