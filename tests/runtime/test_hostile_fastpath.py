"""predict's fast path under odd input: memory layouts, dtypes, byte orders, shapes, batch sizes
on both sides of the per-thread buffers, non-finite values, threads of different batch sizes,
callers that mutate what they got. Every case must give what the documented pieces
(scale_window, run_scaled, unscale_forecast) give on the same values, or the error the general
path gives, whether or not earlier calls bound the engine."""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest

import edgecomp_runtime as ecr
import edgecomp_runtime.model as runtime_model


def warmed(make_artifact, toy, batch=2):
    """A model whose predict already ran (and bound the engine) at ``batch``."""
    model = ecr.load(make_artifact())
    for seed in (1, 2):
        model.predict(toy.window(batch=batch, seed=seed))
    return model


LAYOUTS = {
    "fortran": lambda w: np.asfortranarray(w),
    "strided view": lambda w: np.repeat(w, 2, axis=-1)[..., ::2],
    "reversed batch view": lambda w: w[::-1][::-1],
    "read-only": lambda w: _read_only(w),
    "big-endian float32": lambda w: w.astype(">f4"),
    "big-endian float64": lambda w: w.astype(">f8"),
    "float16": lambda w: w.astype(np.float16),
    "int32": lambda w: np.round(w).astype(np.int32),
    "uint16": lambda w: np.round(np.abs(w)).astype(np.uint16),
    "memmap-like subclass": lambda w: w.view(np.recarray).view(_Sub),
}


class _Sub(np.ndarray):
    """An ndarray subclass (as a memmap or a pandas-backed view would be)."""


def _read_only(w):
    w = w.copy()
    w.flags.writeable = False
    return w


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("batch", [None, 3])
def test_layouts_and_dtypes_give_the_pieces_values(pieces, make_artifact, toy, layout, batch):
    # setup: a model already bound at this batch size, a window in an odd layout or dtype
    model = warmed(make_artifact, toy, batch=batch or 1)
    window = LAYOUTS[layout](toy.window(batch=batch, seed=3).astype(np.float32))
    # execute
    got = model.predict(window)
    # assert: the values the documented pieces give on the same numbers (float16 ones read as
    # float32, as predict scales them)
    same = np.asarray(window)
    same = same.astype(np.float32) if same.dtype == np.float16 else same
    np.testing.assert_array_equal(got, pieces(model, same))
    assert got.dtype == np.float32 and got.flags.c_contiguous


@pytest.mark.parametrize("batch", [None, 1, 2, runtime_model._SLOT_BATCH + 1])
def test_mutating_a_forecast_never_changes_the_next(make_artifact, toy, batch):
    # setup
    model = warmed(make_artifact, toy, batch=batch or 1)
    window = toy.window(batch=batch, seed=5)
    first = model.predict(window)
    kept = first.copy()
    # execute: the caller scribbles over its forecast, and over its window after the call
    first[...] = -1e9
    second = model.predict(window)
    window[...] = 0.0
    # assert
    np.testing.assert_array_equal(second, kept)
    assert not np.shares_memory(first, second)


def test_mutating_run_scaled_output_never_changes_the_next(make_artifact, toy):
    # setup
    model = warmed(make_artifact, toy, batch=2)
    scaled = model.scale_window(toy.window(batch=2, seed=6))
    first = model.run_scaled(scaled)
    kept = first.copy()
    # execute
    first[...] = np.nan
    second = model.run_scaled(scaled)
    # assert
    np.testing.assert_array_equal(second, kept)


@pytest.mark.parametrize(
    "shape",
    [(7, 3), (5, 3), (6, 2), (6, 4), (2, 7, 3), (2, 6, 4), (0, 6, 3), (6,), (), (1, 1, 6, 3)],
)
def test_a_window_of_another_shape_is_refused_after_bound_calls(make_artifact, toy, shape):
    # setup: the engine bound at batch 2 and batch 1
    model = warmed(make_artifact, toy, batch=2)
    model.predict(toy.window(seed=1))
    window = np.full(shape, 1.0, dtype=np.float32)
    # execute / assert: the shape error of the general path, naming what it expected
    with pytest.raises(ecr.InputError, match=r"6|window|shape|batch"):
        model.predict(window)


