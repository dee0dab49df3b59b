"""Monthly, quarterly and yearly files (month starts or month ends) are refused by name, with
what to do: a calendar month is 28 to 31 days, and every step here (windows, calendar, stream
slots) assumes one fixed period. Before, the message spoke of a "2.6784e+06-second grid" and
said to resample. Weekly data (a fixed 7 days) still reads."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from edgecomp.data import DataError, load_table


def _file(tmp_path, freq, n=40, fmt="%Y-%m-%d"):
    t = pd.date_range("2015-01-01", periods=n, freq=freq)
    path = tmp_path / f"sales_{freq}.csv"
    pd.DataFrame({"month": t.strftime(fmt), "sales": np.arange(n, dtype=float)}).to_csv(
        path, index=False
    )
    return path


@pytest.mark.parametrize(
    ("freq", "name", "season"),
    [("MS", "monthly", " --season 12"), ("ME", "monthly", " --season 12"),
     ("QS", "quarterly", " --season 4"), ("YE", "yearly", "")],
)  # fmt: skip
def test_calendar_month_steps_are_refused_by_name(tmp_path, freq, name, season):
    # setup
    path = _file(tmp_path, freq)
    # execute / assert
    with pytest.raises(DataError) as info:
        load_table(path, time_col="month")
    message = str(info.value)
    assert message.startswith(f"{path}: column 'month': {name} data")
    assert "is not supported" in message and "daily or weekly series" in message
    assert message.endswith(f"--calendar off{season}")


def test_monthly_with_a_missing_month_is_refused_as_monthly(tmp_path):
    # setup
    path = _file(tmp_path, "MS")
    df = pd.read_csv(path)
    df.drop(index=[5]).to_csv(path, index=False)
    # execute / assert
    with pytest.raises(DataError, match="monthly data"):
        load_table(path, time_col="month")


def test_the_suggested_workaround_reads(tmp_path):
    # setup: the rows numbered, as the message says
    path = _file(tmp_path, "MS")
    df = pd.read_csv(path).assign(month=range(40))
    df.to_csv(path, index=False)
    # execute
    frame, report = load_table(path, time_col="month")
    # assert
    assert report.period_s == 1.0 and len(frame) == 40


def test_weekly_and_irregular_daily_data_keep_their_own_messages(tmp_path):
    # setup
    weekly = _file(tmp_path, "W-MON")
    odd = tmp_path / "odd.csv"
    odd.write_text("time,v\n2015-01-01,1\n2015-01-02,2\n2015-01-03,3\n2015-01-04 12:00,4\n")
    # execute
    _, report = load_table(weekly, time_col="month")
    # assert
    assert report.period_s == 7 * 86_400
    with pytest.raises(DataError, match="off the regular"):
        load_table(odd)
