"""A graph artifact (stgnn, 22 traffic detectors, calendar inputs) streamed from [N, C] readings:
the same forecasts as ``predict`` on [L, N, C] windows. Needs the compiler (torch) to build it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from edgecomp_runtime import load
from edgecomp_runtime.errors import InputShapeError

DATA = Path(__file__).resolve().parents[2] / "examples" / "data"
L, H = 8, 2


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    torch = pytest.importorskip("torch", reason="the compiler (torch) builds the graph artifact")

    from edgecomp.data import DataConfig, prepare
    from edgecomp.models import build_model, complete_spec, resolve_hparams
    from edgecomp.pipeline import BuildConfig, build
    from edgecomp.spec import Model, ModelSpec

    torch.set_num_threads(1)
    config = DataConfig(
        input_len=L, horizon=H, id_col="detector", value_cols=("total",), calendar=("hour",)
    )
    dataset = prepare(DATA / "odot_detector_counts_15min.parquet", config)
    hparams = resolve_hparams("stgnn", {"channels": 4})
    spec = complete_spec(ModelSpec(arch="stgnn", hparams=hparams, **dataset.spec_fields()))
    torch.manual_seed(0)
    model = Model(module=build_model(spec).eval(), spec=spec, source="traffic")
    out = tmp_path_factory.mktemp("graph") / "g.edgepkg"
    return load(build(model, dataset, BuildConfig(precision="fp32"), out).path), dataset


def _node_series(model, dataset, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(raw readings [n, N, C=1] in layout node order, their times [n])."""
    start = int(dataset.test.starts[0])
    layout = model.spec["layout"]
    index = np.asarray(layout["index"])  # [N, C] feature positions
    values = dataset.values[start : start + n]
    times = dataset.raw.index[start : start + n].to_numpy()
    return values[:, index], times


def test_graph_stream_equals_predict_on_node_windows(graph):
    # setup
    model, dataset = graph
    nodes, times = _node_series(model, dataset, 2 * L)
    n_nodes = len(model.spec["layout"]["nodes"])
    stream = model.stream(max_ahead_s=math.inf)
    # execute
    seconds = times.astype("datetime64[s]").astype(np.int64)
    out = [stream.push(float(t), reading) for t, reading in zip(seconds, nodes, strict=True)]
    # assert
    assert nodes.shape[1:] == (n_nodes, 1) == (22, 1)
    windows = np.stack([nodes[r - L + 1 : r + 1] for r in range(L - 1, 2 * L)])  # [B, L, N, C]
    window_times = np.stack([times[r - L + 1 : r + 1] for r in range(L - 1, 2 * L)])
    expected = model.predict(windows, times=window_times)
    for k, r in enumerate(range(L - 1, 2 * L)):
        one = model.predict(windows[k], times=window_times[k])
        np.testing.assert_array_equal(out[r], one)
    np.testing.assert_allclose(np.stack(out[L - 1 :]), expected, rtol=1e-5, atol=1e-4)


def test_graph_stream_refuses_another_node_count_naming_both(graph):
    model, _ = graph
    stream = model.stream(max_ahead_s=math.inf)
    with pytest.raises(InputShapeError, match=r"reading: 21 nodes, the artifact has 22 nodes"):
        stream.push(1_700_000_000, np.ones((21, 1)))
    with pytest.raises(InputShapeError, match=r"window: 21 nodes, the artifact has 22 nodes"):
        model.predict(np.ones((L, 21, 1)), times=np.arange(L) * 900.0)
