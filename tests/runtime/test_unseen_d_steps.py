"""A window CSV whose time column parses must hold one row per sampling period: a logger outage
that dropped a row (or hourly rows given to a 15-minute model) made ``edgecomp-runtime predict``
read L rows as L consecutive steps, a silent wrong forecast. It is refused naming the rows and
what to do; jitter under half a period and a business-day grid's weekends are still one step."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest

from edgecomp_runtime.__main__ import main
from edgecomp_runtime.errors import InputError
from edgecomp_runtime.tabular import csv_window

SPEC = {"features": ["a"], "input_len": 4, "horizon": 1, "period_s": 900.0}
T0 = datetime(2024, 3, 1, 8, 0)


def _csv(tmp_path, stamps):
    path = tmp_path / "w.csv"
    lines = ["time,a"] + [f"{s.isoformat()},{i}" for i, s in enumerate(stamps)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("minutes", "rows", "periods"),
    [([0, 15, 45, 60], (2, 3), 2), ([0, 60, 120, 180], (1, 2), 4), ([0, 15, 15, 30], (2, 3), 0)],
)
def test_rows_not_one_period_apart_are_refused(tmp_path, minutes, rows, periods):
    # setup
    path = _csv(tmp_path, [T0 + timedelta(minutes=m) for m in minutes])
    # execute / assert
    with pytest.raises(InputError) as info:
        csv_window(path, SPEC)
    message = str(info.value)
    assert message.startswith(f"{path}: rows {rows[0]} and {rows[1]} (")
    assert f"are {periods:g} sampling periods (900 s) apart, not one; a missing reading?" in message


def test_the_cli_refuses_a_gap_in_one_line(tmp_path, make_artifact, capsys):
    # setup: the toy takes 6 rows at 900 s
    path = tmp_path / "gap.csv"
    stamps = [T0 + timedelta(minutes=15 * k) for k in (0, 1, 2, 4, 5, 6)]
    rng = np.random.default_rng(0)
    rows = [f"{s.isoformat()}Z,{10 + rng.normal():.3f},{-2 + rng.normal():.3f},100" for s in stamps]
    path.write_text("time,a,b,c\n" + "\n".join(rows) + "\n")
    # execute
    code = main(["predict", str(make_artifact()), "--input", str(path)])
    # assert
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "rows 3 and 4" in err


@pytest.mark.parametrize(
    ("stamps", "spec"),
    [
        ([T0 + timedelta(minutes=m) for m in (0, 16, 29, 46)], SPEC),  # jitter
        ([datetime(2024, 3, d) for d in (6, 7, 8, 11)], SPEC | {"period_s": 86_400.0,
                                                                "data": {"grid": "business-day"}}),
        (["t0", "t1", "t2", "t3"], SPEC),  # a time column that does not parse: not checked
    ],
)  # fmt: skip
def test_jitter_business_days_and_unparsed_times_read(tmp_path, stamps, spec):
    # setup
    path = tmp_path / "ok.csv"
    lines = ["time,a"] + [f"{s.isoformat() if hasattr(s, 'isoformat') else s},{i}"
                          for i, s in enumerate(stamps)]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    # execute
    values, _ = csv_window(path, spec)
    # assert
    np.testing.assert_array_equal(values[:, 0], [0, 1, 2, 3])


def test_a_weekend_on_a_calendar_day_grid_is_a_gap(tmp_path):
    path = _csv(tmp_path, [datetime(2024, 3, d) for d in (6, 7, 8, 11)])
    with pytest.raises(InputError, match="rows 3 and 4 .* are 3 sampling periods"):
        csv_window(path, SPEC | {"period_s": 86_400.0})
