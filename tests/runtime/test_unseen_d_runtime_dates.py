"""A window CSV whose timestamps are written NN/NN/YYYY (a European logger's 13/01/2024 22:00,
a US one's 1/13/2024 10:00 PM) reads on the gateway as the compiler reads the training file:
day first when a first number exceeds 12, month first when a second one does, and, in a window
too short to tell (every date 01/02/2024), in the order the training file used
(``spec.data.date_order``). Before, ``edgecomp-runtime predict --input`` refused any such date."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from edgecomp_runtime.errors import InputError
from edgecomp_runtime.tabular import csv_window, read_csv


def _csv(tmp_path, stamps, name="window.csv"):
    lines = ["Date,a"] + [f"{s},{i}" for i, s in enumerate(stamps)]
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("stamps", "expected"),
    [
        (["12/01/2024 23:00", "13/01/2024 00:00"], [(2024, 1, 12, 23), (2024, 1, 13, 0)]),
        (["1/12/2024 11:00 PM", "1/13/2024 12:00 AM"], [(2024, 1, 12, 23), (2024, 1, 13, 0)]),
        (
            ["31.12.2023 23:30:00", "01.01.2024 00:30:00"],
            [(2023, 12, 31, 23, 30), (2024, 1, 1, 0, 30)],
        ),
        (["2024/1/5 07:00", "2024/01/05 08:00"], [(2024, 1, 5, 7), (2024, 1, 5, 8)]),
        (
            ["2024-01-05 08:00+0100", "2024-01-05T09:00:00+01:00"],
            [(2024, 1, 5, 7), (2024, 1, 5, 8)],
        ),
    ],
)
def test_dates_read_as_the_compiler_reads_them(tmp_path, stamps, expected):
    # setup
    path = _csv(tmp_path, stamps)
    # execute
    _, times = read_csv(path, ["a"], times=True)
    # assert
    assert times == [datetime(*e) for e in expected]


@pytest.mark.parametrize(("order", "month", "day"), [("day-first", 2, 1), ("month-first", 1, 2)])
def test_a_window_that_cannot_tell_reads_in_the_training_files_order(tmp_path, order, month, day):
    # setup: 01/02/2024 is 1 February day first, 2 January month first
    path = _csv(tmp_path, [f"01/02/2024 {h:02d}:00" for h in range(3)])
    # execute
    _, times = read_csv(path, ["a"], times=True, date_order=order)
    # assert
    assert times == [datetime(2024, month, day, h) for h in range(3)]


def test_the_files_own_dates_outrank_the_recorded_order(tmp_path):
    # setup
    path = _csv(tmp_path, ["12/01/2024 23:00", "13/01/2024 00:00"])
    # execute
    _, times = read_csv(path, ["a"], times=True, date_order="month-first")
    # assert
    assert times[1] == datetime(2024, 1, 13)


@pytest.mark.parametrize(
    ("stamps", "match"),
    [
        (["01/02/2024 00:00", "01/02/2024 01:00"], "could be day/month or month/day"),
        (["13/14/2024 00:00", "01/02/2024 01:00"], "both numbers exceed 12"),
        (["01/02/2024 00:00", "2024-02-01 01:00"], "row 2: '2024-02-01 01:00' is not a NN/NN"),
        (["31/02/2024 00:00", "13/02/2024 01:00"], "row 1: cannot parse '31/02/2024 00:00'"),
        (["13/02/2024 13:00 PM", "13/02/2024 01:00"], "row 1: cannot parse"),
    ],
)
def test_dates_that_cannot_be_read_are_refused_naming_file_and_column(tmp_path, stamps, match):
    # setup
    path = _csv(tmp_path, stamps)
    # execute / assert
    with pytest.raises(InputError, match=match) as info:
        read_csv(path, ["a"], times=True)
    assert str(path) in str(info.value) and "column 'Date'" in str(info.value)


def test_csv_window_passes_the_artifacts_date_order(tmp_path):
    # setup: a calendar model's spec, trained on day-first dates
    spec = {
        "features": ["a", "dow_sin@+1", "dow_cos@+1"],
        "input_len": 3,
        "horizon": 1,
        "future": {
            "calendar": ["dow"],
            "columns": [],
            "lead": 1,
            "features": ["dow_sin@+1", "dow_cos@+1"],
        },
        "data": {"date_order": "day-first"},
    }
    path = _csv(tmp_path, [f"01/02/2024 {h:02d}:00" for h in range(3)])
    # execute
    values, extra = csv_window(path, spec)
    # assert
    np.testing.assert_array_equal(values[:, 0], [0, 1, 2])
    assert extra["times"] == [datetime(2024, 2, 1, h) for h in range(3)]


@pytest.mark.parametrize(
    "stamps",
    [["2024-01-05T06:00:00Z", "2024-01-05 07:00"], ["2024-01-05 06:00", "2024-01-05T08:00+0100"]],
)
def test_naive_and_offset_timestamps_mixed_are_refused_as_the_compiler_does(tmp_path, stamps):
    # setup: before, the naive one was taken as UTC beside converted ones
    path = _csv(tmp_path, stamps)
    # execute / assert
    with pytest.raises(
        InputError, match=r"column 'Date': mixes timestamps with a UTC offset \(row "
    ):
        read_csv(path, ["a"], times=True)


def test_offsets_alone_or_unix_times_beside_them_read(tmp_path):
    path = _csv(tmp_path, ["2024-01-05T06:00:00Z", "1704438000", "2024-01-05T08:00+01:00"])
    _, times = read_csv(path, ["a"], times=True)
    assert times == [datetime(2024, 1, 5, 6), datetime(2024, 1, 5, 7), datetime(2024, 1, 5, 7)]


def test_a_long_window_for_a_long_trained_model_says_give_it_wide(tmp_path):
    # setup
    spec = {"features": ["AAPL", "IBM"], "input_len": 2, "horizon": 1,
            "data": {"layout": "long", "id_col": "symbol"}}  # fmt: skip
    path = tmp_path / "long.csv"
    path.write_text("date,symbol,ret\n2024-01-02,AAPL,1\n2024-01-02,IBM,2\n")
    # execute / assert
    with pytest.raises(InputError) as info:
        csv_window(path, spec)
    assert str(info.value).endswith(
        "; the model was trained on a long table (a row per 'symbol' and time): give the window "
        "wide, a column per feature"
    )
