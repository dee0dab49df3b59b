"""TensorRT engine: plan cache keys, onnxruntime fallback with a named reason, GPU path (marked)."""

from __future__ import annotations

import importlib.util
import json
import warnings

import numpy as np
import pytest

import edgecomp_runtime
from edgecomp_runtime.engines import get_engine
from edgecomp_runtime.engines.tensorrt import (
    PlanCache,
    PlanKey,
    TensorRtEngine,
    _build_plan,
    _builder_settings,
)
from edgecomp_runtime.errors import ArtifactError

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
HAS_RTX = importlib.util.find_spec("tensorrt_rtx") is not None
KEY = PlanKey("10.3.0", "Orin", "8.7", "fp16", "ab" * 32)


class Builds:
    """A plan builder that counts its calls and returns distinct bytes each time."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> bytes:
        self.calls += 1
        return f"plan-{self.calls}".encode()


def test_registry_resolves_the_tensorrt_engine():
    assert get_engine("tensorrt") is TensorRtEngine


def test_plan_is_built_once_then_reused(tmp_path):
    # setup
    cache, build = PlanCache(tmp_path), Builds()
    # execute
    first = cache.get_or_build(KEY, build)
    second = PlanCache(tmp_path).get_or_build(KEY, build)
    # assert
    assert first == (b"plan-1", False)
    assert second == (b"plan-1", True)
    assert build.calls == 1
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("field", PlanKey._fields)
def test_any_key_change_rebuilds(tmp_path, field):
    # setup
    cache, build = PlanCache(tmp_path), Builds()
    cache.get_or_build(KEY, build)
    other = KEY._replace(**{field: "other"})
    # execute
    plan, cached = cache.get_or_build(other, build)
    # assert
    assert (plan, cached, build.calls) == (b"plan-2", False, 2)
    assert cache.load(KEY) == b"plan-1"  # the first device's plan is still there, untouched


def test_a_plan_filed_under_another_key_is_never_loaded(tmp_path):
    # setup: the files for KEY now claim to be for another GPU
    cache, build = PlanCache(tmp_path), Builds()
    cache.get_or_build(KEY, build)
    meta_path = tmp_path / f"{KEY.digest()}.json"
    meta = json.loads(meta_path.read_text())
    meta["key"]["gpu"] = "Xavier"
    meta_path.write_text(json.dumps(meta))
    # execute
    with pytest.warns(RuntimeWarning, match="rebuilding"):
        plan, cached = cache.get_or_build(KEY, build)
    # assert
    assert (plan, cached) == (b"plan-2", False)
    assert json.loads(meta_path.read_text())["key"]["gpu"] == "Orin"


def test_a_damaged_plan_is_rebuilt(tmp_path):
    # setup
    cache, build = PlanCache(tmp_path), Builds()
    cache.get_or_build(KEY, build)
    (tmp_path / f"{KEY.digest()}.plan").write_bytes(b"truncated")
    # execute
    plan, cached = cache.get_or_build(KEY, build)
    # assert
    assert (plan, cached) == (b"plan-2", False)


def test_cache_folder_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECOMP_TRT_CACHE", str(tmp_path / "trt"))
    assert PlanCache().root == tmp_path / "trt"


@pytest.mark.parametrize(
    "manifest", [{}, {"recipe": None}, {"recipe": {"lowering": {"tensorrt": {}}}}]
)
def test_a_manifest_without_builder_shapes_is_an_artifact_error(manifest):
    with pytest.raises(ArtifactError, match="recipe.lowering.tensorrt.shapes"):
        _builder_settings(manifest, "model.onnx")


def _settings(toy, **extra):
    shapes = [[b, toy.input_len, len(toy.features)] for b in (1, 4, 16)]
    return {"flags": [], "clear_flags": ["TF32"], "workspace_mb": 64, "shapes": shapes, **extra}


@pytest.mark.skipif(not HAS_RTX, reason="needs tensorrt-rtx: pip install 'edgecomp[tensorrt]'")
def test_device_plan_builder_runs_on_a_real_tensorrt_builder(toy, toy_model_bytes):
    # setup: tensorrt-rtx has the TensorRT builder API and builds without a GPU
    import tensorrt_rtx as trt

    # execute
    plan = _build_plan(trt, toy_model_bytes, _settings(toy), "model.onnx")
    # assert
    assert isinstance(plan, bytes) and len(plan) > 1000


@pytest.mark.skipif(not HAS_RTX, reason="needs tensorrt-rtx: pip install 'edgecomp[tensorrt]'")
def test_device_plan_builder_names_a_parse_failure_and_an_unknown_flag(toy, toy_model_bytes):
    import tensorrt_rtx as trt

    with pytest.raises(ArtifactError, match="model.onnx: TensorRT .* cannot parse"):
        _build_plan(trt, b"not an onnx model", _settings(toy), "model.onnx")
    with pytest.raises(ArtifactError, match="builder flag 'NO_SUCH_FLAG'"):
        _build_plan(trt, toy_model_bytes, _settings(toy, flags=["NO_SUCH_FLAG"]), "model.onnx")


@pytest.mark.skipif(HAS_TENSORRT, reason="tensorrt is installed: no fallback to test")
def test_without_tensorrt_the_model_runs_on_onnxruntime_and_says_why(make_artifact, toy):
    # setup
    path = make_artifact(manifest={"target.backend": "tensorrt", "target.name": "jetson-orin-nano"})
    raw = toy.window(batch=5)
    # execute
    with pytest.warns(RuntimeWarning, match="TensorRT is not used.*tensorrt.*onnxruntime") as rec:
        model = edgecomp_runtime.load(path)
    out = model.predict(raw)
    # assert
    engine = model.engine
    assert engine.fallback_reason and "tensorrt" in engine.fallback_reason
    assert engine.ran_on.startswith("onnxruntime") and engine.plan_cached is None
    assert "model.onnx" in str(rec[0].message)
    np.testing.assert_allclose(out, toy.reference(raw), rtol=1e-4, atol=1e-3)


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TENSORRT, reason="needs TensorRT (JetPack) and an NVIDIA GPU")
def test_tensorrt_builds_caches_and_matches_onnxruntime(make_artifact, toy, tmp_path, monkeypatch):
    # setup
    monkeypatch.setenv("EDGECOMP_TRT_CACHE", str(tmp_path / "trt"))
    builder = _settings(toy)
    overrides = {"target.backend": "tensorrt", "recipe": {"lowering": {"tensorrt": builder}}}
    path = make_artifact(manifest=overrides)
    raw = toy.window(batch=20)  # above the max batch: runs in chunks
    # execute
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning allowed here
        first = edgecomp_runtime.load(path)
        second = edgecomp_runtime.load(path)
    # assert
    assert first.engine.plan_cached is False and second.engine.plan_cached is True
    assert first.engine.ran_on.startswith("tensorrt")
    np.testing.assert_allclose(second.predict(raw), toy.reference(raw), rtol=1e-3, atol=1e-2)
