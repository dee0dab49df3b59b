"""Bad data (issue 9): each case is handled as documented or refused naming the file and column."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from edgecomp.data import DataConfig, DataError, load_table, prepare
from edgecomp.data.config import config_from_spec
from edgecomp.spec import ModelSpec

WEATHER = Path(__file__).resolve().parents[1] / "examples" / "data"
WEATHER = WEATHER / "nyc_airports_weather_2013_hourly.csv.gz"


def _frame(n: int = 40, start: str = "2024-01-01") -> pd.DataFrame:
    t = pd.date_range(start, periods=n, freq="h")
    i = np.arange(n, dtype=float)
    return pd.DataFrame({"time": t.strftime("%Y-%m-%d %H:%M:%S"), "a": i, "b": 50 + np.sin(i)})


def _csv(df: pd.DataFrame, path: Path) -> Path:
    df.to_csv(path, index=False)
    return path


def _text(tmp_path: Path, name: str, lines: list[str]) -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def _refused(path: Path, *parts: str, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        load_table(path, **kwargs)
    msg = str(info.value)
    assert path.name in msg and "\n" not in msg
    for part in parts:
        assert part in msg, msg
    return msg


CONFIG = DataConfig(input_len=4, horizon=1, split=(0.5, 0.25, 0.25))


# --- 1. gaps -------------------------------------------------------------------------------------


def test_gaps_are_inserted_reported_and_imputed(tmp_path):
    # setup: rows 3 and 10..17 (8 steps, longer than interpolate_limit 4) absent
    df = _frame().drop(index=[3, *range(10, 18)])
    # execute
    ds = prepare(_csv(df, tmp_path / "gap.csv"), CONFIG)
    # assert
    rep = ds.report
    assert rep.rows == 40 and rep.n_gap_steps == 9 and rep.missing == {"a": 9, "b": 9}
    assert rep.gaps == [
        ("2024-01-01T03:00:00", "2024-01-01T03:00:00", 1),
        ("2024-01-01T10:00:00", "2024-01-01T17:00:00", 8),
    ]
    assert ds.imputed["train"] == {"a": 9, "b": 9} and np.isfinite(ds.values).all()
    np.testing.assert_allclose(ds.values[10:18, 0], [10, 11, 12, 13, 13, 13, 13, 13])
    note = next(n for n in ds.notes if n.startswith("gaps longer than interpolate_limit 4"))
    assert "a (8)" in note and "b (8)" in note and "refuses windows missing 3+" in note


def test_short_gaps_give_no_long_gap_note(tmp_path):
    ds = prepare(_csv(_frame().drop(index=[3, 4]), tmp_path / "g.csv"), CONFIG)
    assert ds.report.n_gap_steps == 2
    assert not any("gaps longer" in n for n in ds.notes)


# --- 2. duplicated timestamps --------------------------------------------------------------------


def test_duplicated_timestamp_with_other_values_is_refused(tmp_path):
    df = _frame()
    df.loc[5, "time"] = df.loc[4, "time"]
    _refused(
        _csv(df, tmp_path / "d.csv"),
        "column 'time'",
        "duplicated timestamp 2024-01-01T04:00:00",
        "data rows 5 and 6",
        "different values",
    )


def test_exact_duplicate_rows_are_refused_too(tmp_path):
    df = _frame()
    df = pd.concat([df.iloc[:8], df.iloc[[7]], df.iloc[8:]])
    _refused(_csv(df, tmp_path / "d.csv"), "duplicated timestamp 2024-01-01T07:00:00", "identical")


def test_duplicated_time_id_pair_names_both(tmp_path):
    rows = [f"2024-01-01T0{h}:00:00Z,s{k},{h}" for h in range(6) for k in (1, 2)]
    path = _text(tmp_path, "l.csv", ["time,sensor,v", *rows, "2024-01-01T03:00:00Z,s2,9"])
    _refused(path, "'time', 'sensor'", "(2024-01-01T03:00:00, 's2')", "data row 13")


# --- 3. unordered timestamps ---------------------------------------------------------------------


def test_unordered_rows_are_sorted_with_a_note(tmp_path):
    # setup
    df = _frame()
    shuffled = df.iloc[np.random.default_rng(0).permutation(len(df))]
    # execute
    frame, report = load_table(_csv(shuffled, tmp_path / "u.csv"))
    _, ordered = load_table(_csv(df, tmp_path / "o.csv"))
    # assert
    np.testing.assert_array_equal(frame["a"].to_numpy(), np.arange(40.0))
    assert "rows not in time order (column 'time'): sorted" in report.notes
    assert not any("time order" in n for n in ordered.notes)


# --- 4. unit spikes ------------------------------------------------------------------------------


def _spiky(tmp_path: Path) -> Path:
    df = _frame()
    df.loc[[6, 7], "b"] *= 1000.0  # a sensor reporting in other units for two hours
    df["c"] = 0.0
    df.loc[[2, 30], "c"] = [3.0, 5.0]  # mostly one value (MAD 0): not scored
    return _csv(df, tmp_path / "s.csv")


def test_spikes_are_noted_but_kept_by_default(tmp_path):
    # execute
    ds = prepare(_spiky(tmp_path), CONFIG)
    # assert
    note = next(n for n in ds.notes if n.startswith("possible unit spikes"))
    assert "b (z " in note and "2024-01-01T0" in note
    assert "c (" not in note and "a (" not in note
    assert ds.spikes == {} and ds.values[6, 1] > 1000 and ds.imputed["train"]["b"] == 0
    assert "spike_threshold" not in ds.spec_fields()["data"]


def test_spike_threshold_sets_spikes_missing_and_counts_them(tmp_path):
    # execute
    config = DataConfig(input_len=4, horizon=1, split=(0.5, 0.25, 0.25), spike_threshold=10.0)
    ds = prepare(_spiky(tmp_path), config)
    # assert
    assert ds.spikes == {"a": 0, "b": 2, "c": 0} and ds.imputed["train"]["b"] == 2
    assert ds.values[:, 1].max() < 52 and ds.raw["b"].iloc[6] > 1000
    assert any("values set to missing: b: 2" in n for n in ds.notes)
    assert ds.summary()["spikes"]["b"] == 2
    spec = ModelSpec(arch="lstm", **ds.spec_fields())
    assert config_from_spec(json.loads(json.dumps(spec.to_dict()))).spike_threshold == 10.0


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), "3", True])
def test_spike_threshold_must_be_positive(value):
    with pytest.raises(DataError, match="DataConfig.spike_threshold"):
        DataConfig(input_len=2, horizon=1, spike_threshold=value)


def test_weather_wind_speed_spike_is_noted():
    if not WEATHER.is_file():
        pytest.skip(f"{WEATHER} not found")
    value_cols = ("temp", "dewp", "humid", "wind_dir", "wind_speed", "precip", "pressure", "visib")
    config = DataConfig(input_len=24, horizon=4, id_col="origin", value_cols=value_cols)
    ds = prepare(WEATHER, config)
    note = next(n for n in ds.notes if n.startswith("possible unit spikes"))
    assert "EWR_wind_speed" in note and "1048.36" in note
    assert "precip" not in note and "JFK_wind_speed" not in note


# --- 5. constant columns -------------------------------------------------------------------------


def test_constant_feature_is_named_warned_and_floored(tmp_path):
    df = _frame()
    df["flat"] = 7.5
    with pytest.warns(UserWarning, match="constant in the train split.*flat"):
        ds = prepare(_csv(df, tmp_path / "c.csv"), CONFIG)
    assert "constant in the train split (std floored): flat" in ds.notes
    assert ds.std[2] == pytest.approx(7.5e-6) and np.isfinite(ds.train.x).all()


def test_constant_integer_column_is_skipped_as_a_label_with_a_note(tmp_path):
    df = _frame()
    df["site"] = 12
    frame, report = load_table(_csv(df, tmp_path / "c.csv"))
    assert "site" not in frame.columns
    assert "skipped constant integer (label) columns: site" in report.notes


# --- 6. empty columns ----------------------------------------------------------------------------


def test_empty_column_is_refused(tmp_path):
    df = _frame()
    df["dead"] = np.nan
    _refused(_csv(df, tmp_path / "e.csv"), "1 column(s) empty (no values): ['dead']")


def test_empty_series_in_long_table_is_refused(tmp_path):
    rows = [
        f"2024-01-01T0{h}:00:00Z,{k},{h if k == 's1' else ''}"
        for h in range(6)
        for k in ["s1", "s2"]
    ]
    _refused(_text(tmp_path, "l.csv", ["time,sensor,v", *rows]), "empty (no values): ['s2']")


def test_column_empty_in_the_val_split_is_refused(tmp_path):
    df = _frame()
    df.loc[20:29, "b"] = np.nan
    with pytest.raises(DataError, match=r"e\.csv: 1 column\(s\) with no values.*'b' \(val split\)"):
        prepare(_csv(df, tmp_path / "e.csv"), CONFIG)


# --- 7. mixed types ------------------------------------------------------------------------------


def test_missing_value_markers_are_read_as_missing(tmp_path):
    # setup
    df = _frame().astype({"a": object})
    markers = ["", "NA", "N/A", "n/a", "nan", "null", " NULL ", "-", "None"]
    df.loc[range(2, 2 + len(markers)), "a"] = markers
    # execute
    frame, report = load_table(_csv(df, tmp_path / "m.csv"))
    # assert
    assert frame["a"].isna().sum() == len(markers) and report.missing["a"] == len(markers)
    assert frame["a"].iloc[1] == 1.0 and frame["a"].iloc[20] == 20.0


def test_other_text_in_a_numeric_column_is_refused_naming_row_and_value(tmp_path):
    df = _frame().astype({"a": object})
    df.loc[[5, 9], "a"] = ["ERR", "n.a."]
    _refused(
        _csv(df, tmp_path / "t.csv"),
        "column 'a'",
        "non-numeric value 'ERR'",
        "2024-01-01T05:00:00 (data row 6)",
        "2 such values",
    )


@pytest.mark.parametrize("every_row", [False, True])
def test_decimal_commas_are_refused_with_a_hint(tmp_path, every_row):
    df = _frame().astype({"a": object})
    if every_row:
        df["a"] = [f"{i},5" for i in range(len(df))]
    else:
        df.loc[3, "a"] = "12,5"
    msg = _refused(_csv(df, tmp_path / "dc.csv"), "column 'a'", "decimal comma")
    assert ("'0,5'" if every_row else "'12,5'") in msg


def test_infinite_values_are_refused(tmp_path):
    df = _frame()
    df.loc[4, "b"] = np.inf
    _refused(_csv(df, tmp_path / "inf.csv"), "column 'b'", "infinite value", "data row 5")


# --- 8. time zones -------------------------------------------------------------------------------


def test_mixed_offsets_convert_to_one_utc_series(tmp_path):
    lines = [
        "time,a",
        "2024-06-01T00:00:00Z,0",
        "2024-06-01T03:00:00+02:00,1",
        "2024-06-01T02:00:00+00:00,2",
        "2024-05-31T22:00:00-05:00,3",
    ]
    frame, report = load_table(_text(tmp_path, "tz.csv", lines))
    assert frame.index.tz is None and report.n_gap_steps == 0
    assert list(frame.index.hour) == [0, 1, 2, 3] and list(frame["a"]) == [0, 1, 2, 3]


def test_naive_timestamps_are_taken_as_given(tmp_path):
    frame, _ = load_table(_csv(_frame(start="2024-07-01 09:00"), tmp_path / "n.csv"))
    assert frame.index[0] == pd.Timestamp("2024-07-01 09:00")


def test_naive_and_offset_timestamps_in_one_column_are_refused(tmp_path):
    lines = ["time,a", "2024-06-01T00:00:00Z,0", "2024-06-01T01:00:00,1", "2024-06-01T02:00:00Z,2"]
    _refused(_text(tmp_path, "mix.csv", lines), "column 'time'", "'2024-06-01T01:00:00'", "row 2")


# --- 9. daylight-saving changes ------------------------------------------------------------------


def _local(tmp_path: Path, name: str, start: str, end: str, fmt: str) -> Path:
    t = pd.date_range(start, end, freq="h", tz="Europe/Berlin")
    df = pd.DataFrame({"time": t.strftime(fmt), "a": np.arange(len(t), dtype=float)})
    return _csv(df, tmp_path / name)


def test_naive_local_spring_forward_is_a_reported_gap(tmp_path):
    path = _local(tmp_path, "s.csv", "2024-03-30 12:00", "2024-03-31 12:00", "%Y-%m-%d %H:%M")
    frame, report = load_table(path)
    assert report.n_gap_steps == 1
    assert report.gaps == [("2024-03-31T02:00:00", "2024-03-31T02:00:00", 1)]
    assert np.isnan(frame.loc["2024-03-31 02:00", "a"])


def test_naive_local_fall_back_is_a_refused_duplicate_with_a_hint(tmp_path):
    path = _local(tmp_path, "f.csv", "2024-10-26 12:00", "2024-10-27 12:00", "%Y-%m-%d %H:%M")
    _refused(path, "duplicated timestamp 2024-10-27T02:00:00", "export UTC or timestamps with")


@pytest.mark.parametrize(
    ("start", "end"),
    [("2024-03-30 12:00", "2024-03-31 12:00"), ("2024-10-26 12:00", "2024-10-27 12:00")],
)
def test_local_times_with_offsets_across_dst_are_continuous_utc(tmp_path, start, end):
    path = _local(tmp_path, "o.csv", start, end, "%Y-%m-%dT%H:%M:%S%z")
    frame, report = load_table(path)
    assert report.n_gap_steps == 0 and report.period_s == 3600.0
    np.testing.assert_array_equal(frame["a"].to_numpy(), np.arange(len(frame), dtype=float))
    assert (np.diff(frame.index.asi8) == 3600 * 10**9).all()


def test_no_warnings_on_clean_input(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = prepare(_csv(_frame(), tmp_path / "ok.csv"), CONFIG)
    assert ds.notes == [] and ds.report.notes == []
