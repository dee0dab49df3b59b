"""The ExecuTorch engine: the runtime's Model tests on a .pte toy, batches beyond the memory plan,
bad programs and manifests, and the torch it needs.

The toy is the conftest's linear forecaster, exported with torch.export and lowered to XNNPACK by
targets/executorch/lower.py (dynamic batch up to MAX_BATCH windows per call).
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("executorch", reason="the ExecuTorch engine needs executorch")
pytest.importorskip("torch", reason="ExecuTorch's Python runtime needs torch")

from test_runtime_model import (  # noqa: E402 - the Model tests, run here on the ExecuTorch engine
    model,
    test_batch_rows_equal_single_window_predictions,
    test_eight_threads_predicting_at_once_match_sequential_results,
    test_infinities_are_refused_naming_the_position,
    test_more_threads_give_the_same_results,
    test_nan_within_policy_is_imputed_as_specified,
    test_predict_batch_matches_the_numpy_reference,
    test_predict_never_modifies_the_callers_array,
    test_predict_one_window_matches_the_numpy_reference,
    test_run_scaled_is_the_bare_model,
    test_unpacked_folder_artifact_predicts_the_same,
    test_wrong_shapes_are_refused_with_expected_and_got,
)

from edgecomp.targets.executorch import engine as engine_module  # noqa: E402 - registers it
from edgecomp.targets.executorch.engine import ExecuTorchEngine  # noqa: E402
from edgecomp_runtime import ArtifactError, EngineUnavailableError, get_engine, load  # noqa: E402

__all__ = [  # re-exported so that pytest collects them in this module, with its fixtures
    "model",
    "test_batch_rows_equal_single_window_predictions",
    "test_eight_threads_predicting_at_once_match_sequential_results",
    "test_infinities_are_refused_naming_the_position",
    "test_more_threads_give_the_same_results",
    "test_nan_within_policy_is_imputed_as_specified",
    "test_predict_batch_matches_the_numpy_reference",
    "test_predict_never_modifies_the_callers_array",
    "test_predict_one_window_matches_the_numpy_reference",
    "test_run_scaled_is_the_bare_model",
    "test_unpacked_folder_artifact_predicts_the_same",
    "test_wrong_shapes_are_refused_with_expected_and_got",
]

MODEL_FILE = "model.pte"
MAX_BATCH = 16  # the smallest plan the target allows: batches above it are split by the engine


@pytest.fixture(scope="session")
def pte(toy) -> bytes:
    import torch

    from edgecomp.spec import Model, ModelSpec
    from edgecomp.targets.executorch import lower

    weight, bias = (torch.from_numpy(a) for a in toy.weights)

    class Linear(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = x.reshape(x.shape[0], -1) @ weight + bias
            return y.reshape(x.shape[0], toy.horizon, len(toy.targets))

    spec = ModelSpec.from_dict(copy.deepcopy(toy.manifest(b"")["spec"]))
    return lower.to_pte(lower.export(Model(Linear().eval(), spec), MAX_BATCH)).pte


def pte_manifest(toy: Any, model: bytes) -> dict[str, Any]:
    """The toy's manifest for a .pte model file."""
    manifest = toy.manifest(model)
    manifest["target"] |= {"name": "x86-64-executorch", "backend": "executorch"}
    manifest["model_file"] = manifest["files"][0]["name"] = MODEL_FILE
    manifest["recipe"]["lowering"] = {"max_batch": MAX_BATCH}
    return manifest


@pytest.fixture
def make_artifact(tmp_path, toy, pte, set_path, write_artifact) -> Callable[..., Path]:
    """Like the conftest's make_artifact, for the .pte toy (``model_bytes`` picks another)."""
    counter = iter(range(10_000))

    def make(
        *,
        manifest: dict[str, Any] | None = None,
        unpacked: bool = False,
        model_bytes: bytes | None = None,
    ) -> Path:
        model = pte if model_bytes is None else model_bytes
        data = pte_manifest(toy, model)
        for path, value in (manifest or {}).items():
            set_path(data, path, copy.deepcopy(value))
        dest = tmp_path / f"toy{next(counter)}{'' if unpacked else '.edgepkg'}"
        return write_artifact(dest, data, {MODEL_FILE: model}, unpacked=unpacked)

    return make


def test_artifact_loads_on_the_executorch_engine(make_artifact):
    assert get_engine("executorch") is ExecuTorchEngine
    model = load(make_artifact())
    assert model.backend == "executorch" and isinstance(model.engine, ExecuTorchEngine)


def test_a_batch_beyond_the_memory_plan_is_split_and_matches(make_artifact, toy):
    # setup: more windows than the program's plan holds, and not a multiple of it
    window = toy.window(batch=2 * MAX_BATCH + 5, seed=4)
    # execute
    got = load(make_artifact()).predict(window)
    # assert
    np.testing.assert_allclose(got, toy.reference(window), rtol=1e-4, atol=1e-4)


def test_a_smaller_recorded_max_batch_splits_sooner(make_artifact, toy):
    window = toy.window(batch=7, seed=6)
    model = load(make_artifact(manifest={"recipe.lowering.max_batch": 3}))
    assert model.engine._max_batch == 3
    np.testing.assert_allclose(model.predict(window), toy.reference(window), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("bad", [0, -2, True, "16"])
def test_a_bad_recorded_max_batch_is_an_artifact_error(make_artifact, bad):
    with pytest.raises(ArtifactError, match=r"recipe\.lowering\.max_batch must be a positive"):
        load(make_artifact(manifest={"recipe.lowering.max_batch": bad}))


def test_io_differing_from_the_program_is_refused(toy, pte):
    # setup: a manifest (already past the runtime's own checks) whose output disagrees
    manifest = pte_manifest(toy, pte)
    manifest["io"]["outputs"][0]["shape"] = ["batch", 3, 2]
    # execute + assert
    with pytest.raises(ArtifactError, match=r"io\.outputs\[0\]\.shape \['batch', 3, 2\] does not"):
        ExecuTorchEngine(pte, manifest, threads=1)


def test_a_file_executorch_cannot_parse_is_an_artifact_error(make_artifact):
    path = make_artifact(model_bytes=b"definitely not a program")
    with pytest.raises(ArtifactError, match="model.pte: executorch cannot load the program"):
        load(path)


def test_without_torch_the_engine_says_it_needs_torch(toy, pte, monkeypatch):
    # setup: torch cannot be imported (as on a gateway with only numpy and executorch)
    monkeypatch.setitem(sys.modules, "torch", None)
    # execute + assert
    with pytest.raises(EngineUnavailableError) as info:
        ExecuTorchEngine(pte, pte_manifest(toy, pte), threads=1)
    assert str(info.value) == engine_module.NEEDS_TORCH
    assert str(info.value).endswith("pip install 'edgecomp[executorch]'")
