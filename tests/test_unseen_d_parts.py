"""A table with its time in year, month, day (and hour) columns and no timestamp column (the NYC
weather file without time_hour) reads with a time built from them, in the compiler and in the
runtime's CSV input; before, both refused it for a missing time column. Local times built so
repeat an hour at a DST change and are refused with the DST hint, as naive timestamps are."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from edgecomp.data import DataError, load_table
from edgecomp_runtime.errors import InputError
from edgecomp_runtime.tabular import read_csv


def _parts(tmp_path, stamps, name="p.csv", case=str.lower):
    t = pd.DatetimeIndex(stamps)
    df = pd.DataFrame({"year": t.year, "month": t.month, "day": t.day, "hour": t.hour})
    df.columns = [case(c) for c in df.columns]
    df["temp"] = np.arange(len(t), dtype=float)
    path = tmp_path / name
    df.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("case", [str.lower, str.title, str.upper])
def test_year_month_day_hour_columns_give_the_time(tmp_path, case):
    # setup
    stamps = pd.date_range("2013-01-01 01:00", periods=50, freq="h")
    path = _parts(tmp_path, stamps, case=case)
    # execute
    frame, report = load_table(path)
    values, times = read_csv(path, ["temp"], times=True)
    # assert
    assert list(frame.index) == list(stamps) and report.columns == ["temp"]
    assert report.period_s == 3600.0
    parts = ", ".join(case(p) for p in ("year", "month", "day", "hour"))
    assert f"time: built from the columns {parts} (taken as UTC)" in report.notes
    assert times == list(stamps.to_pydatetime()) and values[-1, 0] == 49


def test_local_times_repeating_an_hour_at_dst_get_the_dst_hint(tmp_path):
    # setup: New York local time, 3 November 2013: 01:00 twice
    utc = pd.date_range("2013-11-03 03:00", periods=6, freq="h", tz="UTC")
    local = utc.tz_convert("America/New_York").tz_localize(None)
    path = _parts(tmp_path, local)
    # execute / assert
    with pytest.raises(DataError, match="duplicated timestamp 2013-11-03T01:00:00 .*DST change"):
        load_table(path)


def test_parts_that_give_no_date_are_refused_naming_the_row(tmp_path):
    # setup
    path = tmp_path / "bad.csv"
    path.write_text("year,month,day,temp\n2013,2,27,1\n2013,2,28,2\n2013,2,30,3\n")
    # execute / assert
    with pytest.raises(DataError) as info:
        load_table(path)
    assert str(info.value) == (
        f"{path}: no time column, and columns year, month, day give no date at data row 3 "
        "(year 2013, month 2, day 30; 1 such rows)"
    )
    with pytest.raises(
        InputError, match=r"give no date at row 3 \(year '2013', month '2', day '30'\)"
    ):
        read_csv(path, ["temp"], times=True)


def test_a_named_time_column_wins_over_the_parts(tmp_path):
    # setup: the weather file's shape: parts in local time, time_hour in UTC
    path = tmp_path / "both.csv"
    rows = [f"2013,1,1,{h},{h + 4},2013-01-01T{h + 5:02d}:00:00Z" for h in (1, 2, 3)]
    path.write_text("year,month,day,hour,temp,time_hour\n" + "\n".join(rows) + "\n")
    # execute
    frame, _ = load_table(path)
    _, times = read_csv(path, ["temp"], times=True)
    # assert
    assert frame.index[0] == pd.Timestamp("2013-01-01 06:00") and times[0] == datetime(
        2013, 1, 1, 6
    )


def test_a_time_column_of_clock_times_before_its_date_column_is_joined(tmp_path):
    # setup: "Time" comes first; before, pandas dated the clock times today (a different date
    # each day the command ran) and the repeats were refused with a hint to --id-col Date
    t = pd.date_range("2024-01-01 07:00", periods=200, freq="15min")
    path = tmp_path / "td.csv"
    df = pd.DataFrame({"Time": t.strftime("%H:%M:%S"), "Date": t.strftime("%Y-%m-%d")})
    df.assign(v=np.arange(200.0)).to_csv(path, index=False)
    # execute
    frame, report = load_table(path)
    _, times = read_csv(path, ["v"], times=True)
    # assert
    assert list(frame.index) == list(t) and report.period_s == 900.0
    assert "time: dates in 'Date' joined with the clock times in 'Time'" in report.notes
    assert times == list(t.to_pydatetime())


def test_clock_times_with_no_date_are_refused(tmp_path):
    # setup
    t = pd.date_range("2024-01-01", periods=50, freq="15min")
    path = tmp_path / "c.csv"
    pd.DataFrame({"time": t.strftime("%H:%M"), "v": np.arange(50.0)}).to_csv(path, index=False)
    # execute / assert
    with pytest.raises(DataError) as info:
        load_table(path)
    assert str(info.value) == (
        f"{path}: column 'time' holds clock times with no date ('00:00'); give the date too (in "
        "the column or in a column of dates beside it), or pass --time-col"
    )


def test_a_datetime_typed_column_wins_over_the_parts(tmp_path):
    # setup: a Parquet file with a typed UTC timestamp 'ts' and local-time parts
    utc = pd.date_range("2013-01-01 06:00", periods=30, freq="h")
    local = utc - pd.Timedelta(hours=5)
    df = pd.DataFrame({"year": local.year, "month": local.month, "day": local.day,
                       "hour": local.hour, "ts": utc, "temp": np.arange(30.0)})  # fmt: skip
    path = tmp_path / "typed.parquet"
    df.to_parquet(path)
    # execute
    frame, report = load_table(path)
    # assert
    assert report.time_col == "ts" and frame.index[0] == utc[0]
    assert not any(n.startswith("time: built") for n in report.notes)
