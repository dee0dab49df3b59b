"""Model.stream() on the native kernel's step: the windowed run's math, one reading at a time."""

from __future__ import annotations

import hashlib
import threading

import numpy as np
import pytest

import edgecomp_runtime as ecr
from edgecomp_runtime import native
from edgecomp_runtime.errors import ArtifactError
from edgecomp_runtime.stream import StreamError

pytestmark = pytest.mark.skipif(not native.available(), reason=f"{native.unavailable_reason()}")

T0 = 1_700_000_000.0
PERIOD = 900.0  # the toy artifact's spec.period_s
HIDDEN = (8, 5)


def _pack(toy, cell, precision, *, input_len=None, seed=0):
    """A stacked LSTM / GRU for the toy's features and targets (same weights for one seed)."""
    from conftest import rnn_weights

    outputs = toy.horizon * len(toy.targets)
    layers, head_w, head_b = rnn_weights(cell, len(toy.features), HIDDEN, outputs, seed)
    return native.pack(
        cell, layers, head_w, head_b, input_len=input_len or toy.input_len,
        n_features=len(toy.features), target_index=[toy.features.index(t) for t in toy.targets],
        residual=True, precision=precision,
    )  # fmt: skip


def _field(number, payload):
    """One protobuf field: a varint (int) or length-delimited (bytes / str) value."""
    if isinstance(payload, int):
        return _varint(number << 3) + _varint(payload)
    data = payload.encode() if isinstance(payload, str) else payload
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _varint(n):
    out = b""
    while n > 0x7F:
        out += bytes([n & 0x7F | 0x80])
        n >>= 7
    return out + bytes([n])


def _step_onnx(n_features, state_size):
    """A valid ONNX step model with the step model's inputs (reading [1, F], state [1, S]) and
    outputs (Identity of each): a stream on the native stepper never runs it, the runtime opens
    it and checks its inputs. Encoded by hand (the runtime's venvs have no onnx package)."""

    def value(name, dims=None):
        tensor = _field(1, 1)  # elem_type FLOAT
        if dims:
            tensor += _field(2, b"".join(_field(1, _field(1, d)) for d in dims))
        return _field(1, name) + _field(2, _field(1, tensor))

    nodes = [
        _field(1, _field(1, src) + _field(2, dst) + _field(3, dst) + _field(4, "Identity"))
        for src, dst in (("reading", "forecast"), ("state", "state_next"))
    ]
    inputs = [
        _field(11, value("reading", [1, n_features])),
        _field(11, value("state", [1, state_size])),
    ]
    outputs = [_field(12, value("forecast")), _field(12, value("state_next"))]
    graph = b"".join(nodes) + _field(2, "step") + b"".join(inputs + outputs)
    return _field(1, 8) + _field(7, graph) + _field(8, _field(1, "") + _field(2, 13))


