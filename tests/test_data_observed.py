"""Observed-target mask and windows the runtime would refuse (issue 16 item 1, issue 17 item 3)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from edgecomp.data import DataConfig, DataError, Windows, prepare
from edgecomp_runtime.errors import MissingValueError
from edgecomp_runtime.preprocess import impute_window


def _frame(n: int = 120) -> pd.DataFrame:
    t = pd.date_range("2024-01-01", periods=n, freq="h")
    i = np.arange(n, dtype=float)
    return pd.DataFrame({"time": t.strftime("%Y-%m-%d %H:%M:%S"), "a": np.sin(i), "b": i % 7})


def _csv(df: pd.DataFrame, path: Path) -> Path:
    df.to_csv(path, index=False)
    return path


def test_y_observed_is_false_exactly_where_a_target_was_imputed(tmp_path):
    # setup: one missing target value at row 10 (train split)
    df = _frame()
    df.loc[10, "a"] = np.nan
    # execute
    ds = prepare(_csv(df, tmp_path / "m.csv"), DataConfig(input_len=4, horizon=3))
    # assert: the window starting at row 6 (inputs 6..9) has row 10 as its first target step
    w = ds.train
    assert w.y_observed.shape == w.y.shape and w.y_observed.dtype == bool
    row = int(np.flatnonzero(w.starts == 6)[0])
    assert not w.y_observed[row, 0, 0]
    assert w.y_observed[row, 0, 1]  # column b observed
    assert int((~w.y_observed).sum()) == 3  # row 10 is a target step of 3 windows
    assert ds.val.y_observed.all() and ds.test.y_observed.all()
    assert ds.observed_targets("train") is w.y_observed


def test_y_observed_survives_take_and_with_scaler(tmp_path):
    # setup
    df = _frame()
    df.loc[10, "a"] = np.nan
    ds = prepare(_csv(df, tmp_path / "m.csv"), DataConfig(input_len=4, horizon=3))
    # execute
    rescaled = ds.with_scaler(ds.mean + 1.0, ds.std * 2.0)
    part = ds.train.take(ds.train.starts >= 5)
    # assert
    np.testing.assert_array_equal(rescaled.train.y_observed, ds.train.y_observed)
    np.testing.assert_array_equal(part.y_observed, ds.train.y_observed[ds.train.starts >= 5])
    assert part.y_observed.sum() < part.y_observed.size


def test_windows_default_mask_is_all_observed_and_shape_is_checked():
    # setup
    x, y = np.zeros((2, 3, 1), np.float32), np.zeros((2, 2, 1), np.float32)
    # execute / assert
    assert Windows(x, y, np.arange(2)).y_observed.all()
    with pytest.raises(ValueError, match="y_observed has shape"):
        Windows(x, y, np.arange(2), np.ones((2, 1, 1), bool))


def test_spike_removed_by_threshold_is_not_observed(tmp_path):
    # setup: a unit spike in column b
    df = _frame()
    df.loc[20, "b"] = 1e6
    config = DataConfig(input_len=4, horizon=2, spike_threshold=10.0)
    # execute
    ds = prepare(_csv(df, tmp_path / "s.csv"), config)
    # assert
    assert not ds.observed[20, 1]
    assert (~ds.train.y_observed[:, :, 1]).sum() == 2


def test_window_the_runtime_refuses_is_neither_trained_on_nor_scored(tmp_path):
    # setup: column b misses 3 of 4 steps at rows 40..42 (train split: rows 0..83)
    df = _frame()
    df.loc[40:42, "b"] = np.nan
    config = DataConfig(input_len=4, horizon=2, max_missing_fraction=0.5)
    # execute
    ds = prepare(_csv(df, tmp_path / "r.csv"), config)
    # assert: the same windows through the runtime's own rule
    all_starts = np.arange(0, 84 - 4 - 2 + 1)
    refused = []
    for s in all_starts:
        window = ds.raw.to_numpy()[s : s + 4][None]
        try:
            impute_window(window, ds.imputation, features=ds.features)
        except MissingValueError:
            refused.append(int(s))
    assert refused == [39, 40]  # 3 of 4 missing; 2 of 4 (rows 38, 41) is allowed
    assert not set(refused) & set(ds.train.starts.tolist())
    assert len(ds.train) == len(all_starts) - 2
    assert ds.left_out["train"] == {
        "windows": 2,
        "of": len(all_starts),
        "why": "the runtime refuses them: a column misses more than max_missing_fraction",
        "columns": {"b": 2},
    }
    assert ds.left_out["test"]["windows"] == 0
    assert ds.summary()["left_out"]["train"]["windows"] == 2
    assert any("train split: 2 of" in n for n in ds.notes)


def test_split_whose_every_window_is_refused_is_an_error(tmp_path):
    # setup: column b missing through the whole test split but one value
    df = _frame()
    df.loc[103:, "b"] = np.nan
    # execute / assert
    with pytest.raises(DataError, match=r"test split: 13 of 13 windows left out.*no window left"):
        prepare(_csv(df, tmp_path / "t.csv"), DataConfig(input_len=4, horizon=2))
