"""Model.stream(): slots, gaps, duplicates, late readings, every k, state files (toy artifact)."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone

import numpy as np
import pytest

import edgecomp_runtime as ecr
from edgecomp_runtime.state import StateFileError
from edgecomp_runtime.stream import StreamError

T0 = 1_700_000_000.0
PERIOD = 900.0  # the toy artifact's spec.period_s


@pytest.fixture
def model(make_artifact):
    return ecr.load(make_artifact())


def feed(stream, rows, *, start=0, jitter=None):
    """Push rows at consecutive slots from ``start``; returns the forecasts (None included)."""
    out = []
    for i, row in enumerate(rows):
        shift = 0.0 if jitter is None else jitter[i]
        out.append(stream.push(T0 + (start + i) * PERIOD + shift, row))
    return out


def test_full_window_gives_exactly_predict(model, toy):
    # setup
    rows = toy.window(batch=2, seed=5).reshape(-1, len(toy.features))
    stream = model.stream()
    # execute
    out = feed(stream, rows)
    # assert
    L = toy.input_len
    assert all(y is None for y in out[: L - 1])
    for end in range(L, len(rows) + 1):
        assert np.array_equal(out[end - 1], model.predict(rows[end - L : end]))
    assert stream.mode == "windowed" and stream.stats["forecasts"] == len(rows) - L + 1
    assert stream.latest[0] == T0 + (len(rows) - 1) * PERIOD


def test_every_k_readings(model, toy):
    # setup
    rows = toy.window(batch=2, seed=6).reshape(-1, len(toy.features))
    # execute
    out = feed(model.stream(every=3), rows)
    # assert
    emitted = [i for i, y in enumerate(out) if y is not None]
    assert emitted == list(range(toy.input_len - 1, len(rows), 3))


def test_jittered_timestamps_land_on_their_slots(model, toy):
    # setup
    rows = toy.window(seed=7)
    jitter = [0.0, 0.3, -0.45, 0.2, -0.1, 0.49][: len(rows)]
    # execute
    out = feed(model.stream(), rows, jitter=[j * PERIOD for j in jitter])
    # assert
    assert np.array_equal(out[-1], model.predict(rows))


def test_missing_slots_are_imputed_like_predict(model, toy):
    # setup: the 3rd slot never arrives, and one value of the 5th is missing
    rows = toy.window(seed=8)
    stream = model.stream()
    # execute
    for i, row in enumerate(rows):
        if i == 2:
            continue
        values = [None if (i == 4 and j == 1) else v for j, v in enumerate(row)]
        y = stream.push(T0 + i * PERIOD, values)
    # assert
    expected = rows.copy()
    expected[2] = np.nan
    expected[4, 1] = np.nan
    assert np.array_equal(stream.window, expected, equal_nan=True)
    assert np.array_equal(y, model.predict(expected))
    assert stream.stats["missing_slots"] == 1


def test_a_window_beyond_the_policy_emits_nothing(model, toy):
    # setup: a gap longer than max_missing_fraction (0.5) of the window
    stream = model.stream()
    feed(stream, toy.window(seed=9))
    # execute
    y = stream.push(T0 + (toy.input_len + 4) * PERIOD, toy.window(seed=10)[0])
    # assert
    assert y is None
    assert stream.stats["refused"] == 1
    assert "feature 'a'" in stream.last_refusal and "allows at most 50.0%" in stream.last_refusal


def test_duplicates_and_late_readings_fill_only_what_is_missing(model, toy):
    # setup
    rows = toy.window(seed=11)
    stream = model.stream()
    feed(stream, rows[:-1])
    stream.push(T0 + (len(rows) - 1) * PERIOD, [rows[-1, 0], None, rows[-1, 2]])
    # execute
    dup = stream.push(T0 + (len(rows) - 1) * PERIOD, [0.0, rows[-1, 1], 0.0])  # fills b only
    late = stream.push(T0 + 1 * PERIOD, [99.0, 99.0, 99.0])  # slot 1 already complete
    too_late = stream.push(T0 - 10 * PERIOD, rows[0])
    y = stream.push(T0 + len(rows) * PERIOD, rows[0])
    # assert
    assert dup is None and late is None and too_late is None
    assert np.array_equal(stream.window[:-1], rows[1:])
    counts = {k: stream.stats[k] for k in ("duplicates", "late", "too_late")}
    assert counts == {"duplicates": 1, "late": 1, "too_late": 1}
    assert np.array_equal(y, model.predict(np.concatenate([rows[1:], rows[:1]])))


def test_late_reading_fills_a_gap(model, toy):
    # setup
    rows = toy.window(seed=12)
    stream = model.stream()
    for i, row in enumerate(rows):
        if i != 3:
            stream.push(T0 + i * PERIOD, row)
    # execute
    stream.push(T0 + 3 * PERIOD, rows[3])
    # assert
    assert np.array_equal(stream.window, rows)
    assert stream.stats["late"] == 1


@pytest.mark.parametrize(
    "stamp",
    [
        datetime.fromtimestamp(T0, tz=timezone.utc),
        datetime.fromtimestamp(T0, tz=timezone.utc).replace(tzinfo=None),
        datetime.fromtimestamp(T0, tz=timezone.utc).isoformat(),
    ],
)
def test_timestamps_as_datetime_or_iso(model, toy, stamp):
    # setup
    stream = model.stream()
    # execute
    stream.push(stamp, toy.window(seed=13)[0])
    stream.push(T0 + PERIOD, toy.window(seed=13)[1])
    # assert
    assert stream.stats["slots"] == 2 and stream.slot_time() == T0 + PERIOD


def test_dict_readings_by_feature_name(model, toy):
    # setup
    rows = toy.window(seed=14)
    stream = model.stream()
    # execute
    for i, row in enumerate(rows):
        y = stream.push(T0 + i * PERIOD, dict(reversed(list(zip(toy.features, row, strict=True)))))
    # assert
    assert np.array_equal(y, model.predict(rows))


@pytest.mark.parametrize(
    ("timestamp", "values", "message"),
    [
        (T0, {"a": 1.0, "zz": 2.0}, "unknown feature(s) ['zz']"),
        (T0, [1.0, 2.0], "expected 3 values, got 2"),
        (T0, [1.0, math.inf, 2.0], "feature 'b' is infinite"),
        (T0, [1.0, "x", 2.0], "feature 'b' is 'x', not a number"),
        (T0, 5.0, "values must be a list or a dict"),
        ("yesterday", [1.0, 2.0, 3.0], "is not ISO 8601"),
        (math.nan, [1.0, 2.0, 3.0], "is not finite"),
        (True, [1.0, 2.0, 3.0], "timestamp must be seconds"),
        (10**400, [1.0, 2.0, 3.0], "is out of range"),
        (T0, [1.0, 10**400, 2.0], "feature 'b' is an integer of 1329 bits, beyond the float32"),
        (T0, [1.0, 1e300, 2.0], "feature 'b' is 1e+300, beyond the float32 range"),
        (T0, [1.0, True, 2.0], "feature 'b' is True, not a number"),
        (T0, [1.0, {"x": 1}, 2.0], "feature 'b' is {'x': 1}, not a number"),
        (T0, [1.0, [2.0], 2.0], "feature 'b' is [2.0], not a number"),
        (T0, {1: 2.0}, "unknown feature(s) [1]"),
        (T0, "1,2,3", "values must be a list or a dict, not str"),
        (T0, None, "values must be a list or a dict, not NoneType"),
        (T0 * 1000, [1.0, 2.0, 3.0], "looks like milliseconds since the epoch: send seconds"),
        (T0 * 1e6, [1.0, 2.0, 3.0], "looks like microseconds since the epoch"),
        (1e300, [1.0, 2.0, 3.0], "ahead of the gateway's clock"),
        ("9999-01-01T00:00:00", [1.0, 2.0, 3.0], "more than max_ahead_s=1800"),
    ],
)
def test_bad_readings_are_refused_with_one_line(model, timestamp, values, message):
    # setup
    stream = model.stream()
    # execute
    with pytest.raises(ecr.InputError) as info:
        stream.push(timestamp, values)
    # assert
    assert message in str(info.value) and "\n" not in str(info.value)
    assert stream.stats["readings"] == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "incremental"}, "stream=true"),
        ({"mode": "fast"}, "mode must be one of"),
        ({"every": 0}, "every must be a positive integer"),
        ({"period_s": -1.0}, "period_s must be a positive number"),
    ],
)
def test_bad_stream_arguments(model, kwargs, message):
    with pytest.raises(StreamError, match=message.replace("(", r"\(")):
        model.stream(**kwargs)


def test_no_sampling_period_needs_period_s(make_artifact):
    # setup
    model = ecr.load(make_artifact(manifest={"spec.period_s": None}))
    # execute / assert
    with pytest.raises(StreamError, match="spec.period_s"):
        model.stream()
    assert model.stream(period_s=60).period_s == 60.0


def test_state_round_trip_resumes_the_stream(model, toy, tmp_path):
    # setup
    rows = toy.window(batch=2, seed=15).reshape(-1, len(toy.features))
    stream = model.stream(every=2)
    feed(stream, rows[:7])
    path = stream.save(tmp_path / "state" / "s.npz")
    # execute
    resumed = model.stream(every=2, resume=path)
    a, b = feed(resumed, rows[7:], start=7), feed(stream, rows[7:], start=7)
    # assert
    assert all((x is None and y is None) or np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert any(x is not None for x in a)
    assert resumed.stats == stream.stats
    assert [p.name for p in path.parent.iterdir()] == ["s.npz"]  # no temp file left


def test_state_save_failure_keeps_the_old_file(model, toy, tmp_path, monkeypatch):
    # setup
    stream = model.stream()
    feed(stream, toy.window(seed=16))
    path = stream.save(tmp_path / "state" / "s.npz")
    before = path.read_bytes()
    stream.push(T0 + toy.input_len * PERIOD, toy.window(seed=17)[0])

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", fail)
    # execute
    with pytest.raises(OSError, match="disk full"):
        stream.save(path)
    # assert
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["s.npz"]


def test_state_of_another_artifact_is_refused(model, toy, tmp_path):
    # setup
    stream = model.stream()
    feed(stream, toy.window(seed=18))
    path = stream.save(tmp_path / "s.npz")
    manifest = dict(model.manifest, files=[dict(model.manifest["files"][0], sha256="0" * 64)])
    other = ecr.Model(manifest, model.engine, backend="onnx")
    # execute / assert
    with pytest.raises(StreamError, match="saved for another artifact"):
        other.stream(resume=path)


@pytest.mark.parametrize("content", [b"", b"not a zip", b"PK\x03\x04broken"])
def test_corrupt_state_file_is_refused(model, tmp_path, content):
    # setup
    path = tmp_path / "s.npz"
    path.write_bytes(content)
    # execute / assert
    with pytest.raises(StateFileError, match="not a readable state file"):
        model.stream(resume=path)


def test_state_file_with_wrong_types_is_refused(model, toy, tmp_path):
    # setup: a valid npz whose counters are text
    stream = model.stream()
    feed(stream, toy.window(seed=19))
    path = stream.save(tmp_path / "s.npz")
    with np.load(path) as data:
        arrays = {k: np.array(data[k]) for k in data.files}
    meta = json.loads(str(arrays["meta"][()]))
    meta["_slot"] = "7"
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)
    # execute / assert
    with pytest.raises(StreamError, match="malformed"):
        model.stream(resume=path)


def test_malformed_stream_section_is_refused_at_load(make_artifact):
    # setup
    path = make_artifact(manifest={"stream": {"step_file": "nope.onnx"}})
    # execute / assert
    with pytest.raises(ecr.ArtifactError, match=r"'stream.step_file' must be a file listed"):
        ecr.load(path)


STREAM_SCRIPT = """
import json, sys
import numpy as np
import edgecomp_runtime
import edgecomp_runtime.serve
model = edgecomp_runtime.load(sys.argv[1])
stream = model.stream()
for i in range(model.input_len):
    y = stream.push(1_700_000_000 + 900 * i, np.arange(len(model.features), dtype=float))
