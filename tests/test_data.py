"""Tests for edgecomp.data: reading, regular grid, imputation, scaling, windows, splits, errors."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from edgecomp.data import (
    DataConfig,
    DataError,
    Dataset,
    config_from_spec,
    fill_missing,
    load_table,
    prepare,
)
from edgecomp.spec import ModelSpec

ROOT = Path(__file__).resolve().parents[1]
DATA_DIRS = [
    Path(os.environ.get("EDGECOMP_DATA_DIR", ROOT / "data")),
    ROOT / "examples" / "data",
    Path("/work/shared/data"),
]
TRAFFIC = "odot_detector_counts_15min.parquet"
WEATHER = "nyc_airports_weather_2013_hourly.csv"
FINANCE = "sp500_10stocks_daily_returns.csv.gz"


def _wide_frame(n: int = 40, freq: str = "15min", start: str = "2024-01-01") -> pd.DataFrame:
    t = pd.date_range(start, periods=n, freq=freq)
    i = np.arange(n, dtype=float)
    return pd.DataFrame({"time": t.strftime("%Y-%m-%d %H:%M:%S"), "a": i, "b": 2 * i + 1})


def _write(df: pd.DataFrame, path: Path) -> Path:
    if path.name.endswith(".parquet"):
        df.to_parquet(path, index=False)
    else:
        df.to_csv(path, index=False)
    return path


def _long_frame(n: int = 30) -> pd.DataFrame:
    t = pd.date_range("2024-01-01", periods=n, freq="h").strftime("%Y-%m-%dT%H:%M:%SZ")
    rows = []
    for k, sensor in enumerate(["s2", "s1"]):
        for i, ts in enumerate(t):
            rows.append(
                {
                    "timestamp": ts,
                    "sensor": sensor,
                    "site": 7,
                    "year": 2024,
                    "hour": i % 24,
                    "flow": 10.0 * k + i,
                    "speed": 100.0 * k - i,
                }
            )
    return pd.DataFrame(rows)


def _real(name: str) -> Path:
    for folder in DATA_DIRS:
        if (folder / name).is_file():
            return folder / name
    pytest.skip(f"real data file {name} not found in {[str(d) for d in DATA_DIRS]}")


# --- reading -------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".parquet"])
def test_wide_file_loads_as_float_frame_on_grid(tmp_path, suffix):
    # setup
    path = _write(_wide_frame(), tmp_path / f"w{suffix}")
    # execute
    frame, report = load_table(path)
    # assert
    assert report.layout == "wide" and report.time_col == "time"
    assert list(frame.columns) == ["a", "b"] and report.columns == ["a", "b"]
    assert frame.shape == (40, 2) and (frame.dtypes == "float64").all()
    assert frame.index[0] == pd.Timestamp("2024-01-01") and frame.index.tz is None
    np.testing.assert_array_equal(frame["b"].to_numpy(), 2 * np.arange(40) + 1)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_long_file_pivots_to_id_value_features(tmp_path, suffix):
    # setup
    path = _write(_long_frame(), tmp_path / f"l{suffix}")
    # execute
    frame, report = load_table(path)
    # assert: ids sorted, calendar (year, hour) and constant integer label (site) skipped
    assert report.layout == "long" and report.id_col == "sensor"
    assert list(frame.columns) == ["s1_flow", "s1_speed", "s2_flow", "s2_speed"]
    assert report.value_cols == ["flow", "speed"]
    assert any("site" in n for n in report.notes) and any("year, hour" in n for n in report.notes)
    np.testing.assert_array_equal(frame["s1_speed"].to_numpy(), 100.0 - np.arange(30))
    np.testing.assert_array_equal(frame["s2_flow"].to_numpy(), np.arange(30.0))


def test_long_file_with_one_value_column_names_features_by_id(tmp_path):
    # setup
    df = _long_frame().drop(columns=["speed"])
    path = _write(df, tmp_path / "l.csv")
    # execute
    frame, _ = load_table(path)
    # assert
    assert list(frame.columns) == ["s1", "s2"]


def test_explicit_columns_override_detection(tmp_path):
    # setup
    df = _long_frame().rename(columns={"timestamp": "when", "sensor": "dev"})
    path = _write(df, tmp_path / "l.csv")
    # execute
    frame, report = load_table(path, time_col="when", id_col="dev", value_cols=["speed"])
    # assert
    assert list(frame.columns) == ["s1", "s2"] and report.time_col == "when"


def test_text_and_constant_integer_columns_are_skipped_with_a_note(tmp_path):
    # setup
    df = _wide_frame()
    df["unit"] = "veh/h"
    df["site"] = 3
    # execute
    frame, report = load_table(_write(df, tmp_path / "n.csv"))
    # assert
    assert list(frame.columns) == ["a", "b"]
    assert "skipped text columns: unit" in report.notes
    assert "skipped constant integer (label) columns: site" in report.notes


def test_unsorted_rows_are_sorted(tmp_path):
    # setup
    df = _wide_frame()
    shuffled = df.sample(frac=1.0, random_state=0)
    # execute
    ordered, _ = load_table(_write(df, tmp_path / "a.csv"))
    frame, _ = load_table(_write(shuffled, tmp_path / "b.csv"))
    # assert
    assert not shuffled["a"].is_monotonic_increasing
    pd.testing.assert_frame_equal(frame, ordered)


def test_timezones_are_converted_to_naive_utc(tmp_path):
    # setup
    df = pd.DataFrame(
        {
            "time": [
                "2024-01-01T01:00:00+01:00",
                "2024-01-01T02:00:00+01:00",
                "2024-01-01T03:00:00+01:00",
            ],
            "a": [1, 2, 3],
        }
    )
    # execute
    frame, _ = load_table(_write(df, tmp_path / "tz.csv"))
    # assert
    assert frame.index[0] == pd.Timestamp("2024-01-01 00:00") and frame.index.tz is None


# --- grid, period, gaps --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("freq", "period_s", "seasonal"),
    [("15min", 900.0, 96), ("h", 3600.0, 24), ("7min", 420.0, None), ("D", 86400.0, None)],
)
def test_period_and_seasonal_period(tmp_path, freq, period_s, seasonal):
    # setup
    path = _write(_wide_frame(freq=freq, start="2024-01-06"), tmp_path / "p.csv")
    # execute
    _, report = load_table(path)
    # assert
    assert report.period_s == period_s and report.seasonal_period == seasonal


def test_gaps_are_inserted_counted_and_listed(tmp_path):
    # setup: drop rows 5..7 and 20 of a 15-minute series; leave one value missing at row 30
    df = _wide_frame().drop(index=[5, 6, 7, 20])
    df.loc[30, "b"] = np.nan
    # execute
    frame, report = load_table(_write(df, tmp_path / "g.csv"))
    # assert
    assert len(frame) == 40 and report.rows == 40 and report.n_gap_steps == 4
    assert report.gaps == [
        ("2024-01-01T01:15:00", "2024-01-01T01:45:00", 3),
        ("2024-01-01T05:00:00", "2024-01-01T05:00:00", 1),
    ]
    assert report.missing == {"a": 4, "b": 5}
    assert frame.iloc[5:8].isna().all().all() and frame["a"].iloc[8] == 8.0
    assert json.loads(json.dumps(report.to_dict()))["gaps"][1][2] == 1


def test_regularize_false_keeps_rows_but_reports_gaps(tmp_path):
    # setup
    df = _wide_frame().drop(index=[5, 6])
    # execute
    frame, report = load_table(_write(df, tmp_path / "g.csv"), regularize=False)
    # assert
    assert len(frame) == 38 and report.n_gap_steps == 2


def test_business_days_do_not_count_weekends_as_gaps(tmp_path):
    # setup: 6 weeks of weekdays with one weekday (a holiday) missing
    days = pd.bdate_range("2024-01-01", periods=30)
    df = pd.DataFrame({"date": days.strftime("%Y-%m-%d"), "x": np.arange(30.0)}).drop(index=[10])
    # execute
    frame, report = load_table(_write(df, tmp_path / "bd.csv"))
    # assert
    assert len(frame) == 30 and report.n_gap_steps == 1 and report.period_s == 86400.0
    assert report.gaps == [(days[10].isoformat(), days[10].isoformat(), 1)]
    assert "business-day series: weekends not treated as gaps" in report.notes


# --- imputation ----------------------------------------------------------------------------------


def test_fill_missing_interpolates_up_to_limit_then_ffills():
    # setup: leading gap, a 6-step inner gap, a trailing gap
    nan = np.nan
    block = np.array([nan, 1, nan, nan, nan, nan, nan, nan, 8, nan, nan])[:, None]
    # execute
    filled = fill_missing(block, 4)
    # assert
    np.testing.assert_allclose(filled[:, 0], [1, 1, 2, 3, 4, 5, 5, 5, 8, 8, 8])


def test_prepare_imputes_and_counts_per_split(tmp_path):
    # setup: 40 rows, split 20/10/10; a missing in rows 3..4 (train) and 33 (test)
    df = _wide_frame()
    df.loc[[3, 4, 33], "a"] = np.nan
    config = DataConfig(input_len=4, horizon=2, split=(0.5, 0.25, 0.25), interpolate_limit=1)
    # execute
    ds = prepare(_write(df, tmp_path / "i.csv"), config)
    # assert: row 3 interpolated (limit 1), row 4 carried forward from it
    np.testing.assert_allclose(ds.values[2:6, 0], [2, 3, 3, 5])
    assert ds.values[33, 0] == 33.0
    assert ds.imputed == {
        "train": {"a": 2, "b": 0},
        "val": {"a": 0, "b": 0},
        "test": {"a": 1, "b": 0},
    }
    assert np.isnan(ds.raw["a"].iloc[3])


def test_each_split_is_imputed_on_its_own(tmp_path):
    # setup: a gap straddling the train/val boundary at row 20
    df = _wide_frame()
    df.loc[18:21, "a"] = np.nan
    config = DataConfig(input_len=4, horizon=2, split=(0.5, 0.25, 0.25))
    # execute
    ds = prepare(_write(df, tmp_path / "s.csv"), config)
    # assert: train's tail is carried forward from row 17, val's head back filled from row 22
    np.testing.assert_allclose(ds.values[18:22, 0], [17, 17, 22, 22])


# --- scaling -------------------------------------------------------------------------------------


def test_scaler_uses_train_split_only(tmp_path):
    # setup
    df = _wide_frame()
    changed = df.copy()
    changed.loc[20:, ["a", "b"]] *= 100.0
    config = DataConfig(input_len=4, horizon=2, split=(0.5, 0.25, 0.25))
    # execute
    ds = prepare(_write(df, tmp_path / "a.csv"), config)
    ds2 = prepare(_write(changed, tmp_path / "b.csv"), config)
    # assert
    np.testing.assert_allclose(ds.mean, [9.5, 20.0])
    np.testing.assert_allclose(ds.std, np.arange(20.0).std() * np.array([1, 2]))
    np.testing.assert_array_equal(ds2.mean, ds.mean)
    np.testing.assert_array_equal(ds2.std, ds.std)
    assert not np.array_equal(ds2.test.x, ds.test.x)


def test_constant_train_column_warns_and_floors_std(tmp_path):
    # setup
    df = _wide_frame()
    df["c"] = 5.0
    config = DataConfig(input_len=4, horizon=2)
    # execute
    with pytest.warns(UserWarning, match="constant in the train split"):
        ds = prepare(_write(df, tmp_path / "c.csv"), config)
    # assert
    assert ds.std[2] == pytest.approx(5e-6) and np.isfinite(ds.train.x).all()
    assert any("'c'" in n or ": c" in n for n in ds.summary()["notes"])


# --- windows -------------------------------------------------------------------------------------


@pytest.fixture
def windowed(tmp_path) -> Dataset:
    df = _wide_frame(n=60)
    df.loc[25, "a"] = np.nan
    config = DataConfig(input_len=5, horizon=3, stride=2, targets=("b",), split=(0.5, 0.25, 0.25))
    return prepare(_write(df, tmp_path / "win.csv"), config)


def test_window_shapes_and_values(windowed):
    ds = windowed
    # execute
    w = ds.train
    x_raw = ds.raw_inputs("train", imputed=True)
    y_raw = ds.raw_targets("train")
    # assert: shapes, dtypes, and y is the H steps right after x
    assert w.x.shape == (len(w), 5, 2) and w.y.shape == (len(w), 3, 1)
    assert w.x.dtype == np.float32 and w.y.dtype == np.float32
    np.testing.assert_array_equal(w.starts, np.arange(0, 30 - 8 + 1, 2))
    s = w.starts[:, None]
    np.testing.assert_allclose(x_raw[:, :, 0], s + np.arange(5))
    np.testing.assert_allclose(y_raw[:, :, 0], 2 * (s + 5 + np.arange(3)) + 1)
    np.testing.assert_allclose(ds.unscale_targets(w.y), y_raw, rtol=1e-5)
    np.testing.assert_allclose(w.x * ds.std + ds.mean, x_raw, rtol=1e-5, atol=1e-5)


def test_raw_inputs_keep_missing_values_unless_imputed(windowed):
    ds = windowed
    # execute: row 25 (missing "a") lies in the train split, rows 0..29
    gateway = ds.raw_inputs("train")
    filled = ds.raw_inputs("train", imputed=True)
    # assert: NaN exactly where a window covers row 25, and nowhere once imputed
    covers = (ds.train.starts[:, None] + np.arange(5)) == 25
    np.testing.assert_array_equal(np.isnan(gateway[:, :, 0]), covers)
    assert covers.any() and not np.isnan(filled).any()
    assert not np.isnan(gateway[:, :, 1]).any()


def test_no_window_crosses_a_split_boundary(windowed):
    ds = windowed
    L, H = ds.config.input_len, ds.config.horizon  # noqa: N806
    # assert
    assert ds.bounds == {"train": (0, 30), "val": (30, 45), "test": (45, 60)}
    for name, (a, b) in ds.bounds.items():
        starts = ds.split(name).starts
        assert len(starts) > 0
        assert (starts >= a).all() and (starts + L + H <= b).all()
    summary = json.loads(json.dumps(ds.summary()))
    assert summary["windows"] == {"train": 12, "val": 4, "test": 4}
    assert summary["imputed"] == {"train": 1, "val": 0, "test": 0}


def test_spec_fields_make_a_model_spec_and_config_round_trips(windowed):
    ds = windowed
    # execute
    spec = ModelSpec(arch="lstm", **ds.spec_fields())
    config = config_from_spec(json.loads(json.dumps(spec.to_dict())))
    # assert
    assert spec.targets == ["b"] and spec.scaler["mean"] == ds.mean.tolist()
    assert spec.data["file"] == "win.csv" and len(spec.data["sha256"]) == 64
    assert spec.imputation == {"interpolate_limit": 4, "then": "ffill", "max_missing_fraction": 0.5}
    assert config.features == ("a", "b") and config.stride == 2 and config.layout == "wide"
    assert config.split == ds.config.split and config.time_col == "time"
    assert config_from_spec(spec) == config
    again = prepare(ds.report.path, config)
    np.testing.assert_array_equal(again.test.x, ds.test.x)
    np.testing.assert_array_equal(again.test.starts, ds.test.starts)


def test_unknown_split_name_is_refused(windowed):
    with pytest.raises(DataError, match="unknown split 'dev'"):
        windowed.split("dev")


# --- config --------------------------------------------------------------------------------------


def test_config_round_trips_through_json():
    # setup
    config = DataConfig(input_len=8, horizon=2, features=["a", "b"], targets=("b",), layout="wide")
    # execute
    back = DataConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    # assert
    assert back == config and back.features == ("a", "b")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"input_len": 0}, "input_len"),
        ({"horizon": 1.5}, "horizon"),
        ({"stride": True}, "stride"),
        ({"split": (0.5, 0.3, 0.3)}, "split"),
        ({"split": (0.0, 0.5, 0.5)}, "split"),
        ({"interpolate_limit": -1}, "interpolate_limit"),
        ({"max_missing_fraction": 0}, "max_missing_fraction"),
        ({"features": ("a", "a")}, "features"),
        ({"targets": "a"}, "targets"),
        ({"layout": "tall"}, "layout"),
        ({"layout": "wide", "id_col": "x"}, "id_col"),
    ],
)
def test_config_validation_names_the_field(kwargs, field):
    base = {"input_len": 4, "horizon": 2}
    with pytest.raises(DataError, match=f"DataConfig.{field} must be"):
        DataConfig(**{**base, **kwargs})


def test_config_from_dict_refuses_unknown_keys():
    with pytest.raises(DataError, match=r"unknown field\(s\) \['horizn'\]"):
        DataConfig.from_dict({"input_len": 4, "horizn": 2})


# --- bad input -----------------------------------------------------------------------------------


def _bad_time(df):
    df.loc[3, "time"] = "not-a-date"
    return df


def _dup_time(df):
    df.loc[3, "time"] = df.loc[2, "time"]
    return df


def _empty_col(df):
    df["b"] = np.nan
    return df


def _off_grid(df):
    df.loc[3, "time"] = "2024-01-01 00:46:00"
    return df


def _empty_time(df):
    df.loc[3, "time"] = None
    return df


def _two_time_columns(df):
    return df.rename(columns={"time": "when"}).assign(then=lambda d: d["when"])


def _text_value(df):
    df["a"] = df["a"].astype(object)
    df.loc[4, "a"] = "abc"
    return df


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (_bad_time, ["'time'", "'not-a-date'"]),
        (_dup_time, ["'time'", "duplicated timestamp"]),
        (_empty_col, ["'b'", "empty"]),
        (_text_value, ["'a'", "'abc'", "non-numeric"]),
        (_off_grid, ["'time'", "off the regular 900-second grid"]),
        (_empty_time, ["'time'", "empty timestamp", "data row 4"]),
        (_two_time_columns, ["missing time column", "when", "then"]),
    ],
)
def test_bad_table_errors_name_file_and_column(tmp_path, mutate, expected):
    # setup
    path = _write(mutate(_wide_frame()), tmp_path / "bad.csv")
    # execute
    with pytest.raises(DataError) as info:
        load_table(path)
    # assert
    msg = str(info.value)
    assert "bad.csv" in msg and "\n" not in msg
    for part in expected:
        assert part in msg


def test_duplicated_time_id_pair_in_long_format(tmp_path):
    # setup
    df = _long_frame()
    df = pd.concat([df, df.iloc[[5]]])
    # execute / assert
    with pytest.raises(DataError, match=r"long\.csv.*'timestamp', 'sensor'.*duplicated"):
        load_table(_write(df, tmp_path / "long.csv"))


@pytest.mark.parametrize(
    ("config", "pattern"),
    [
        (DataConfig(input_len=40, horizon=5), r"t\.csv: 40 rows, fewer than input_len \+ horizon"),
        (
            DataConfig(input_len=8, horizon=2, split=(0.6, 0.2, 0.2)),
            r"t\.csv: the val split has 8 rows .* needs at least 10",
        ),
        (DataConfig(input_len=4, horizon=1, features=("a", "zz")), r"t\.csv: unknown feature.*zz"),
        (
            DataConfig(input_len=4, horizon=1, features=("a",), targets=("b",)),
            r"t\.csv: unknown target.*'b'",
        ),
        (DataConfig(input_len=4, horizon=1, time_col="ts"), r"t\.csv: time column 'ts' not found"),
    ],
)
def test_prepare_errors_name_file_and_cause(tmp_path, config, pattern):
    path = _write(_wide_frame(), tmp_path / "t.csv")
    with pytest.raises(DataError, match=pattern):
        prepare(path, config)


def test_column_empty_in_one_split_is_refused(tmp_path):
    # setup
    df = _wide_frame()
    df.loc[30:, "b"] = np.nan
    # execute / assert
    with pytest.raises(DataError, match=r"e\.csv: 1 column\(s\) with no values .*'b' \(test"):
        prepare(_write(df, tmp_path / "e.csv"), DataConfig(input_len=2, horizon=1))


def test_all_columns_empty_in_a_split_are_listed_in_one_error(tmp_path):
    # setup
    df = _wide_frame()
    df.loc[30:, "b"] = np.nan
    df.loc[:33, "a"] = np.nan
    # execute / assert
    with pytest.raises(DataError, match=r"2 column\(s\).*'a' \(train and val split\), 'b' \(test"):
        prepare(_write(df, tmp_path / "e.csv"), DataConfig(input_len=2, horizon=1))


@pytest.mark.parametrize(
    ("name", "pattern"), [("x.json", "unsupported file type"), ("gone.csv", "file not found")]
)
def test_unreadable_files_are_refused(tmp_path, name, pattern):
    if name.endswith(".json"):
        (tmp_path / name).write_text("{}")
    with pytest.raises(DataError, match=f"{name}: {pattern}"):
        load_table(tmp_path / name)


# --- real data -----------------------------------------------------------------------------------


def test_traffic_parquet_prepares_22_detectors():
    # execute
    ds = prepare(_real(TRAFFIC), DataConfig(input_len=48, horizon=4))
    # assert
    assert ds.values.shape == (2496, 22) and ds.report.layout == "long"
    assert ds.report.period_s == 900.0 and ds.report.seasonal_period == 96
    assert ds.train.x.shape[1:] == (48, 22) and np.isfinite(ds.train.x).all()
    assert ds.report.id_col == "detector" and "intersection" not in ds.report.value_cols


def test_weather_csv_loads_3_stations_by_9_variables():
    # execute
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing constant in train, no parser warnings
        frame, report = load_table(_real(WEATHER))
    # assert
    assert frame.shape[1] == 27 and report.period_s == 3600.0 and report.seasonal_period == 24
    assert report.id_col == "origin" and "EWR_temp" in frame.columns
    assert not any(c.endswith(("_year", "_month", "_day", "_hour")) for c in frame.columns)


def test_finance_csv_gz_loads_10_stocks_and_next_day_return():
    # execute
    frame, report = load_table(_real(FINANCE))
    # assert
    assert frame.shape[1] == 11 and "next_day_return" in frame.columns
    assert report.layout == "wide" and report.period_s == 86400.0
    assert "business-day series: weekends not treated as gaps" in report.notes
    assert (frame.index.day_of_week < 5).all()
