"""predict's fast path after its overhead cuts (issue 21): numpy's error state set through its
context variable (np.errstate where numpy has none), operands tiled to the window's shape, quick
finiteness checks (a BLAS dot, or a minimum and a maximum) and per-thread slots by window shape.
Every check predict made before holds, and the values are the documented pieces' bit for bit."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest

import edgecomp_runtime as ecr
import edgecomp_runtime.model as runtime_model
from edgecomp_runtime.preprocess import impute_window

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def test_predict_leaves_the_callers_numpy_error_state_as_it_was(make_artifact, toy):
    # setup: a caller that raises on every floating-point error; feature 'b' has std 0.5, so
    # 3e38 scales past float32
    model = ecr.load(make_artifact())
    window = toy.window(seed=1).astype(np.float32)
    huge = window.copy()
    huge[2, 1] = 3e38
    with np.errstate(all="raise"):
        state = np.geterr()
        # execute
        clean = model.predict(window)
        with pytest.raises(ecr.InputError, match="'b' is out of float32 range"):
            model.predict(huge)
        # assert
        assert np.geterr() == state
    assert np.isfinite(clean).all()


@pytest.mark.parametrize("batch", [None, 1, 3])
def test_without_numpy_s_error_state_variable_every_check_holds(
    monkeypatch, pieces, make_artifact, toy, batch
):
    # setup: numpy 1.x has no context variable: predict then enters np.errstate
    monkeypatch.setattr(runtime_model, "_ERRORS", None)
    model = ecr.load(make_artifact())
    clean = toy.window(batch=batch, seed=2).astype(np.float32)
    huge, gappy = clean.copy(), clean.copy()
    huge[..., 2, 1] = 3e38
    gappy[..., 2, 0] = np.nan
    # execute / assert
    for _ in range(2):  # the second call runs through the slot's engine binding
        np.testing.assert_array_equal(model.predict(clean), pieces(model, clean))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an InputError, no RuntimeWarning first
        with pytest.raises(ecr.InputError, match="'b' is out of float32 range"):
            model.predict(huge)
    assert np.isfinite(model.predict(gappy)).all()


def test_numpy_s_error_state_variable_silences_overflow_only_while_set():
    # setup
    if int(np.__version__.split(".")[0]) < 2:
        pytest.skip("numpy 1.x has no error-state context variable; predict enters np.errstate")
    variable, quiet = runtime_model._error_state()
    big = np.full(3, 3e38, dtype=np.float32)
    # execute
    token = variable.set(quiet)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            product = np.multiply(big, big)
    finally:
        variable.reset(token)
    # assert: inf without a warning while set; numpy's own setting again after
    assert np.isinf(product).all()
    with np.errstate(over="raise"), pytest.raises(FloatingPointError):
        np.multiply(big, big)


def test_a_single_window_and_a_batch_of_one_keep_their_shapes_and_values(
    pieces, make_artifact, toy
):
    # setup: the two shapes of batch 1 have a slot each in the same thread
    model = ecr.load(make_artifact())
    windows = [toy.window(seed=s).astype(np.float32) for s in (3, 4)]
    # execute / assert
    for _ in range(3):
        for w in windows:
            single, batch = model.predict(w), model.predict(w[None])
            assert single.shape == (toy.horizon, len(toy.targets))
            assert batch.shape == (1, toy.horizon, len(toy.targets))
            np.testing.assert_array_equal(single, pieces(model, w))
            np.testing.assert_array_equal(batch[0], single)
            assert not np.shares_memory(single, batch)


def test_a_finite_forecast_whose_squares_overflow_is_returned(pieces, make_artifact, toy):
    # setup: column 'c' 6e18 standard deviations out: the window's squares stay within float32,
    # the forecast's do not (the quick check's dot product overflows), yet every value is finite
    model = ecr.load(make_artifact())
    window = toy.window(seed=5)
    model.predict(window)  # the slot's engine binding runs the far window
    window[:, 2] = toy.mean[2] + toy.std[2] * 6e18
    expected = pieces(model, window)
    scaled = model.scale_window(window[None])
    assert math.isfinite(np.vdot(scaled, scaled))  # precondition: the input check passes
    assert np.isfinite(expected).all() and not math.isfinite(np.vdot(expected, expected))
    # execute
    got = model.predict(window)
    # assert
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch", [None, 1, 3])
def test_the_int8_input_range_holds_for_every_shape_and_dtype(dtype, batch):
    # setup: the int8 TCN fixture, whose input quantizer has a calibrated range
    model = ecr.load(FIXTURES / "tcn-int8.edgepkg")
    mean = np.array(model.spec["scaler"]["mean"])
    window = np.tile(mean, (model.input_len, 1)).astype(dtype)
    window = window if batch is None else np.repeat(window[None], batch, axis=0)
    far, gappy = window.copy(), window.copy()
    far[..., 3, 1] = 1e6
    gappy[..., 3, 1] = np.nan
    policy = model.manifest["spec"]["imputation"]
    filled = impute_window(gappy.reshape(-1, *window.shape[-2:]), policy, features=model.features)
    filled = filled.astype(dtype).reshape(window.shape)  # as predict imputes a window of dtype
    # execute / assert
    for _ in range(2):  # before and after the slot binds the engine
        assert np.isfinite(model.predict(window)).all()
        with pytest.raises(ecr.InputError, match="step 3, feature '2' lies more than 4x"):
            model.predict(far)
        np.testing.assert_array_equal(model.predict(gappy), model.predict(filled))


@pytest.mark.parametrize("batch", [2, 2000])  # the quick checks' small and large arrays
def test_missing_and_infinite_values_anywhere_in_a_batch_take_the_general_path(
    pieces, make_artifact, toy, batch
):
    # setup: 2000 toy windows are 36,000 values, past argmin/argmax and the dot product
    model = ecr.load(make_artifact())
    assert batch * toy.input_len * len(toy.features) > runtime_model._ARG_SIZE or batch == 2
    clean = toy.window(batch=batch, seed=6).astype(np.float32)
    gappy, infinite = clean.copy(), clean.copy()
    gappy[-1, -1, -1] = np.nan
    infinite[-1, 0, 1] = -np.inf
    policy = model.manifest["spec"]["imputation"]
    filled = impute_window(gappy, policy, features=model.features).astype(np.float32)
    # execute / assert
    np.testing.assert_array_equal(model.predict(clean), pieces(model, clean))
    np.testing.assert_array_equal(model.predict(gappy), pieces(model, filled))
    with pytest.raises(ecr.InputError, match=f"infinite value at batch row {batch - 1}, step 0"):
        model.predict(infinite)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_a_non_finite_value_at_any_position_is_seen(value):
    # setup: the int8 TCN fixture; argmin / argmax run vectorized with a scalar tail, so every
    # position of the window is tried, on a model whose slot already bound the engine
    model = ecr.load(FIXTURES / "tcn-int8.edgepkg")
    mean = np.array(model.spec["scaler"]["mean"], dtype=np.float32)
    window = np.tile(mean, (model.input_len, 1))
    expected = model.predict(window)
    # execute / assert
    for step, col in np.ndindex(window.shape):
        bad = window.copy()
        bad[step, col] = value
        if np.isnan(value):  # imputed from equal neighbours: the clean window's forecast
            np.testing.assert_array_equal(model.predict(bad), expected)
        else:
            with pytest.raises(
                ecr.InputError, match=f"infinite value at batch row 0, step {step},"
            ):
                model.predict(bad)
