"""Batch routing: an artifact whose build measured a second engine faster on large batches runs
them there (``recipe.lowering.batch_routing``), and the rest on its main engine."""

from __future__ import annotations

import importlib.util
import threading
import time
import warnings

import numpy as np
import pytest

from edgecomp_runtime import ArtifactError, load
from edgecomp_runtime import engines as engines_module
from edgecomp_runtime.engines import BatchRouter, LazyEngine
from edgecomp_runtime.engines.onnxruntime import OnnxRuntimeEngine
from edgecomp_runtime.engines.openvino import OpenVinoEngine

needs_openvino = pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None,
    reason="openvino is not installed: pip install 'edgecomp-runtime[openvino]'",
)
ROUTED = {
    "recipe.lowering": {
        "engine": "onnx",
        "equivalent_engines": ["openvino"],
        "batch_routing": {"engine": "openvino", "min_batch": 8},
    }
}


@pytest.fixture
def fresh_warnings(monkeypatch):
    """This process has not warned about a fallback yet."""
    monkeypatch.setattr(engines_module, "_WARNED", set())


@needs_openvino
def test_batches_from_min_batch_run_on_the_routed_engine_the_rest_on_the_main(make_artifact, toy):
    # setup
    model = load(make_artifact(manifest=ROUTED))
    router = model.engine
    # execute + assert: the routed engine's session is made by the first large batch only
    assert isinstance(router, BatchRouter) and model.backend == "onnx"
    small = model.predict(toy.window(7))
    assert router.routed._engine is None
    large = [model.predict(toy.window(8)) for _ in range(3)]  # the fast path's binding too
    assert isinstance(router.routed._engine, OpenVinoEngine)
    assert isinstance(router.engine_for(7), OnnxRuntimeEngine)
    assert router.engine_for(8) is router.routed and router.engine_for(64) is router.routed
    np.testing.assert_allclose(small, toy.reference(toy.window(7)), rtol=1e-4, atol=1e-4)
    for y in large:
        np.testing.assert_allclose(y, toy.reference(toy.window(8)), rtol=1e-4, atol=1e-4)
    scaled = model.run_scaled(np.zeros((9, toy.input_len, len(toy.features)), np.float32))
    assert scaled.shape == (9, toy.horizon, len(toy.targets))


@needs_openvino
def test_bench_says_which_engine_runs_large_batches(make_artifact):
    from edgecomp_runtime.bench import _engine_info

    # execute
    routed, plain = (
        _engine_info(load(make_artifact(manifest=ROUTED))),
        _engine_info(load(make_artifact())),
    )
    # assert
    assert routed["batch_routing"] == {"engine": "openvino", "min_batch": 8}
    assert "batches of 8+ windows on openvino" in routed["note"]
    assert "batch_routing" not in plain


@needs_openvino
def test_a_requested_engine_runs_every_batch(make_artifact):
    # setup
    path = make_artifact(manifest=ROUTED)
    # execute
    model = load(path, engine="onnx")
    # assert
    assert isinstance(model.engine, OnnxRuntimeEngine)


@pytest.mark.parametrize("routed", ["openvino", "quantum"])
def test_a_missing_routed_engine_leaves_every_batch_on_the_main_and_says_so_once(
    make_artifact, toy, monkeypatch, fresh_warnings, routed
):
    # setup: OpenVINO looks uninstalled; "quantum" is an engine this runtime does not know
    monkeypatch.setattr(OpenVinoEngine, "module", "edgecomp_absent_openvino")
    lowering = {**ROUTED["recipe.lowering"], "batch_routing": {"engine": routed, "min_batch": 8}}
    path = make_artifact(manifest={"recipe.lowering": lowering})
    # execute
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first, second = load(path), load(path)
    # assert
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1, messages
    assert f"engine for batches of 8+ windows '{routed}' is unavailable" in messages[0]
    assert "running it on 'onnx'" in messages[0]
    assert isinstance(first.engine, OnnxRuntimeEngine)
    assert isinstance(second.engine, OnnxRuntimeEngine)
    y = first.predict(toy.window(9))
    np.testing.assert_allclose(y, toy.reference(toy.window(9)), rtol=1e-4, atol=1e-4)


def test_routing_to_the_main_engine_is_no_routing(make_artifact):
    lowering = {"engine": "onnx", "batch_routing": {"engine": "onnx", "min_batch": 4}}
    model = load(make_artifact(manifest={"recipe.lowering": lowering}))
    assert isinstance(model.engine, OnnxRuntimeEngine)


@pytest.mark.parametrize(
    "routing",
    [
        {"engine": "openvino", "min_batch": 1},
        {"engine": "openvino", "min_batch": True},
        {"engine": "openvino", "min_batch": "8"},
        {"min_batch": 8},
        ["openvino", 8],
    ],
)
def test_a_malformed_routing_is_refused_naming_the_field(make_artifact, routing):
    path = make_artifact(manifest={"recipe.lowering": {"engine": "onnx", "batch_routing": routing}})
    with pytest.raises(ArtifactError, match=r"recipe\.lowering\.batch_routing must be"):
        load(path)


def test_the_lazy_engine_is_made_once_under_concurrent_first_calls():
    # setup: a slow constructor, eight threads asking at once
    made = []

    class Slow:
        def __init__(self):
            time.sleep(0.05)
            made.append(self)

        def run(self, x):
            return x * 2

    lazy = LazyEngine(Slow)
    barrier = threading.Barrier(8)
    out = []

    def call():
        barrier.wait()
        out.append(lazy.run(np.ones(3)))

    # execute
    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # assert
    assert len(made) == 1
    assert len(out) == 8 and all((y == 2).all() for y in out)
    x = np.ones(2)
    assert (lazy.bind(x, (2,))() == 2).all()  # no bind of its own: its run on the bound array


@needs_openvino
@pytest.mark.parametrize("precision", ["f32", "bf16"])
def test_openvino_compiles_at_the_recorded_inference_precision(make_artifact, toy, precision):
    # setup
    lowering = {"engine": "openvino", "openvino": {"inference_precision": precision}}
    path = make_artifact(manifest={"recipe.lowering": lowering})
    # execute
    model = load(path)
    # assert
    hint = model.engine._compiled.get_property("INFERENCE_PRECISION_HINT")
    assert hint.get_type_name() == precision
    y = model.predict(toy.window(2))
    np.testing.assert_allclose(y, toy.reference(toy.window(2)), rtol=2e-2, atol=2e-2)


def test_an_unknown_openvino_precision_is_refused_naming_the_field(make_artifact):
    lowering = {"engine": "onnx", "openvino": {"inference_precision": "f16"}}
    manifest = {"model_file": "model.onnx", "recipe": {"lowering": lowering}}
    from edgecomp_runtime.engines.openvino import inference_precision

    with pytest.raises(ArtifactError, match=r"openvino\.inference_precision is 'f16'"):
        inference_precision(manifest)
    assert inference_precision({"recipe": {"lowering": {}}}) == "f32"