@pytest.mark.parametrize("value", [np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_infinite_readings_are_refused_after_bound_calls(make_artifact, toy, value, dtype):
    # setup
    model = warmed(make_artifact, toy, batch=2)
    window = toy.window(batch=2, seed=7).astype(dtype)
    window[1, 3, 2] = value
    # execute / assert
    with pytest.raises(ecr.InputError):
        model.predict(window)


def test_float64_beyond_float32_is_refused(make_artifact, toy):
    # setup: a finite float64 reading that scales past float32's range
    model = warmed(make_artifact, toy, batch=2)
    window = toy.window(batch=2, seed=8)
    window[0, 1, 1] = 1e300
    # execute / assert: the general path's InputError (numpy warns of the float32 overflow on
    # the way, as the runtime before the fast path did)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(ecr.InputError):
            model.predict(window)


def test_nan_after_bound_calls_is_imputed_like_the_general_path(make_artifact, toy):
    # setup
    model = warmed(make_artifact, toy, batch=1)
    window = toy.window(seed=9)
    gappy = window.copy()
    gappy[2, 1] = np.nan
    # execute
    got = model.predict(gappy)
    # assert: finite, and what a list (never the fast path's input) gives
    assert np.isfinite(got).all()
    np.testing.assert_array_equal(got, model.predict(gappy.tolist()))


def test_batches_past_the_chunk_size_match_the_pieces(pieces, make_artifact, toy):
    # setup: more windows than one chunk holds, in float64 and Fortran order
    model = warmed(make_artifact, toy, batch=2)
    n = runtime_model._CHUNK_ELEMENTS // (toy.input_len * len(toy.features)) + 3
    window = np.asfortranarray(toy.window(batch=n, seed=10))
    # execute
    got = model.predict(window)
    # assert
    assert got.shape == (n, toy.horizon, len(toy.targets))
    np.testing.assert_array_equal(got[-5:], pieces(model, window[-5:]))
    np.testing.assert_array_equal(got[:5], pieces(model, window[:5]))


def test_more_batch_sizes_than_slots_cycle_without_mixing(pieces, make_artifact, toy):
    # setup: twice as many batch sizes as a thread keeps buffers for, each visited three times
    model = ecr.load(make_artifact())
    sizes = list(range(1, 2 * runtime_model._SLOTS + 1))
    windows = {b: toy.window(batch=b, seed=b) for b in sizes}
    expected = {b: pieces(model, w) for b, w in windows.items()}
    # execute / assert
    for _ in range(3):
        for b in sizes:
            np.testing.assert_array_equal(model.predict(windows[b]), expected[b])


def test_threads_of_different_batch_sizes_keep_their_own_forecasts(pieces, make_artifact, toy):
    # setup: 4 threads at batch sizes 1, 2, 3 and 65 (past the kept buffers), at once
    model = ecr.load(make_artifact())
    sizes = (1, 2, 3, runtime_model._SLOT_BATCH + 1)
    windows = [toy.window(batch=b, seed=20 + b) for b in sizes]
    expected = [pieces(model, w) for w in windows]
    got: dict[int, list[np.ndarray]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(len(sizes))

    def work(i: int) -> None:
        try:
            start.wait()
            got[i] = [model.predict(windows[i]) for _ in range(150)]
        except BaseException as exc:  # noqa: BLE001 (reported by the assert below)
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(sizes))]
    # execute
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # assert
    assert not errors
    for i in range(len(sizes)):
        assert all(np.array_equal(y, expected[i]) for y in got[i])


def test_complex_windows_are_refused(make_artifact, toy):
    # setup
    model = warmed(make_artifact, toy, batch=1)
    window = toy.window(seed=11)
    # execute / assert: no silent drop of the imaginary part
    with pytest.raises(ecr.InputError, match="complex"):
        model.predict(window.astype(np.complex64))
