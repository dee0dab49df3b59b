"""Shapes of real files that are refused, now with what to do: a long table whose series column
has a name edgecomp does not know ('ticker'), a CSV with a trailing summary row, timestamps with
time zone names (EST), and a table with the dates across its header (one row per station, as
the BIXI departures file). Before, the first said "is the clock time elsewhere?" and the others
named the cell only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from edgecomp.data import DataError, load_table

DAYS = pd.date_range("2024-01-01", periods=30, freq="D")


def _long(tmp_path, id_name):
    rows = [(d.date().isoformat(), s, float(i + k)) for i, d in enumerate(DAYS) for k, s in
            enumerate(["AAPL", "IBM", "KO"])]  # fmt: skip
    path = tmp_path / "long.csv"
    pd.DataFrame(rows, columns=["date", id_name, "ret"]).to_csv(path, index=False)
    return path


def test_a_long_table_with_an_unknown_id_name_hints_at_id_col(tmp_path):
    # setup
    path = _long(tmp_path, "ticker")
    # execute / assert
    with pytest.raises(DataError) as info:
        load_table(path)
    message = str(info.value)
    assert message.endswith(
        "a long (tidy) table with one row per series and time? pass --id-col ticker"
    )
    assert "clock time" not in message
    frame, report = load_table(path, id_col="ticker")  # what the hint says works
    assert list(frame.columns) == ["AAPL", "IBM", "KO"] and report.layout == "long"


def test_real_duplicates_get_no_id_hint(tmp_path):
    # setup: the text column does not tell the repeated rows apart
    path = tmp_path / "dup.csv"
    df = pd.DataFrame({"date": DAYS.strftime("%Y-%m-%d"), "site": "north", "v": np.arange(30.0)})
    pd.concat([df, df.iloc[[4]]]).to_csv(path, index=False)
    # execute / assert
    with pytest.raises(DataError, match="duplicated timestamp") as info:
        load_table(path)
    assert "--id-col" not in str(info.value)


def test_a_trailing_summary_row_is_named(tmp_path):
    # setup
    path = tmp_path / "s.csv"
    df = pd.DataFrame({"time": DAYS.strftime("%Y-%m-%d"), "v": np.arange(30.0)})
    df.loc[len(df)] = ["Total", df.v.sum()]
    df.to_csv(path, index=False)
    # execute / assert
    with pytest.raises(DataError) as info:
        load_table(path)
    assert str(info.value) == (
        f"{path}: column 'time': cannot parse 'Total' (data row 31; 1 unparsable); it is the "
        "last row: a summary (total) row? delete it"
    )


@pytest.mark.parametrize("zone", ["EST", "CEST", "(PDT)", "Europe/Paris"])
def test_time_zone_names_are_named(tmp_path, zone):
    # setup
    path = tmp_path / "z.csv"
    stamps = [f"{d.date()} 07:00 {zone}" for d in DAYS]
    pd.DataFrame({"time": stamps, "v": np.arange(30.0)}).to_csv(path, index=False)
    # execute / assert
    with pytest.raises(DataError, match=r"time zone names are not read: export UTC or UTC offsets"):
        load_table(path)


def test_a_table_with_dates_across_its_header_says_transpose(tmp_path):
    # setup: one row per station, one column per day
    path = tmp_path / "t.csv"
    df = pd.DataFrame(np.ones((3, 30)), columns=DAYS.strftime("%Y-%m-%d"))
    df.insert(0, "location", ["a", "b", "c"])
    df.to_csv(path, index=False)
    # execute / assert
    with pytest.raises(
        DataError,
        match=r"30 column names are timestamps: one row per series .* transpose it",
    ):
        load_table(path)


@pytest.mark.parametrize("freq", ["D", "h"])
def test_spreadsheet_serial_dates_are_refused_not_read_as_seconds(tmp_path, freq):
    # setup: days since 1899-12-30, as a spreadsheet exports unformatted date cells; before,
    # daily ones read as a 1-second grid on 1970-01-01
    t = pd.date_range("2023-01-01", periods=60, freq=freq)
    serial = ((t - pd.Timestamp("1899-12-30")) / pd.Timedelta(days=1)).to_numpy().round(8)
    path = tmp_path / "x.csv"
    pd.DataFrame({"Date": serial, "v": np.arange(60.0)}).to_csv(path, index=False)
    # execute / assert
    with pytest.raises(DataError) as info:
        load_table(path)
    message = str(info.value)
    assert message.startswith(f"{path}: column 'Date': numbers 44927 to ")
    assert "spreadsheet serial dates (days since 1899-12-30: 44927 is 2023-01-01 00:00)?" in message


def test_small_step_counters_still_read_as_seconds(tmp_path):
    # setup: rows numbered 0, 1, 2, ... (and a counter that starts past 20000 but ends past 80000)
    path, later = tmp_path / "n.csv", tmp_path / "m.csv"
    pd.DataFrame({"time": np.arange(60), "v": np.arange(60.0)}).to_csv(path, index=False)
    pd.DataFrame({"time": np.arange(60) * 1000 + 30_000, "v": 1.0 + np.arange(60)}).to_csv(
        later, index=False
    )
    # execute
    (_, a), (_, b) = load_table(path), load_table(later)
    # assert
    assert (a.period_s, b.period_s) == (1.0, 1000.0)
