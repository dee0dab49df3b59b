"""The LiteRT engine: the runtime's parity and bad-input tests on a .tflite toy, int8 I/O, the
tflite-runtime fallback's parity gate.

The toy is the conftest's linear forecaster converted with litert-torch (fp32), or quantized to
full int8 with ai-edge-quantizer; the Model tests of test_runtime_model.py run on it unchanged.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert", reason="the LiteRT engine needs ai-edge-litert")
pytest.importorskip("litert_torch", reason="the .tflite toy is converted with litert-torch")
pytest.importorskip("ai_edge_quantizer", reason="the int8 toy is quantized by ai-edge-quantizer")

from test_runtime_isolation import SCRIPT  # noqa: E402
from test_runtime_model import (  # noqa: E402 - the Model tests, run here on the LiteRT engine
    model,
    test_batch_rows_equal_single_window_predictions,
    test_eight_threads_predicting_at_once_match_sequential_results,
    test_infinities_are_refused_naming_the_position,
    test_input_errors_are_value_errors_and_runtime_errors,
    test_invalid_thread_counts_are_refused,
    test_more_threads_give_the_same_results,
    test_nan_beyond_policy_names_feature_column_and_batch_row,
    test_nan_within_policy_is_imputed_as_specified,
    test_nested_lists_are_accepted,
    test_non_real_dtypes_are_refused_naming_the_dtype,
    test_predict_batch_matches_the_numpy_reference,
    test_predict_never_modifies_the_callers_array,
    test_predict_one_window_matches_the_numpy_reference,
    test_ragged_nested_list_is_a_shape_error,
    test_real_number_dtypes_are_accepted,
    test_run_scaled_is_the_bare_model,
    test_run_scaled_refuses_unbatched_or_non_numeric_input,
    test_unpacked_folder_artifact_predicts_the_same,
    test_wrong_shapes_are_refused_with_expected_and_got,
)

from edgecomp_runtime import ArtifactError, EngineUnavailableError, get_engine, load  # noqa: E402
from edgecomp_runtime.engines.litert import LiteRtEngine, check_probes  # noqa: E402

__all__ = [  # re-exported so that pytest collects them in this module, with its fixtures
    "model",
    "test_batch_rows_equal_single_window_predictions",
    "test_eight_threads_predicting_at_once_match_sequential_results",
    "test_infinities_are_refused_naming_the_position",
    "test_input_errors_are_value_errors_and_runtime_errors",
    "test_invalid_thread_counts_are_refused",
    "test_more_threads_give_the_same_results",
    "test_nan_beyond_policy_names_feature_column_and_batch_row",
    "test_nan_within_policy_is_imputed_as_specified",
    "test_nested_lists_are_accepted",
    "test_non_real_dtypes_are_refused_naming_the_dtype",
    "test_predict_batch_matches_the_numpy_reference",
    "test_predict_never_modifies_the_callers_array",
    "test_predict_one_window_matches_the_numpy_reference",
    "test_ragged_nested_list_is_a_shape_error",
    "test_real_number_dtypes_are_accepted",
    "test_run_scaled_is_the_bare_model",
    "test_run_scaled_refuses_unbatched_or_non_numeric_input",
    "test_unpacked_folder_artifact_predicts_the_same",
    "test_wrong_shapes_are_refused_with_expected_and_got",
]

MODEL_FILE = "model.tflite"


def _toy_module(toy: Any) -> Any:
    import torch

    weight, bias = (torch.from_numpy(a) for a in toy.weights)

    class Linear(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = x.reshape(x.shape[0], -1) @ weight + bias
            return y.reshape(x.shape[0], toy.horizon, len(toy.targets))

    return Linear().eval()


@pytest.fixture(scope="session")
def tflite_source(toy) -> bytes:
    from edgecomp.targets.tflite.convert import convert_module

    return convert_module(_toy_module(toy), toy.input_len, len(toy.features))


@pytest.fixture(scope="session")
def tflite_fp32(tflite_source) -> bytes:
    from edgecomp.targets.tflite.convert import compact

    return compact(tflite_source)


@pytest.fixture(scope="session")
def tflite_int8(toy, tflite_source) -> bytes:
    from edgecomp.targets.tflite.convert import compact
    from edgecomp.targets.tflite.quantize import QuantSettings, quantize

    scaled = np.random.default_rng(3).standard_normal((64, toy.input_len, len(toy.features)))
    return compact(quantize(tflite_source, "int8", scaled.astype(np.float32), QuantSettings(), []))


def _io_entry(name: str, dims: list[int], detail: dict[str, Any]) -> dict[str, Any]:
    entry = {"name": name, "shape": ["batch", *dims], "dtype": detail["dtype"].__name__}
    if detail["dtype"] == np.int8:
        scale, zero = detail["quantization"]
        entry |= {"scale": float(scale), "zero_point": int(zero)}
    return entry


def tflite_manifest(toy: Any, model: bytes) -> dict[str, Any]:
    """The toy's manifest for a .tflite model file (io read from the model itself)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model)
    manifest = toy.manifest(model)
    manifest["target"] |= {"name": "arm64-gateway", "backend": "tflite", "arch": "aarch64"}
    manifest["model_file"] = MODEL_FILE
    manifest["files"][0]["name"] = MODEL_FILE
    manifest["io"] = {
        "inputs": [_io_entry("args_0", toy.dims_in, interpreter.get_input_details()[0])],
        "outputs": [_io_entry("output_0", toy.dims_out, interpreter.get_output_details()[0])],
    }
    return manifest


