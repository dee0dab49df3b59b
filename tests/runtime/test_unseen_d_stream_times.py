"""Stream timestamps as a user's data hands them over: numpy datetime64 (a DataFrame index's
``.values``) is read, not refused; a float32 number of seconds (precise to 128 s in 2024) is
refused naming its precision, where before it was rounded silently onto a slot."""

from __future__ import annotations

import numpy as np
import pytest

import edgecomp_runtime as ecr
from edgecomp_runtime.errors import InputError


def test_datetime64_timestamps_stream_as_their_seconds(make_artifact, toy):
    # setup
    model = ecr.load(make_artifact())
    rows = toy.window()
    stamps = np.datetime64("2024-01-05T06:00") + np.arange(len(rows)) * np.timedelta64(15, "m")
    by_numbers, by_dates = model.stream(), model.stream()
    start = float(stamps[0].astype("datetime64[s]").astype(np.int64))
    # execute
    want = [by_numbers.push(start + 900.0 * i, row) for i, row in enumerate(rows)]
    got = [by_dates.push(stamp, row) for stamp, row in zip(stamps, rows, strict=True)]
    # assert
    assert got[-1] is not None
    np.testing.assert_array_equal(got[-1], want[-1])
    assert by_dates.latest[0] == by_numbers.latest[0]


@pytest.mark.parametrize("stamp", [np.float32(1.7e9), np.float16(60.0)])
def test_low_precision_float_timestamps_are_refused(make_artifact, toy, stamp):
    stream = ecr.load(make_artifact()).stream()
    with pytest.raises(InputError, match=r"is a float(32|16) number, precise to .* s there; send"):
        stream.push(stamp, toy.window()[0])


def test_a_nat_timestamp_is_refused(make_artifact, toy):
    stream = ecr.load(make_artifact()).stream()
    with pytest.raises(InputError, match="timestamp must be seconds, a datetime or ISO 8601"):
        stream.push(np.datetime64("NaT"), toy.window()[0])


def test_predict_refuses_float32_times(make_artifact, toy):
    # setup: a calendar model (hour of day as the toy's lead channels)
    spec = {
        "spec.features": ["a", "hour_sin@+2", "hour_cos@+2"],
        "spec.targets": ["a", "a"],
        "spec.future": {"calendar": ["hour"], "columns": [], "lead": 2,
                        "features": ["hour_sin@+2", "hour_cos@+2"]},
    }  # fmt: skip
    model = ecr.load(make_artifact(manifest=spec))
    window = toy.window()[:, :1]
    seconds = 1.7e9 + 900.0 * np.arange(toy.input_len)
    # execute / assert
    with pytest.raises(InputError, match="times= is float32, too coarse for Unix seconds"):
        model.predict(window, times=seconds.astype(np.float32))
    assert model.predict(window, times=seconds).shape == (toy.horizon, 2)
