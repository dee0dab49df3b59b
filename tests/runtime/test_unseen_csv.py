"""A window CSV on the gateway reads as the compiler reads the training file: ';' or tab
delimited with decimal commas, Windows-1252 or UTF-8 with a byte-order mark, Unix times in
milliseconds. Before, each was refused (or, for the BOM, lost the time column's name)."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from edgecomp_runtime.errors import InputError
from edgecomp_runtime.tabular import read_csv

FEATURES = ["Séminaire °C", "b"]
VALUES = np.array([[1.5, 2.0], [-3.25, 4.0], [5.0, np.nan]])
TIMES = [datetime(2024, 4, 18, h) for h in range(3)]
STAMPS = ["2024-04-18T00:00:00", "2024-04-18T01:00:00", "2024-04-18T02:00:00"]


def _write(tmp_path, sep, encoding, cells):
    lines = [sep.join(["time", *FEATURES])]
    lines += [sep.join([t, *row]) for t, row in zip(STAMPS, cells, strict=True)]
    path = tmp_path / "window.csv"
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


@pytest.mark.parametrize(
    ("sep", "encoding", "cells"),
    [
        (";", "utf-8", [["1,5", "2"], ["-3,25", "4"], ["5", ""]]),
        ("\t", "utf-8", [["1,5", "2"], ["-3,25", "4"], ["5", ""]]),
        (";", "utf-8", [["1.5", "2"], ["-3.25", "4"], ["5", "NA"]]),
        (",", "cp1252", [["1.5", "2"], ["-3.25", "4"], ["5", ""]]),
        (",", "utf-8-sig", [["1.5", "2"], ["-3.25", "4"], ["5", ""]]),
    ],
)
def test_a_window_csv_reads_in_the_dialects_the_compiler_reads(tmp_path, sep, encoding, cells):
    # setup
    path = _write(tmp_path, sep, encoding, cells)
    # execute
    values, stamps = read_csv(path, FEATURES, times=True)
    # assert
    np.testing.assert_array_equal(values, VALUES)
    assert stamps == TIMES


@pytest.mark.parametrize("scale", [1, 1_000, 1_000_000, 1_000_000_000])
def test_unix_times_in_any_unit_read_as_the_same_times(tmp_path, scale):
    # setup
    seconds = [int((t - datetime(1970, 1, 1)).total_seconds()) for t in TIMES]
    lines = ["time,Séminaire °C,b"] + [f"{s * scale},1,2" for s in seconds]
    path = tmp_path / "epoch.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    # execute
    _, stamps = read_csv(path, FEATURES, times=True)
    # assert
    assert stamps == TIMES


def test_an_infinite_unix_time_is_refused_naming_the_row(tmp_path):
    # setup
    path = tmp_path / "inf.csv"
    path.write_text("time,Séminaire °C,b\n1713398400,1,2\ninf,1,2\n", encoding="utf-8")
    # execute / assert
    with pytest.raises(InputError, match=r"column 'time', row 2: cannot parse 'inf'"):
        read_csv(path, FEATURES, times=True)


def test_a_comma_in_a_comma_delimited_file_still_splits_cells(tmp_path):
    # setup: here "1,5" is two cells, as before
    path = tmp_path / "plain.csv"
    path.write_text("Séminaire °C,b\n1,5\n2,6\n", encoding="utf-8")
    # execute
    values, _ = read_csv(path, FEATURES)
    # assert
    np.testing.assert_array_equal(values, [[1.0, 5.0], [2.0, 6.0]])


@pytest.mark.parametrize("dtype", ["Int64", "Float64"])
def test_a_dataframe_with_pandas_missing_values_predicts_as_nan(make_artifact, toy, dtype):
    pd = pytest.importorskip("pandas")
    import edgecomp_runtime as ecr

    # setup: a nullable column (pd.NA marks the missing reading), as read_parquet may give it
    model = ecr.load(make_artifact())
    window = np.round(toy.window(seed=3))
    frame = pd.DataFrame(window, columns=list(toy.features)).astype({"b": dtype})
    frame.loc[2, "b"] = pd.NA
    expected = window.copy()
    expected[2, 1] = np.nan
    # execute
    got = model.predict(frame)
    # assert: what the float window with NaN gives (was InputDtypeError 'dtype object')
    np.testing.assert_array_equal(got, model.predict(expected))


def test_a_loggers_date_and_time_columns_give_the_window_its_times(tmp_path):
    # setup: "Date;Time" as the logger writes them (the date alone repeats)
    lines = ["Date;Time;Séminaire °C;b"]
    lines += [f"2024-04-18;{t.hour:02d}:00;1,5;2" for t in TIMES]
    path = tmp_path / "logger.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    # execute
    values, stamps = read_csv(path, FEATURES, times=True)
    # assert: each row's clock time, not midnight three times (wrong calendar inputs)
    assert stamps == TIMES
    np.testing.assert_array_equal(values, [[1.5, 2.0]] * 3)


def test_a_daily_windows_clock_column_is_not_its_time(tmp_path):
    # setup: one row a day, a column of sunrise times
    lines = ["date,sunrise,Séminaire °C,b"]
    lines += [f"2024-04-{d},06:1{d - 18},1,2" for d in (18, 19, 20)]
    path = tmp_path / "daily.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    # execute
    _, stamps = read_csv(path, FEATURES, times=True)
    # assert
    assert stamps == [datetime(2024, 4, d) for d in (18, 19, 20)]
