"""Calendar features: one numpy implementation shared by the compiler and the runtime (item 5)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from edgecomp.cli import main
from edgecomp.data import DataConfig, DataError, prepare
from edgecomp_runtime.calendar import add_future, calendar_features


def _seconds(*stamps: str) -> np.ndarray:
    return np.array([np.datetime64(s, "s").astype(np.int64) for s in stamps])


def test_calendar_phases_by_hand():
    # setup: 2024-01-01 was a Monday; 2024 is a leap year (366 days)
    t = _seconds("2024-01-01T00:00", "2024-01-01T06:00", "2024-01-03T00:00", "2024-07-02T00:00")
    # execute
    out = calendar_features(t, ["hour", "dow", "doy"])
    # assert: columns hour_sin, hour_cos, dow_sin, dow_cos, doy_sin, doy_cos
    np.testing.assert_allclose(out[0], [0, 1, 0, 1, 0, 1], atol=1e-12)
    np.testing.assert_allclose(out[1, :2], [1, 0], atol=1e-12)  # a quarter of the day
    angle = 2 * np.pi * 2 / 7  # Wednesday
    np.testing.assert_allclose(out[2, 2:4], [np.sin(angle), np.cos(angle)], atol=1e-12)
    angle = 2 * np.pi * 183 / 366
    np.testing.assert_allclose(out[3, 4:], [np.sin(angle), np.cos(angle)], atol=1e-12)


def test_unknown_calendar_feature_is_refused():
    with pytest.raises(ValueError, match=r"unknown calendar feature 'week'; known: \['hour'"):
        calendar_features(_seconds("2024-01-01"), ["week"])
    with pytest.raises(DataError, match=r"DataConfig.calendar must be names among"):
        DataConfig(input_len=4, horizon=2, calendar=("week",))


def _hourly(tmp_path: Path, n: int = 300) -> Path:
    t = pd.date_range("2024-03-01", periods=n, freq="h")
    i = np.arange(n, dtype=float)
    df = pd.DataFrame({"time": t.strftime("%Y-%m-%dT%H:%M:%SZ"), "a": np.sin(i / 4), "b": i % 9})
    df.to_csv(tmp_path / "h.csv", index=False)
    return tmp_path / "h.csv"


def test_compiler_and_runtime_calendar_channels_are_equal_arrays(tmp_path):
    # setup
    config = DataConfig(input_len=12, horizon=5, calendar=("hour", "dow", "doy"))
    ds = prepare(_hourly(tmp_path), config)
    spec = {"arch": "x", **ds.spec_fields()}
    raw = ds.raw_inputs("test")
    times = ds.raw.index.to_numpy()[ds.test.starts[:, None] + np.arange(12)[None, :]]
    # execute
    built = add_future(raw[:, :, :2].astype(np.float64), spec, times, None)
    # assert
    assert ds.features[2:] == [
        f"{n}_{f}@+5" for n in ("hour", "dow", "doy") for f in ("sin", "cos")
    ]
    np.testing.assert_array_equal(built[:, :, 2:].astype(np.float32), raw[:, :, 2:])
    first = ds.raw.index[ds.test.starts[0] + 5]  # step 0 holds the calendar of step 0 + H
    np.testing.assert_array_equal(
        raw[0, 0, 2:],
        calendar_features(_seconds(first.isoformat()), ["hour", "dow", "doy"])[0].astype(
            np.float32
        ),
    )


def test_calendar_needs_a_regular_grid(tmp_path):
    # setup: business days
    t = pd.bdate_range("2024-01-01", periods=120)
    pd.DataFrame({"date": t, "r": np.arange(120.0)}).to_csv(tmp_path / "b.csv", index=False)
    # execute / assert
    with pytest.raises(DataError, match="calendar features need a regular grid"):
        prepare(tmp_path / "b.csv", DataConfig(input_len=5, horizon=2, calendar=("dow",)))


def test_calendar_flag_refuses_bad_values_naming_the_flag(tmp_path):
    args = ["data", str(_hourly(tmp_path)), "-L", "12", "-H", "5", "--calendar"]
    bad = CliRunner().invoke(main, [*args, "hour,week"])
    good = CliRunner().invoke(main, [*args, "hour", "--json"])
    assert bad.exit_code == 2 and "'--calendar': 'hour,week' is not a list of hour" in bad.output
    assert good.exit_code == 0 and '"hour_sin@+5"' not in good.output  # summary counts only


def test_train_calendar_auto_is_the_default_and_keeps_the_lower_validation_mae(tmp_path):
    # setup: no --calendar: auto
    out = tmp_path / "ckpt"
    args = ["train", str(_hourly(tmp_path)), "-L", "12", "-H", "5", "--arch", "gru", "--epochs"]
    args += ["2", "--hparam", "hidden=8", "--hparam", "layers=1", "--out-dir"]
    # execute
    result = CliRunner().invoke(main, [*args, str(out)])
    # assert: one checkpoint left, with or without calendar inputs as the MAEs said
    assert result.exit_code == 0, result.output
    line = next(ln for ln in result.output.splitlines() if "validation MAE" in ln)
    choice = json.loads((out / "eval.json").read_text())["calendar"]
    without, with_ = choice["val_mae"]["without"], choice["val_mae"]["with"]
    assert f"{without:.4g} without, {with_:.4g} with" in line
    assert choice["method"] == "full" and choice["tried"] == ["hour", "dow"]
    assert bool(choice["chosen"]) == (with_ < without) == line.endswith("kept with hour, dow")
    spec = json.loads((out / "spec.json").read_text())
    assert ("future" in spec) == bool(choice["chosen"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "h.csv"]  # no leftovers
    bad = CliRunner().invoke(main, ["data", str(tmp_path / "h.csv"), "--calendar", "auto"])
    assert bad.exit_code == 2 and "'auto' applies to `edgecomp train` only" in bad.output
    off = CliRunner().invoke(main, [*args, str(tmp_path / "off"), "--calendar", "off"])
    assert off.exit_code == 0 and "validation MAE" not in off.output
    assert "future" not in json.loads((tmp_path / "off" / "spec.json").read_text())
    on = CliRunner().invoke(main, [*args, str(tmp_path / "on"), "--calendar", "on"])
    assert on.exit_code == 0 and "calendar: trained with hour, dow (asked for" in on.output
    spec = json.loads((tmp_path / "on" / "spec.json").read_text())
    assert spec["future"]["calendar"] == ["hour", "dow"]


def _hour_of_day(tmp_path: Path, n: int = 24 * 60) -> Path:
    """A noisy series whose expected value is a pure function of the hour of day."""
    t = pd.date_range("2024-01-01", periods=n, freq="h")
    rng = np.random.default_rng(1)
    y = 10 * np.sin(2 * np.pi * t.hour / 24) + rng.normal(0, 3, n)
    pd.DataFrame({"time": t, "y": y}).to_csv(tmp_path / "hod.csv", index=False)
    return tmp_path / "hod.csv"


@pytest.mark.parametrize("probe", [None, 2])
def test_calendar_auto_picks_calendar_on_a_pure_hour_of_day_series(tmp_path, probe):
    from edgecomp.calendar_choice import train_with_calendar_choice
    from edgecomp.train import TrainConfig

    # setup: past readings are noisy, the hour of the forecast steps says all there is
    config = DataConfig(input_len=6, horizon=4)
    train = TrainConfig(arch="gru", hparams={"hidden": 8, "layers": 1}, epochs=6, lr=5e-3)
    # execute
    outcome = train_with_calendar_choice(
        _hour_of_day(tmp_path), config, train, tmp_path / "ckpt", probe_epochs=probe
    )
    # assert
    choice = outcome.evaluation["calendar"]
    assert choice["method"] == ("full" if probe is None else "probe")
    assert choice["val_mae"]["with"] < 0.95 * choice["val_mae"]["without"]
    assert choice["chosen"] == ["hour", "dow"] and outcome.model.spec.future is not None
    assert json.loads((tmp_path / "ckpt" / "eval.json").read_text())["calendar"] == choice
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "hod.csv"]


def test_probe_length_is_used_only_where_it_saves_epochs():
    from edgecomp.calendar_choice import probe_epochs_for

    assert [probe_epochs_for(e) for e in (1, 2, 3, 5, 30)] == [None, None, 1, 1, 6]


def test_times_may_be_iso_strings_aware_datetimes_or_datetime64(tmp_path):
    from datetime import UTC, datetime, timedelta, timezone

    # setup
    ds = prepare(_hourly(tmp_path), DataConfig(input_len=12, horizon=5, calendar=("hour",)))
    spec = {"arch": "x", **ds.spec_fields()}
    window = ds.raw_inputs("test")[0, :, :2].astype(np.float64)
    stamps = ds.raw.index[ds.test.starts[0] + np.arange(12)]
    plus2 = timezone(timedelta(hours=2))
    forms = [
        stamps.to_numpy(),
        [f"{t.isoformat()}Z" for t in stamps],
        [t.to_pydatetime().replace(tzinfo=UTC).astimezone(plus2) for t in stamps],
        [datetime(t.year, t.month, t.day, t.hour) for t in stamps],  # naive: UTC
    ]
    # execute
    built = [add_future(window, spec, times, None) for times in forms]
    # assert
    for other in built[1:]:
        np.testing.assert_array_equal(other, built[0])
    with pytest.raises(ValueError, match="times= holds 'soon', not an ISO-8601 time"):
        add_future(window, spec, ["soon"] * 12, None)
