"""load() and Model: parity with a numpy reference, input validation, engines, threads."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from edgecomp_runtime import (
    ArtifactError,
    EdgecompRuntimeError,
    EngineUnavailableError,
    InputDtypeError,
    InputError,
    InputShapeError,
    MissingValueError,
    Model,
    get_engine,
    load,
)
from edgecomp_runtime.engines.onnxruntime import OnnxRuntimeEngine

NAN = np.nan
ATOL = 1e-4  # raw units; the toy's outputs are O(100)


@pytest.fixture
def model(make_artifact) -> Model:
    return load(make_artifact())


# --- parity --------------------------------------------------------------------------------


def test_predict_one_window_matches_the_numpy_reference(model, toy):
    # setup
    window = toy.window()
    # execute
    out = model.predict(window)
    # assert
    assert out.dtype == np.float32
    assert out.shape == (toy.horizon, len(toy.targets))
    np.testing.assert_allclose(out, toy.reference(window[None])[0], rtol=1e-5, atol=ATOL)


def test_predict_batch_matches_the_numpy_reference(model, toy):
    windows = toy.window(batch=5)
    out = model.predict(windows)
    assert out.dtype == np.float32
    assert out.shape == (5, toy.horizon, len(toy.targets))
    np.testing.assert_allclose(out, toy.reference(windows), rtol=1e-5, atol=ATOL)


def test_batch_rows_equal_single_window_predictions(model, toy):
    windows = toy.window(batch=3)
    batched = model.predict(windows)
    for row in range(3):
        np.testing.assert_allclose(batched[row], model.predict(windows[row]), rtol=1e-6)


def test_unpacked_folder_artifact_predicts_the_same(make_artifact, model, toy):
    folder_model = load(make_artifact(unpacked=True))
    window = toy.window(batch=2)
    np.testing.assert_array_equal(folder_model.predict(window), model.predict(window))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int32, np.uint16])
def test_real_number_dtypes_are_accepted(model, toy, dtype):
    window = np.round(toy.window()).clip(0, None).astype(dtype)
    out = model.predict(window)
    expected = toy.reference(window.astype(np.float64)[None])[0]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=ATOL)


def test_nested_lists_are_accepted(model, toy):
    window = toy.window()
    np.testing.assert_array_equal(model.predict(window.tolist()), model.predict(window))


def test_nan_within_policy_is_imputed_as_specified(model, toy):
    # setup: feature 'b' gets [NaN, 2, NaN, NaN, 8, 9] (3 of 6 missing, limit 2)
    window = toy.window()
    window[:, 1] = [NAN, 2.0, NAN, NAN, 8.0, 9.0]
    filled = window.copy()
    filled[:, 1] = [2.0, 2.0, 4.0, 6.0, 8.0, 9.0]
    # execute
    out = model.predict(window)
    # assert
    np.testing.assert_allclose(out, toy.reference(filled[None])[0], rtol=1e-5, atol=ATOL)


def test_nan_beyond_policy_names_feature_column_and_batch_row(model, toy):
    windows = toy.window(batch=3)
    windows[2, :4, 1] = NAN  # 4 of 6 missing > 0.5
    with pytest.raises(MissingValueError, match=r"feature 'b' \(column 1\), batch row 2"):
        model.predict(windows)


def test_predict_never_modifies_the_callers_array(model, toy):
    window = toy.window(batch=2)
    window[0, 1, 2] = NAN
    before = window.copy()
    model.predict(window)
    np.testing.assert_array_equal(window, before)
    assert window.dtype == np.float64


# --- input errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("window", "dtype"),
    [
        (np.ones((6, 3), dtype=np.complex64), "complex64"),
        (np.full((6, 3), "1.0"), "<U3"),
        ([[1.0, None, 2.0]] * 6, "object"),
        (np.zeros((6, 3), dtype="datetime64[s]"), "datetime64"),
    ],
    ids=["complex", "str", "object", "datetime"],
)
def test_non_real_dtypes_are_refused_naming_the_dtype(model, window, dtype):
    with pytest.raises(InputDtypeError, match=f"dtype {dtype}"):
        model.predict(window)


@pytest.mark.parametrize(
    "shape", [(6, 4), (5, 3), (3, 6), (0, 6, 3), (1, 1, 6, 3), (18,), ()], ids=str
)
def test_wrong_shapes_are_refused_with_expected_and_got(model, shape):
    with pytest.raises(InputShapeError) as info:
        model.predict(np.zeros(shape))
    message = str(info.value)
    assert "expected shape [6, 3] or [batch, 6, 3]" in message
    assert f"got {list(shape)}" in message


def test_ragged_nested_list_is_a_shape_error(model):
    with pytest.raises(InputShapeError, match="not a rectangular array"):
        model.predict([[1.0, 2.0, 3.0]] * 5 + [[1.0, 2.0]])


@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_infinities_are_refused_naming_the_position(model, toy, value):
    windows = toy.window(batch=2)
    windows[1, 4, 2] = value
    with pytest.raises(InputError, match=r"batch row 1, step 4, feature 'c' \(column 2\)"):
        model.predict(windows)


def test_input_errors_are_value_errors_and_runtime_errors(model):
    with pytest.raises(ValueError):
        model.predict(np.zeros((2, 2)))
    with pytest.raises(EdgecompRuntimeError):
        model.predict(np.zeros((2, 2)))


# --- run_scaled, info ----------------------------------------------------------------------


def test_run_scaled_is_the_bare_model(model, toy):
    # setup
    x = np.random.default_rng(3).standard_normal((4, *toy.dims_in)).astype(np.float32)
    w, b = toy.weights
    # execute
    out = model.run_scaled(x)
    # assert
    expected = (x.reshape(4, -1) @ w + b).reshape(4, *toy.dims_out)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_run_scaled_refuses_unbatched_or_non_numeric_input(model, toy):
    with pytest.raises(InputShapeError, match="run_scaled: expected \\[batch, 6, 3\\]"):
        model.run_scaled(np.zeros(toy.dims_in, dtype=np.float32))
    with pytest.raises(InputDtypeError):
        model.run_scaled(np.zeros((1, *toy.dims_in), dtype=bool))


def test_info_summarizes_the_artifact(model, toy, toy_model_bytes):
    info = model.info()
    assert info["target"] == "x86-64-avx2"
    assert info["backend"] == "onnx" and info["precision"] == "fp32"
    assert (info["input_len"], info["horizon"]) == (toy.input_len, toy.horizon)
    assert info["features"] == list(toy.features) and info["targets"] == list(toy.targets)
    assert info["files"] == {"model.onnx": len(toy_model_bytes)}
    assert info["size_bytes"] == len(toy_model_bytes)
    assert "x86-64-avx2" in repr(model)


def test_model_attributes(model, toy):
    assert model.input_len == toy.input_len and model.horizon == toy.horizon
    assert model.features == list(toy.features) and model.targets == list(toy.targets)
    assert model.spec is model.manifest["spec"]


# --- threads -------------------------------------------------------------------------------


def test_eight_threads_predicting_at_once_match_sequential_results(model, toy):
    # setup: different windows per call, some with NaNs to exercise imputation
    windows = [toy.window(batch=1 + i % 3, seed=i) for i in range(64)]
    for i, window in enumerate(windows[::4]):
        window[0, i % toy.input_len, i % 3] = NAN
    sequential = [model.predict(w) for w in windows]
    # execute
    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(model.predict, windows))
    # assert
    for got, expected in zip(concurrent, sequential, strict=True):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("threads", [0, -1, True, 1.5, "2"])
def test_invalid_thread_counts_are_refused(make_artifact, threads):
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        load(make_artifact(), threads=threads)


def test_more_threads_give_the_same_results(make_artifact, model, toy):
    window = toy.window(batch=4)
    np.testing.assert_allclose(
        load(make_artifact(), threads=2).predict(window), model.predict(window), rtol=1e-6
    )


# --- engines -------------------------------------------------------------------------------


def test_unknown_backend_is_refused_listing_the_available_ones(make_artifact):
    path = make_artifact(manifest={"target.backend": "coreml"})
    with pytest.raises(EngineUnavailableError, match=r"backend 'coreml'.*available: \[.*'onnx'"):
        load(path)


def test_engine_argument_overrides_the_manifest_backend(make_artifact, toy):
    path = make_artifact(manifest={"target.backend": "tflite"})
    assert load(path, engine="onnx").backend == "onnx"
    with pytest.raises(EngineUnavailableError, match="backend 'nope'"):
        load(make_artifact(), engine="nope")


def test_missing_engine_package_names_the_pip_package(make_artifact, monkeypatch):
    monkeypatch.setattr(OnnxRuntimeEngine, "module", "edgecomp_absent_engine_pkg")
    with pytest.raises(EngineUnavailableError, match=r"pip install 'edgecomp-runtime\[onnx\]'"):
        load(make_artifact())


def test_get_engine_returns_the_onnx_engine():
    assert get_engine("onnx") is OnnxRuntimeEngine


def test_model_file_that_onnxruntime_cannot_parse_is_an_artifact_error(
    tmp_path, write_artifact, valid_manifest
):
    # setup: garbage bytes with a matching checksum
    garbage = b"definitely not an onnx protobuf"
    valid_manifest["files"][0].update(sha256=hashlib.sha256(garbage).hexdigest(), size=len(garbage))
    path = write_artifact(tmp_path / "garbage.edgepkg", valid_manifest, {"model.onnx": garbage})
    # execute / assert
    with pytest.raises(ArtifactError, match="model.onnx: not a readable ONNX model"):
        load(path)


def test_model_output_not_matching_the_manifest_is_refused_at_load(make_artifact, toy):
    path = make_artifact(manifest={"spec.horizon": 3, "io.outputs.0.shape": ["batch", 3, 2]})
    with pytest.raises(ArtifactError, match=r"output 'forecast': axis 1 is 2 in the model, 3 in"):
        load(path)


def test_model_input_not_matching_the_manifest_is_refused_at_load(make_artifact):
    path = make_artifact(manifest={"spec.input_len": 5, "io.inputs.0.shape": ["batch", 5, 3]})
    with pytest.raises(ArtifactError, match=r"input .window.: axis 1 is 6 in the model") as info:
        load(path)
    assert "\n" not in str(info.value)
