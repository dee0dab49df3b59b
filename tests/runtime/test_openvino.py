"""The OpenVINO engine: parity with onnxruntime, the build's engine choice, and its fallback."""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pytest

from edgecomp_runtime import EngineUnavailableError, load
from edgecomp_runtime import engines as engines_module
from edgecomp_runtime.engines.openvino import OpenVinoEngine

needs_openvino = pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None,
    reason="openvino is not installed: pip install 'edgecomp-runtime[openvino]'",
)
CHOSEN = {"recipe.lowering": {"engine": "openvino", "equivalent_engines": ["onnx"]}}


@pytest.fixture
def no_openvino(monkeypatch):
    """OpenVINO looks uninstalled, and this process has not warned about a fallback yet."""
    monkeypatch.setattr(engines_module, "REGISTERED", {})
    monkeypatch.setattr(engines_module, "_WARNED", set())
    monkeypatch.setattr(OpenVinoEngine, "module", "edgecomp_absent_openvino")


@needs_openvino
@pytest.mark.parametrize("batch", [1, 64])
def test_openvino_matches_onnxruntime_on_the_same_artifact(make_artifact, toy, batch):
    # setup
    path = make_artifact()
    window = toy.window(batch)
    # execute
    on_ort = load(path).predict(window)
    on_ov = load(path, engine="openvino").predict(window)
    # assert
    assert on_ov.shape == on_ort.shape == (batch, toy.horizon, len(toy.targets))
    np.testing.assert_allclose(on_ov, on_ort, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(on_ov, toy.reference(window), rtol=1e-4, atol=1e-4)


@needs_openvino
def test_the_engine_the_build_chose_is_the_one_loaded(make_artifact, toy):
    # setup
    path = make_artifact(manifest=CHOSEN)
    # execute
    model = load(path)
    # assert
    assert model.backend == "openvino"
    assert isinstance(model.engine, OpenVinoEngine)
    np.testing.assert_allclose(model.predict(toy.window(3)), toy.reference(toy.window(3)), 1e-4)


def test_a_missing_engine_falls_back_to_a_recorded_equivalent_and_says_so_once(
    make_artifact, toy, no_openvino
):
    # setup
    path = make_artifact(manifest=CHOSEN)
    # execute
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first, second = load(path), load(path)
    # assert
    assert first.backend == second.backend == "onnx"
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1, messages
    assert "'openvino' is unavailable" in messages[0] and "running it on 'onnx'" in messages[0]
    np.testing.assert_allclose(first.predict(toy.window(2)), toy.reference(toy.window(2)), 1e-4)


def test_without_a_recorded_equivalent_the_error_names_the_extra(make_artifact, no_openvino):
    # setup: the build chose OpenVINO and measured no other engine on this file
    path = make_artifact(manifest={"recipe.lowering": {"engine": "openvino"}})
    # execute
    with pytest.raises(EngineUnavailableError) as info:
        load(path)
    # assert
    message = str(info.value)
    assert message.endswith("pip install 'edgecomp-runtime[openvino]'"), message
    assert "\n" not in message


def test_an_equivalent_that_is_missing_too_is_no_fallback(make_artifact, no_openvino, monkeypatch):
    # setup: onnxruntime is "missing" as well
    onnx_engine = engines_module.get_engine("onnx")
    monkeypatch.setattr(onnx_engine, "module", "edgecomp_absent_onnxruntime")
    path = make_artifact(manifest=CHOSEN)
    # execute + assert
    with pytest.raises(EngineUnavailableError) as info:
        load(path)
    message = str(info.value)
    assert "pip install 'edgecomp-runtime[openvino]'" in message
    assert "equivalent engines the build measured, ['onnx']" in message


@needs_openvino
def test_bench_calls_the_builds_chosen_engine_native(make_artifact):
    from edgecomp_runtime.bench import _engine_info

    # setup
    chosen, forced = load(make_artifact(manifest=CHOSEN)), load(make_artifact(), engine="openvino")
    # execute
    info, other = _engine_info(chosen), _engine_info(forced)
    # assert: the build's choice is the artifact's own engine; a forced engine is not
    assert info["native"] and info["engine"].startswith("openvino ")
    assert not other["native"] and "a onnx artifact run on openvino" in other["note"]