def _entry(name, data):
    return {"name": name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def _artifact(
    make_artifact, toy, cell="lstm", precision="int8", *, state_size=None, spec=None, **section
):
    """The toy artifact with ``model.native`` as its engine's file, a step model and a stream
    section that allows it."""
    from conftest import FIXTURES

    data = _pack(toy, cell, precision)
    size = state_size or sum(HIDDEN) * (2 if cell == "lstm" else 1)
    step = _step_onnx(len(toy.features), size)
    onnx_entry = toy.manifest((FIXTURES / "toy.onnx").read_bytes())["files"][0]
    lowering = {
        "lowering": "native",
        "engine": "native",
        "engine_files": {"native": "model.native"},
        "equivalent_engines": ["onnx"],
    }
    stream = {"step_file": "step.onnx", "kind": "recurrent-state", "state_size": size}
    stream |= {"exact": False, "allowed": True, **section}
    files = [onnx_entry, _entry("model.native", data), _entry("step.onnx", step)]
    path = make_artifact(
        manifest={"recipe.lowering": lowering, "files": files, "stream": stream, **(spec or {})},
        files={"model.native": data, "step.onnx": step},
    )
    return path, data


def _rows(toy, n, seed=3):
    rng = np.random.default_rng(seed)
    return np.array(toy.mean) + rng.standard_normal((n, len(toy.features))) * np.array(toy.std)


def _push(stream, rows, start=0):
    return [stream.push(T0 + (start + i) * PERIOD, row) for i, row in enumerate(rows)]


@pytest.mark.parametrize("precision", ["int8", "fp32"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_stream_steps_on_the_native_kernel_and_equals_windowed_predict(
    make_artifact, toy, cell, precision
):
    # setup
    path, _ = _artifact(make_artifact, toy, cell, precision)
    model = ecr.load(path)
    rows = _rows(toy, toy.input_len)
    # execute
    stream = model.stream()
    out = _push(stream, rows)
    # assert: from a zero state, L readings are the windowed run exactly
    assert model.backend == "native" and stream.mode == "incremental"
    assert isinstance(stream._runner.native, native.Stepper)
    assert out[:-1] == [None] * (toy.input_len - 1)
    np.testing.assert_allclose(out[-1], model.predict(rows), rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("precision", ["int8", "fp32"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_state_carries_across_readings(make_artifact, toy, cell, precision):
    # setup: the same weights as a windowed model over every reading so far (input_len = k)
    path, _ = _artifact(make_artifact, toy, cell, precision)
    model = ecr.load(path)
    n = 3 * toy.input_len
    rows = _rows(toy, n)
    scaled = model.scale_window(rows)
    # execute
    out = _push(model.stream(), rows)
    # assert: the forecast after k readings is the windowed run over all k of them
    for k in (toy.input_len, toy.input_len + 1, 2 * toy.input_len + 3, n):
        kernel = native.Kernel(_pack(toy, cell, precision, input_len=k))
        want = model.unscale_forecast(kernel.run(scaled[None, :k]))[0]
        np.testing.assert_allclose(out[k - 1], want, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("floor", [None, [95.0, None]])
def test_the_one_call_raw_step_equals_scaling_stepping_and_unscaling_apart(
    make_artifact, toy, floor
):
    # setup: a floor under target c that some forecasts fall below
    spec = {"spec.output_floor": floor} if floor else {}
    model = ecr.load(_artifact(make_artifact, toy, "gru", spec=spec)[0])
    rows = _rows(toy, 60)
    fused, apart = model.stream(), model.stream()
    apart._raw_step = None  # NOTE: the stream's numpy scaling and unscaling around runner.step
    # execute
    got, want = _push(fused, rows), _push(apart, rows)
    # assert: bit for bit (the kernel scales in double, unscales without fused multiply-add)
    assert fused._raw_step is not None
    assert all(
        a is None and b is None or np.array_equal(a, b) for a, b in zip(got, want, strict=True)
    )
    if floor:
        assert any(y[h, 0] == 95.0 for y in got[toy.input_len :] for h in range(toy.horizon))


def test_missing_readings_are_imputed_and_fed_as_the_stream_does(make_artifact, toy):
    # setup: a skipped slot, then a NaN value (the policy fills both)
    from edgecomp_runtime.preprocess import impute_window

    path, _ = _artifact(make_artifact, toy)
    model = ecr.load(path)
    length = toy.input_len
    rows = _rows(toy, 2 * length)
    rows[length + 2, 1] = np.nan
    stream = model.stream()
    _push(stream, rows[:length])
    # execute
    skipped = stream.push(T0 + (length + 1) * PERIOD, rows[length + 1])
    window = stream.window
    after_skip = stream.stats["replays"]
    holed = stream.push(T0 + (length + 2) * PERIOD, rows[length + 2])
    # assert: the gap's imputed row and the new one were fed on top of the state as read ...
    filled = impute_window(window[None], model._policy, features=stream.features)[0]
    fed = model.scale_window(np.concatenate([rows[:length], filled[-2:]]))
    longer = native.Kernel(_pack(toy, "lstm", "int8", input_len=length + 2))
    want = model.unscale_forecast(longer.run(fed[None]))[0]
    assert stream.stats["missing_slots"] == 1 and np.isnan(window).any() and after_skip == 1
    np.testing.assert_allclose(skipped, want, rtol=1e-6, atol=1e-5)
    # ... as was the next reading's row, its missing value filled (the gap's value unchanged)
    now = impute_window(stream.window[None], model._policy, features=stream.features)[0]
    fed = np.concatenate([fed, model.scale_window(now[-1:])])
    longest = native.Kernel(_pack(toy, "lstm", "int8", input_len=length + 3))
    want = model.unscale_forecast(longest.run(fed[None]))[0]
    assert stream.stats["replays"] == 1 and np.isnan(stream.window[-1, 1])
    np.testing.assert_allclose(holed, want, rtol=1e-6, atol=1e-5)


def test_a_window_beyond_the_policy_emits_nothing(make_artifact, toy):
    # setup
    model = ecr.load(_artifact(make_artifact, toy)[0])
    rows = _rows(toy, toy.input_len)
    rows[:, 0] = np.nan  # a whole column missing: beyond max_missing_fraction
    stream = model.stream()
    # execute
    out = _push(stream, rows)
    # assert
    assert out == [None] * toy.input_len and stream.stats["refused"] == 1
    assert "a" in stream.last_refusal


def test_state_round_trip_resumes_the_native_stream(make_artifact, toy, tmp_path):
    # setup
    model = ecr.load(_artifact(make_artifact, toy, "gru")[0])
    rows = _rows(toy, 3 * toy.input_len)
    stream = model.stream()
    _push(stream, rows[: 2 * toy.input_len])
    path = stream.save(tmp_path / "state.npz")
    # execute
    resumed = model.stream(resume=path)
    tail = rows[2 * toy.input_len :]
    pairs = zip(
        _push(stream, tail, 2 * toy.input_len), _push(resumed, tail, 2 * toy.input_len), strict=True
    )
    # assert
    assert isinstance(resumed._runner.native, native.Stepper)
    assert all(np.array_equal(a, b) for a, b in pairs) and resumed.stats == stream.stats


def test_streams_of_one_model_run_in_threads_alike(make_artifact, toy):
    # setup: one stream per thread (a stream is not thread-safe), one prepared kernel
    model = ecr.load(_artifact(make_artifact, toy)[0])
    rows = _rows(toy, 200)
    want = _push(model.stream(), rows)
    got = {}

    def run(k):
        got[k] = _push(model.stream(), rows)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    # execute
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # assert
    for out in got.values():
        assert all(
            a is None and b is None or np.array_equal(a, b) for a, b in zip(out, want, strict=True)
        )
    assert len(got) == 4


def test_other_engines_and_other_states_keep_the_step_model(make_artifact, toy):
    # setup: the ONNX engine (no .native run), and a section whose state is not the file's
    path, _ = _artifact(make_artifact, toy)
    other, _ = _artifact(make_artifact, toy, state_size=7)
    # execute
    on_onnx = ecr.load(path, engine="onnx").stream()
    mismatched = ecr.load(other).stream()
    # assert
    assert on_onnx.mode == "incremental" and on_onnx._runner.native is None
    assert mismatched.mode == "incremental" and mismatched._runner.native is None


def test_the_stream_still_refuses_what_the_manifest_does_not_allow(make_artifact, toy):
    # setup
    model = ecr.load(_artifact(make_artifact, toy, allowed=False, reason="over budget")[0])
    # execute
    stream = model.stream()
    # assert
    assert stream.mode == "windowed" and "does not allow its step model" in stream.mode_reason
    with pytest.raises(StreamError, match="cannot stream incrementally"):
        model.stream(mode="incremental")


def test_the_verdict_of_the_step_path_that_runs_decides(make_artifact, toy):
    # setup: the build measured the native step within budget and the step model past it
    fallback = {"step_path": "step-model", "exact": False, "allowed": False, "reason": "over"}
    path, _ = _artifact(make_artifact, toy, step_path="native", fallback=fallback)
    # execute: on the native engine, and where the gateway runs the ONNX file instead
    native_stream = ecr.load(path).stream()
    onnx_model = ecr.load(path, engine="onnx")
    # assert: the native step streams; the step model goes by its own (refusing) verdict
    assert native_stream.mode == "incremental" and native_stream._runner.native is not None
    assert onnx_model.stream().mode == "windowed"
    with pytest.raises(StreamError, match="does not allow its step model: over"):
        onnx_model.stream(mode="incremental")


def test_the_opposite_verdicts_stream_on_the_step_model_only(make_artifact, toy):
    # setup: the native step past the budget, the step model within it
    fallback = {"step_path": "step-model", "exact": False, "allowed": True}
    path, _ = _artifact(
        make_artifact, toy, step_path="native", allowed=False, reason="native", fallback=fallback
    )
    # execute + assert
    assert ecr.load(path).stream().mode == "windowed"
    assert ecr.load(path, engine="onnx").stream().mode == "incremental"


@pytest.mark.parametrize(
    "fallback", [5, {"exact": False}, {"allowed": "yes"}, {"exact": 1, "allowed": True}]
)
def test_a_malformed_fallback_verdict_is_refused_naming_the_key(make_artifact, toy, fallback):
    # setup
    path, _ = _artifact(make_artifact, toy, step_path="native", fallback=fallback)
    # execute + assert
    with pytest.raises(ArtifactError, match="stream.fallback"):
        ecr.load(path).stream()


def test_stepper_refuses_readings_and_states_of_another_size(toy):
    # setup
    stepper = native.Kernel(_pack(toy, "lstm", "int8"), "net.native").stepper()
    # execute / assert
    with pytest.raises(ValueError, match="net.native: a reading of 2 values, expected 3"):
        stepper.step(np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="net.native: a state of 5 values, expected 26"):
        stepper.unpack(np.zeros((1, 5), np.float32))


@pytest.mark.parametrize("isa", [None, "portable", "avx2"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_stepper_equals_the_windowed_kernel_on_every_path(toy, cell, isa):
    # setup
    kernel = native.Kernel(_pack(toy, cell, "int8"), isa=isa)
    x = np.random.default_rng(4).normal(0, 1.5, (3, toy.input_len, 3)).astype(np.float32)
    # execute
    steps = []
    for window in x:
        stepper = kernel.stepper()
        steps.append([stepper.step(row) for row in window][-1])
    # assert
    np.testing.assert_allclose(np.stack(steps), kernel.run(x), rtol=1e-6, atol=1e-6)
