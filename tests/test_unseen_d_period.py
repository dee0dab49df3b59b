"""A model scored on a file of another sampling period (an hourly model given 30-minute data in
``edgecomp bench --data``, ``build``, ``report``) read each window as half the span it learned
and printed its accuracy, -5 % MAE in the run that found it, with no warning. The period a model
was trained at now travels in the DataConfig rebuilt from its spec, and another one is refused."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from edgecomp.data import DataConfig, DataError, config_from_spec, prepare


def _file(tmp_path, freq, name):
    t = pd.date_range("2024-01-01", periods=400, freq=freq)
    rng = np.random.default_rng(0)
    path = tmp_path / name
    pd.DataFrame({"time": t, "v": rng.normal(size=400)}).to_csv(path, index=False)
    return path


def _spec(tmp_path):
    ds = prepare(_file(tmp_path, "h", "hourly.csv"), DataConfig(input_len=24, horizon=4))
    return {"arch": "x", **ds.spec_fields()}


def test_a_file_of_another_period_is_refused_for_a_models_spec(tmp_path):
    # setup
    config = config_from_spec(_spec(tmp_path))
    other = _file(tmp_path, "30min", "half.csv")
    # execute / assert
    assert config.period_s == 3600.0
    with pytest.raises(DataError) as info:
        prepare(other, config)
    assert str(info.value) == (
        f"{other}: sampled every 1800 s, the model every 3600 s: its windows would span other "
        "lengths of time than the model learned; resample the file to 3600-second steps (or "
        "train a model on it)"
    )


def test_a_file_of_the_same_period_reads_and_the_config_round_trips(tmp_path):
    # setup
    config = config_from_spec(_spec(tmp_path))
    same = _file(tmp_path, "h", "other_hours.csv")
    # execute
    ds = prepare(same, config)
    # assert
    assert ds.report.period_s == 3600.0
    assert DataConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), "1h", True])
def test_a_bad_period_is_refused_naming_the_field(bad):
    with pytest.raises(DataError, match="DataConfig.period_s must be > 0 or None"):
        DataConfig(input_len=2, horizon=1, period_s=bad)
