"""predict's fast path (float arrays, per-thread buffers, the engine's IOBinding) gives what the
documented pieces give, keeps forecasts apart between calls and threads, and keeps every check."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

import edgecomp_runtime as ecr
import edgecomp_runtime.model as runtime_model
from edgecomp_runtime.errors import EdgecompRuntimeError
from edgecomp_runtime.preprocess import impute_window

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch", [None, 1, 3, runtime_model._SLOT_BATCH + 1])
def test_predict_equals_the_documented_pieces_bit_for_bit(pieces, make_artifact, toy, dtype, batch):
    # setup
    model = ecr.load(make_artifact())
    windows = [toy.window(batch=batch, seed=s).astype(dtype) for s in (1, 2, 3)]
    # execute: several calls, so that later ones run through the kept buffers and binding
    got = [model.predict(w) for w in windows for _ in range(2)]
    # assert
    for i, w in enumerate(windows):
        expected = pieces(model, w)
        assert got[2 * i].dtype == np.float32 and got[2 * i].shape == expected.shape
        np.testing.assert_array_equal(got[2 * i], expected)
        np.testing.assert_array_equal(got[2 * i + 1], expected)
    reference = toy.reference(windows[0] if batch else windows[0][None])
    np.testing.assert_allclose(got[0], reference.reshape(got[0].shape), rtol=1e-4, atol=1e-3)


def test_forecasts_do_not_share_memory_between_calls(make_artifact, toy):
    # setup
    model = ecr.load(make_artifact())
    a, b = toy.window(batch=1, seed=1), toy.window(batch=1, seed=2)
    first = model.predict(a)
    kept = first.copy()
    # execute
    second = model.predict(b)
    third = model.predict(a)
    # assert
    np.testing.assert_array_equal(first, kept)
    assert not np.shares_memory(first, second) and not np.shares_memory(first, third)
    assert not np.array_equal(first, second)


def test_a_window_to_impute_after_clean_ones_is_imputed(pieces, make_artifact, toy):
    # setup
    model = ecr.load(make_artifact())
    clean = toy.window(batch=2, seed=4)
    gappy = clean.copy()
    gappy[1, 2, 0] = np.nan
    model.predict(clean)
    model.predict(clean)
    # execute
    got = model.predict(gappy)
    # assert
    filled = impute_window(gappy, model.manifest["spec"]["imputation"], features=model.features)
    np.testing.assert_array_equal(got, pieces(model, filled))
    assert not np.isnan(got).any()


def test_threads_each_get_their_own_forecasts(make_artifact, toy):
    # setup: 4 threads predicting different windows of the same batch size at once
    model = ecr.load(make_artifact())
    windows = [toy.window(batch=1, seed=s) for s in range(4)]
    expected = [model.predict(w) for w in windows]
    got: dict[int, list[np.ndarray]] = {}
    start = threading.Barrier(4)

    def work(i: int) -> None:
        start.wait()
        got[i] = [model.predict(windows[i]) for _ in range(200)]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    # execute
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # assert
    for i in range(4):
        assert all(np.array_equal(y, expected[i]) for y in got[i])


def test_run_scaled_returns_a_new_array_each_call(make_artifact, toy):
    # setup
    model = ecr.load(make_artifact())
    scaled = model.scale_window(toy.window(batch=2, seed=5))
    # execute
    first = model.run_scaled(scaled)
    second = model.run_scaled(scaled + np.float32(0.5))
    # assert
    assert not np.shares_memory(first, second)
    np.testing.assert_array_equal(first, model.engine.run(scaled))
    np.testing.assert_array_equal(second, model.engine.run(scaled + np.float32(0.5)))


def test_engine_binding_runs_the_buffer_as_it_holds_at_call_time(make_artifact, toy):
    # setup
    model = ecr.load(make_artifact())
    a = model.scale_window(toy.window(batch=2, seed=6))
    b = model.scale_window(toy.window(batch=2, seed=7))
    buffer = np.empty_like(a)
    run = model.engine.bind(buffer, (2, toy.horizon, len(toy.targets)))
    # execute
    buffer[...] = a
    out_a = run().copy()
    buffer[...] = b
    out_b = run()
    # assert
    np.testing.assert_array_equal(out_a, model.engine.run(a))
    np.testing.assert_array_equal(out_b, model.engine.run(b))
    assert run() is out_b  # the one output array, overwritten by each call


def test_engine_binding_failure_names_the_model_file(make_artifact, toy):
    # setup: an output array of the wrong shape
    model = ecr.load(make_artifact())
    buffer = model.scale_window(toy.window(batch=1, seed=6))
    run = model.engine.bind(buffer, (1, toy.horizon + 3, len(toy.targets)))
    # execute / assert
    with pytest.raises(EdgecompRuntimeError, match="model.onnx: onnxruntime failed to run"):
        run()


def test_non_finite_forecast_is_refused_after_bound_calls(
    tmp_path, toy, toy_model_bytes, write_artifact
):
    # setup: the model overflows only on huge inputs, after clean calls bound the engine
    model = ecr.load(huge_weights(tmp_path, toy, toy_model_bytes, write_artifact))
    window = toy.window(batch=1, seed=1)
    model.predict(window)
    model.predict(window)
    far = window.copy()
    far[0, :, 0] = 1e30  # finite, within float32 once scaled; the model overflows on it
    # execute / assert
    with pytest.raises(ecr.ModelOutputError, match="the model file, not the window, is at fault"):
        model.predict(far)


def huge_weights(tmp_path, toy, toy_model_bytes, write_artifact):
    """The toy with huge weights: finite forecasts for normal windows, inf for huge ones."""
    import onnx  # a compiler package: the test skips in runtime-only environments
    from onnx import numpy_helper

    model = onnx.load_from_string(toy_model_bytes)
    weights = next(t for t in model.graph.initializer if t.name == "w")
    weights.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weights) * 1e10, "w"))
    data = model.SerializeToString()
    return write_artifact(tmp_path / "late.edgepkg", toy.manifest(data), {"model.onnx": data})


def test_range_factor_changes_apply_to_the_next_call():
    # setup: the int8 TCN fixture, whose input quantizer has a calibrated range
    model = ecr.load(FIXTURES / "tcn-int8.edgepkg")
    mean = np.array(model.spec["scaler"]["mean"], dtype=np.float32)
    window = np.tile(mean, (model.input_len, 1))
    far = window.copy()
    far[3, 1] = 1e6
    model.predict(window)
    # execute / assert
    with pytest.raises(ecr.InputError, match="step 3, feature '2' lies more than 4x"):
        model.predict(far)
    model.range_factor = None
    assert np.isfinite(model.predict(far)).all()
    model.range_factor = 4.0
    with pytest.raises(ecr.InputError, match="lies more than 4x"):
        model.predict(far)


def test_lists_and_int_arrays_give_what_float_arrays_give(pieces, make_artifact, toy):
    # setup
    model = ecr.load(make_artifact())
    window = np.round(toy.window(batch=2, seed=8))
    # execute
    from_list = [model.predict(window.tolist()) for _ in range(2)]
    from_ints = model.predict(window.astype(np.int64))
    gappy = window.tolist()
    gappy[0][1][2] = float("nan")  # a missing reading: the general path imputes it
    # assert
    for y in (*from_list, from_ints):
        np.testing.assert_array_equal(y, pieces(model, window))
    assert np.isfinite(model.predict(gappy)).all()