print(json.dumps({"torch": "torch" in sys.modules, "edgecomp": "edgecomp" in sys.modules,
                  "paho": "paho" in sys.modules, "shape": list(y.shape)}))
"""


def test_streaming_imports_neither_torch_nor_edgecomp_nor_paho(make_artifact, run_fresh):
    # execute: a fresh interpreter, so nothing the test process imported leaks in
    out = run_fresh(STREAM_SCRIPT, str(make_artifact()))
    # assert
    assert out == {
        "torch": False,
        "edgecomp": False,
        "paho": False,
        "shape": [2, 2],
    }


def test_a_future_reading_never_moves_the_stream(model, toy, tmp_path):
    # setup: the gateway's clock stands at T0 + 10 periods
    rows = toy.window(seed=30)
    stream = ecr.Stream(model, clock=lambda: T0 + 10 * PERIOD)
    feed(stream, rows[:3])
    # execute: milliseconds by mistake, then the next good reading
    with pytest.raises(ecr.TimestampError, match="looks like milliseconds"):
        stream.push((T0 + 3 * PERIOD) * 1000, rows[3])
    stream.save(tmp_path / "s.npz")
    out = feed(stream, rows[3:], start=3)
    # assert: nothing was lost, and the saved position is the one before the bad reading
    assert np.array_equal(out[-1], model.predict(rows))
    assert model.stream(resume=tmp_path / "s.npz").slot_time() == T0 + 2 * PERIOD
    assert stream.stats["too_late"] == 0 and stream.stats["readings"] == len(rows)


def test_max_ahead_is_configurable(model, toy):
    # setup
    clock = lambda: T0  # noqa: E731
    strict = ecr.Stream(model, max_ahead_s=0, clock=clock)
    free = ecr.Stream(model, max_ahead_s=math.inf, clock=clock)
    # execute / assert
    with pytest.raises(ecr.TimestampError, match="max_ahead_s=0"):
        strict.push(T0 + 1, toy.window(seed=31)[0])
    assert free.push(T0 * 1000, toy.window(seed=31)[0]) is None
    with pytest.raises(StreamError, match="max_ahead_s must be"):
        ecr.Stream(model, max_ahead_s=-1)


def test_reset_starts_afresh_and_keeps_the_counters(model, toy):
    # setup: a stream far in the future (the clock check off)
    rows = toy.window(seed=32)
    stream = model.stream(max_ahead_s=math.inf)
    feed(stream, rows, start=10**6)
    # execute
    stream.reset()
    out = feed(stream, rows)
    # assert
    assert np.array_equal(out[-1], model.predict(rows))
    assert stream.stats["resets"] == 1 and stream.stats["readings"] == 2 * len(rows)
    assert stream.stats["too_late"] == 0


def test_push_many_equals_push_one_by_one(model, toy):
    # setup: readings out of order, a duplicate, a gap, a bad one
    rows = toy.window(batch=3, seed=33).reshape(-1, len(toy.features))
    items = [(T0 + i * PERIOD, row) for i, row in enumerate(rows) if i != 8]
    items[3], items[4] = items[4], items[3]
    items.insert(6, (T0 + 5 * PERIOD, rows[5]))
    items.insert(9, (T0, "bad"))
    ordered = sorted((it for it in items if not isinstance(it[1], str)), key=lambda x: x[0])
    one = model.stream()
    expected = [one.push(t, v) for t, v in ordered]
    # execute
    many = model.stream()
    results = many.push_many(items)
    # assert
    got = [r for r in results if r is not None and not isinstance(r, Exception)]
    assert [e.forecast.tolist() for e in got] == [y.tolist() for y in expected if y is not None]
    assert isinstance(results[9], ecr.InputError)
    assert many.stats == one.stats and len(got) > 3
