"""Calibration windows: capped, spread over the whole training time range, hashed stably."""

from __future__ import annotations

import numpy as np
import pytest

from edgecomp.data import prepare
from edgecomp.pipeline import BuildError, calibration_set, calibration_windows


@pytest.fixture(scope="module")
def dataset(traffic_path, traffic_config):
    return prepare(traffic_path, traffic_config)


def test_calibration_is_capped_and_spans_the_training_range(dataset):
    # execute
    calib = calibration_set(dataset, 50)
    # assert
    starts, train = calib.starts, dataset.train.starts
    assert len(calib.windows) == len(starts) <= 50
    assert len(calib.windows) >= 45  # only duplicates after rounding are dropped
    assert starts[0] == train[0] and starts[-1] == train[-1]
    gaps = np.diff(starts)
    assert gaps.max() <= 2 * (train[-1] - train[0]) / 49  # evenly spread, not the first days
    assert np.all(gaps > 0)
    record = calib.record()
    assert record["span_fraction"] > 0.95 and record["n_windows"] == len(starts)


def test_calibration_windows_are_the_training_windows_at_those_starts(dataset):
    # execute
    calib = calibration_set(dataset, 20)
    # assert
    index = np.searchsorted(dataset.train.starts, calib.starts)
    assert np.array_equal(calib.windows, dataset.train.x[index])
    assert np.array_equal(calibration_windows(dataset, 20), calib.windows)


def test_calibration_hash_is_stable_and_depends_on_the_set(dataset):
    # execute
    first, again = calibration_set(dataset, 30), calibration_set(dataset, 30)
    other = calibration_set(dataset, 31)
    # assert
    assert first.sha256 == again.sha256 and len(first.sha256) == 64
    assert first.sha256 != other.sha256


def test_cap_larger_than_the_split_takes_every_window(dataset):
    # execute
    calib = calibration_set(dataset, 10**9)
    # assert
    assert len(calib.windows) == len(dataset.train)


def test_bad_cap_is_refused(dataset):
    with pytest.raises(BuildError, match="at least 1"):
        calibration_set(dataset, 0)


def test_int8_manifest_records_the_calibration_hash(tmp_path, traffic_checkpoints, traffic_path):
    # setup
    from edgecomp.frontend import load_model
    from edgecomp.pipeline import BuildConfig, build
    from edgecomp.workflow import dataset_for

    model = load_model(traffic_checkpoints["tcn"])
    data = dataset_for(model.spec, traffic_path)
    # execute
    result = build(model, data, BuildConfig(calibration_windows=40), tmp_path / "a.edgepkg")
    # assert
    recorded = result.manifest["recipe"]["lowering"]["calibration"]
    assert recorded["sha256"] == calibration_set(data, 40).sha256
    assert recorded["limit"] == 40 and recorded["n_windows"] <= 40