@pytest.fixture
def make_artifact(tmp_path, toy, tflite_fp32, set_path, write_artifact) -> Callable[..., Path]:
    """Like the conftest's make_artifact, for the .tflite toy (``model_bytes`` picks another)."""
    counter = iter(range(10_000))

    def make(
        *,
        manifest: dict[str, Any] | None = None,
        unpacked: bool = False,
        model_bytes: bytes | None = None,
    ) -> Path:
        model = tflite_fp32 if model_bytes is None else model_bytes
        data = tflite_manifest(toy, model)
        for path, value in (manifest or {}).items():
            set_path(data, path, copy.deepcopy(value))
        dest = tmp_path / f"toy{next(counter)}{'' if unpacked else '.edgepkg'}"
        return write_artifact(dest, data, {MODEL_FILE: model}, unpacked=unpacked)

    return make


def test_get_engine_returns_the_litert_engine():
    assert get_engine("tflite") is LiteRtEngine


def test_artifact_loads_on_the_litert_engine(make_artifact):
    model = load(make_artifact())
    assert model.backend == "tflite"
    assert isinstance(model._engine, LiteRtEngine)


def test_int8_io_is_quantized_inside_the_engine(make_artifact, toy, tflite_int8):
    # setup: the full-int8 toy; users still pass raw values
    model = load(make_artifact(model_bytes=tflite_int8))
    assert model.manifest["io"]["inputs"][0]["dtype"] == "int8"
    window = toy.window(batch=16, seed=5)
    # execute
    got = model.predict(window)
    # assert: within a few int8 output steps of the float reference, in raw units
    scale = model.manifest["io"]["outputs"][0]["scale"]
    target_std = np.array([toy.std[toy.features.index(t)] for t in toy.targets])
    error = np.abs(got - toy.reference(window)) / target_std
    assert error.max() < 10 * scale
    assert error.max() > 0  # it really is quantized


def test_int8_scale_differing_from_the_manifest_is_refused(make_artifact, tflite_int8):
    path = make_artifact(model_bytes=tflite_int8, manifest={"io.inputs.0.scale": 0.5})
    with pytest.raises(ArtifactError, match=r"io\.inputs\[0\] scale/zero_point 0\.5/"):
        load(path)


def test_xnnpack_off_gives_the_same_results(make_artifact, toy):
    window = toy.window(batch=3)
    plain = load(make_artifact(manifest={"recipe.lowering": {"xnnpack": False}}))
    np.testing.assert_allclose(plain.predict(window), load(make_artifact()).predict(window), 1e-5)


def test_a_file_litert_cannot_parse_is_an_artifact_error(tmp_path, toy, write_artifact):
    garbage = b"definitely not a flatbuffer"
    manifest = toy.manifest(garbage)
    manifest["target"]["backend"] = "tflite"
    manifest["model_file"] = manifest["files"][0]["name"] = MODEL_FILE
    path = write_artifact(tmp_path / "bad.edgepkg", manifest, {MODEL_FILE: garbage})
    with pytest.raises(ArtifactError, match="model.tflite: not a readable TFLite model"):
        load(path)  # edgecomp_runtime.opcheck reads it before the engine does


def _probes(engine: LiteRtEngine, x: np.ndarray, out: np.ndarray, atol: float) -> dict:
    def encode(a: np.ndarray) -> str:
        return base64.b64encode(a.astype("<f4").tobytes()).decode()

    return {
        "encoding": "float32-le-base64",
        "inputs": encode(x),
        "outputs": encode(out),
        "atol": atol,
    }


def test_fallback_parity_gate_accepts_matching_and_refuses_differing_probes(toy, tflite_fp32):
    # setup: the gate run on a real interpreter, with the probes a build would store
    engine = LiteRtEngine(tflite_fp32, tflite_manifest(toy, tflite_fp32), threads=1)
    x = np.random.default_rng(0).standard_normal((2, toy.input_len, 3)).astype(np.float32)
    out = engine.run(x)
    # execute / assert
    check_probes(engine, _probes(engine, x, out, 1e-5), "tflite_runtime")
    with pytest.raises(EngineUnavailableError, match=r"tflite_runtime gives results that differ"):
        check_probes(engine, _probes(engine, x, out + 0.01, 1e-5), "tflite_runtime")
    with pytest.raises(EngineUnavailableError, match="has none readable"):
        check_probes(engine, None, "tflite_runtime")


