"""A target that is missing through the test split leaves no test window (or no value there);
the refusal said "try --drop-sparse FRACTION" (or "--exclude"), which keeps (or drops) a column
named by --targets, so it could not help. It now says so and what does; an unnamed sparse column
keeps the --drop-sparse hint."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from edgecomp.data import DataConfig, DataError, prepare


def _file(tmp_path, died=0.86, n=600):
    t = pd.date_range("2024-01-01", periods=n, freq="h")
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"time": t, "temp": 20 + rng.normal(size=n), "dewp": 5 + rng.normal(size=n)})
    df.loc[int(n * died) :, "temp"] = np.nan  # the sensor died
    path = tmp_path / "died.csv"
    df.to_csv(path, index=False)
    return path


def test_a_named_target_missing_in_the_test_split_gets_a_hint_that_works(tmp_path):
    # setup
    path = _file(tmp_path)
    config = DataConfig(input_len=24, horizon=4, targets=("temp",))
    # execute / assert
    with pytest.raises(DataError) as info:
        prepare(path, config)
    message = str(info.value)
    assert message.startswith(f"{path}: test split: ")
    assert "--drop-sparse FRACTION" not in message
    assert message.endswith(
        "no window left; 'temp' is named by --targets/--features, so --drop-sparse keeps it: "
        "choose a --split whose splits hold its values, or a file where it is observed"
    )
    # what it says works: a split that ends where the sensor did
    ds = prepare(
        path, DataConfig(input_len=24, horizon=4, targets=("temp",), split=(0.6, 0.15, 0.25))
    )
    assert len(ds.test.x) > 0


def test_an_unnamed_sparse_column_keeps_the_drop_sparse_hint(tmp_path):
    # setup
    path = _file(tmp_path)
    config = DataConfig(input_len=24, horizon=4, targets=("dewp",))
    # execute / assert
    with pytest.raises(DataError, match=r"no window left; try --drop-sparse FRACTION$"):
        prepare(path, config)


def test_a_named_target_with_no_value_in_the_test_split_gets_the_same_hint(tmp_path):
    # setup: the sensor died before the test split began
    path = _file(tmp_path, died=0.8)
    config = DataConfig(input_len=24, horizon=4, targets=("temp",))
    # execute / assert
    with pytest.raises(DataError) as info:
        prepare(path, config)
    assert str(info.value) == (
        f"{path}: 1 column(s) with no values in a split, cannot impute: 'temp' (test split); "
        "'temp' is named by --targets/--features: choose a --split whose splits hold its "
        "values, or a file where it is observed"
    )