@pytest.mark.skipif(
    importlib.util.find_spec("tflite_runtime") is not None,
    reason="tflite-runtime is installed here; this checks the refusal without it",
)
def test_tflite_runtime_fallback_is_refused_when_not_installed(toy, tflite_fp32):
    manifest = tflite_manifest(toy, tflite_fp32)
    with pytest.raises(EngineUnavailableError, match="tflite_runtime cannot be imported"):
        LiteRtEngine(tflite_fp32, manifest, threads=1, module="tflite_runtime")


def test_manifest_checksum_of_the_tflite_file_is_checked(make_artifact):
    bad = hashlib.sha256(b"other").hexdigest()
    with pytest.raises(ArtifactError, match="sha256"):
        load(make_artifact(manifest={"files.0.sha256": bad}))


def test_litert_artifact_loads_neither_torch_nor_edgecomp_nor_onnxruntime(make_artifact, run_fresh):
    # execute: a fresh interpreter, so nothing the test process imported leaks in
    modules = run_fresh(SCRIPT, str(make_artifact()))
    # assert
    assert modules["predict"] == {"onnxruntime": False, "torch": False, "edgecomp": False}
    assert modules["shape"] == [2, 2]


# --- batches: a pinned batch-N copy, one invoke per N windows ---------------------------------


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_batch_rows_run_in_one_invoke_and_equal_one_by_one(
    toy, tflite_fp32, tflite_int8, precision
):
    from edgecomp_runtime.engines.litert_batch import pin_batch

    # setup
    data = {"fp32": tflite_fp32, "int8": tflite_int8}[precision]
    manifest = tflite_manifest(toy, data)
    single = LiteRtEngine(data, manifest, threads=1)
    manifest["recipe"] = {"lowering": {"batch_rows": 4}}
    batched = LiteRtEngine(data, manifest, threads=1)
    x = np.random.default_rng(5).standard_normal((10, toy.input_len, len(toy.features)))
    x = x.astype(np.float32)
    # execute
    out = batched.run(x)
    # assert: 8 windows in two invokes of the batch-4 copy, 2 one by one; the same results
    assert batched.batch_rows == 4
    assert batched._local.by_rows[4].get_input_details()[0]["shape"][0] == 4
    np.testing.assert_allclose(out, single.run(x), rtol=0, atol=1e-6)
    assert pin_batch(data, 4) is not None


def test_a_graph_that_moves_the_batch_axis_is_not_pinned():
    import torch

    from edgecomp.targets.tflite.convert import convert_module
    from edgecomp_runtime.engines.litert_batch import pin_batch

    class Swap(torch.nn.Module):  # [B, L, F] -> [L, B, F]: the batch is no longer axis 0
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.permute(1, 0, 2) * 2.0

    data = convert_module(Swap().eval(), 3, 2)
    assert pin_batch(data, 4) is None


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_a_remainder_runs_in_power_of_two_copies_and_equals_one_by_one(
    toy, tflite_fp32, tflite_int8, precision
):
    # setup
    data = {"fp32": tflite_fp32, "int8": tflite_int8}[precision]
    manifest = tflite_manifest(toy, data)
    single = LiteRtEngine(data, manifest, threads=1)
    manifest["recipe"] = {"lowering": {"batch_rows": 8, "batch_min_rows": 2}}
    split = LiteRtEngine(data, manifest, threads=1)
    manifest["recipe"] = {"lowering": {"batch_rows": 8}}
    whole = LiteRtEngine(data, manifest, threads=1)
    x = np.random.default_rng(6).standard_normal((15, toy.input_len, len(toy.features)))
    x = x.astype(np.float32)
    # execute
    out, rest = split.run(x), whole.run(x)
    # assert: 15 = 8 + 4 + 2 + 1 with batch_min_rows, 8 + 7 x 1 without; each interpreter holds
    # its own batch size; the same results as one invoke per window
    assert sorted(split._local.by_rows) == [1, 2, 4, 8]
    assert sorted(whole._local.by_rows) == [1, 8]
    for rows, interpreter in split._local.by_rows.items():
        assert interpreter.get_input_details()[0]["shape"][0] == rows
    expected = single.run(x)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(rest, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("least", "n", "chunks"),
    [
        (2, 63, [32, 16, 8, 4, 2, 1]),
        (2, 130, [64, 64, 2]),
        (8, 63, [32, 16, 8] + [1] * 7),
        (32, 31, [1] * 31),
        (0, 66, [64, 1, 1]),
        (64, 3, [1] * 3),  # not below batch_rows: ignored
        ("2", 3, [1] * 3),  # not an int: ignored
        (1, 3, [1] * 3),  # one window per invoke is the default anyway
    ],
)
def test_batch_min_rows_splits_the_rest_into_powers_of_two(toy, tflite_fp32, least, n, chunks):
    # setup
    manifest = tflite_manifest(toy, tflite_fp32)
    manifest["recipe"] = {"lowering": {"batch_rows": 64, "batch_min_rows": least}}
    engine = LiteRtEngine(tflite_fp32, manifest, threads=1)
    # execute / assert
    assert engine._chunks(n) == chunks
