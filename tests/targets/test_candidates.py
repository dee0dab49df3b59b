"""x86 candidate selection: the fastest (lowering, engine, threads) that passes parity wins, and
the manifest records the choice and every measured alternative."""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from edgecomp.models import build_model
from edgecomp.spec import Model
from edgecomp.targets import TargetError, get_profile, get_target
from edgecomp.targets.onnx import OnnxTarget
from edgecomp.targets.onnx import candidates as cand
from helpers.testing import TINY_HPARAMS, sine_windows, tiny_spec

pytestmark = [
    pytest.mark.target,
    pytest.mark.skipif(not OnnxTarget.is_available(), reason=OnnxTarget.missing_reason()),
]
PROFILE = get_profile("x86-64-avx2")
HAS_OPENVINO = "openvino" in cand.available_engines()


def _measured(engine: str, b1: float, b64: float, diff: float = 0.0, error: str = ""):
    return cand.Measurement(
        cand.Candidate("default", engine, 1), {"b1": b1, "b64": b64}, diff, 0.01, "1.0", error
    )


def _tiny(arch: str = "gru") -> Model:
    spec = dataclasses.replace(tiny_spec(arch), hparams=TINY_HPARAMS[arch])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return Model(module=build_model(spec).eval(), spec=spec)


def _windows() -> np.ndarray:
    spec = tiny_spec()
    return sine_windows(100, spec.input_len, spec.horizon, spec.n_features, 2, 0).x


def _emit(tmp_path: Path, precision: str = "int8", **options):
    profile = dataclasses.replace(PROFILE, options={**PROFILE.options, **options})
    return get_target("onnx")().emit(
        _tiny(), profile, tmp_path, precision=precision, calibration=_windows()
    )


def test_the_lowest_score_among_those_that_passed_parity_wins():
    # setup: the fastest fails parity, the next fastest failed to compile
    results = [
        _measured("onnx", 0.10, 4.0),
        _measured("openvino", 0.20, 1.0),  # score 0.447 < 0.632: wins on batch 64
        _measured("onnx", 0.01, 0.1, diff=1.0),
        _measured("openvino", 0.01, 0.1, error="cannot compile"),
    ]
    # execute
    best = cand.select(results)
    # assert
    assert best is results[1]
    assert [m.passed for m in results] == [True, True, False, False]


def test_no_passing_candidate_is_refused_naming_each():
    with pytest.raises(TargetError, match=r"default/openvino/1t: cannot compile.*parity"):
        cand.select(
            [
                _measured("openvino", 0.1, 1.0, error="cannot compile"),
                _measured("onnx", 0.1, 1.0, diff=5.0),
            ]
        )


def test_options_narrow_the_candidates_and_an_absent_engine_is_refused():
    options = OnnxTarget.options_type(engine="onnx", threads=2)
    assert cand.candidates(options, ["onnx", "openvino"], ["default"]) == [
        cand.Candidate("default", "onnx", 1),
        cand.Candidate("default", "onnx", 2),
    ]
    # "auto" measures the hoisted lowering on the engines it is written for only
    lowerings = ["default", "hoisted", "scan"]
    auto = cand.candidates(OnnxTarget.options_type(), ["onnx", "openvino"], lowerings)
    assert [(c.lowering, c.engine) for c in auto] == [
        ("default", "onnx"),
        ("default", "openvino"),
        ("hoisted", "onnx"),
        ("scan", "onnx"),
    ]
    assert {"default", "hoisted", "scan"} <= set(cand.available_lowerings())
    # a named engine measures every lowering there: OpenVINO runs the Scan too (slowly)
    named = OnnxTarget.options_type(engine="openvino", lowering="scan")
    assert cand.candidates(named, ["onnx", "openvino"], lowerings) == [
        cand.Candidate("scan", "openvino", 1)
    ]
    with pytest.raises(TargetError, match=r"option 'engine' is 'openvino'.*edgecomp\[openvino\]"):
        cand.candidates(OnnxTarget.options_type(engine="openvino"), ["onnx"], ["default"])


def test_a_build_records_the_choice_and_every_measured_alternative(tmp_path):
    # execute: a real tiny int8 build
    result = _emit(tmp_path)
    # assert
    lowering = result.lowering
    record = lowering["candidates"]
    measured = record["measured"]
    precisions = cand.available_precisions(cand.available_engines())
    expected = {
        (lo, e, 1, p)
        for lo in cand.available_lowerings()
        for e in cand.available_engines()
        if e in cand.LOWERING_ENGINES.get(lo, cand.ENGINE_KEYS)
        for p in ("f32", *precisions.get(e, ()))
    }
    keys = ("lowering", "engine", "threads", "inference_precision")
    assert {tuple(m[k] for k in keys) for m in measured} == expected
    passed = [m for m in measured if m["passed"]]
    assert passed and all(m["latency_ms"]["b1"] > 0 and m["latency_ms"]["b64"] > 0 for m in passed)
    # the winner: a single candidate, or a pair routed by batch (same lowering, other engine)
    options = [(m, m) for m in passed] + [
        (a, b)
        for a in passed
        for b in passed
        if a["lowering"] == b["lowering"]
        and a["engine"] != b["engine"]
        and b["latency_ms"]["b64"] * cand.ROUTE_GAIN <= a["latency_ms"]["b64"]
    ]
    best, large = min(options, key=lambda o: o[0]["latency_ms"]["b1"] * o[1]["latency_ms"]["b64"])
    dropped = record.get("routing_dropped")
    if large is best or dropped:  # one engine serves every batch
        assert "batch_routing" not in lowering and "routed" not in record
        if dropped:  # the pair's batch-64 gain did not hold when timed again
            assert not dropped["confirmed"]
            best = min(passed, key=lambda m: m["latency_ms"]["b1"] * m["latency_ms"]["b64"])
    else:
        min_batch = record["routed"]["min_batch"]
        assert lowering["batch_routing"] == {"engine": large["engine"], "min_batch": min_batch}
        assert min_batch in (*cand.CROSSOVER, cand.BATCH)
    assert record["chosen"] == {k: best[k] for k in keys}
    assert lowering["engine"] == lowering["parity"]["engine"] == best["engine"]
    # the native lowering ships the default lowering's model file
    files = {best["lowering"], *(("default",) if best["lowering"] == cand.NATIVE else ())}
    same_file = [m for m in passed if m["lowering"] in files]
    others = {m["engine"] for m in same_file if m["engine"] != best["engine"]}
    assert set(lowering["equivalent_engines"]) <= others
    assert all(m["engine_version"] not in ("", "not installed") for m in measured)


@pytest.mark.skipif(not HAS_OPENVINO, reason="openvino is not installed: pip install openvino")
def test_a_batch_64_gain_that_does_not_hold_when_timed_again_routes_nothing(tmp_path, monkeypatch):
    from edgecomp_runtime.engines.openvino import OpenVinoEngine

    # setup: given timings, OpenVINO wins batch 64 in the first timing (calls of B64_CALLS) and
    # loses it when the pair is timed again (B64_CALLS + 1 calls per round)
    def timed(run, x, n):
        if not isinstance(run.__self__, OpenVinoEngine):
            return 2.0
        return 5.0 if len(x) < 64 or n != cand.B64_CALLS else 1.0

    monkeypatch.setattr(cand, "_median_call", timed)
    # execute
    lowering = _emit(tmp_path).lowering
    # assert
    dropped = lowering["candidates"]["routing_dropped"]
    assert not dropped["confirmed"] and dropped["candidate"]["engine"] == "openvino"
    assert dropped["latency_ms"]["64"] == {"main": 2.0, "routed": 5.0}
    assert "batch_routing" not in lowering and lowering["engine"] == "onnx"


def _routed(engine: str, b1: float, b64: float, lowering: str = "default", precision="f32"):
    return cand.Measurement(
        cand.Candidate(lowering, engine, 1, precision), {"b1": b1, "b64": b64}, 0, 1, "1.0"
    )


def test_a_second_engine_faster_on_large_batches_is_routed_there():
    # setup: onnx wins batch 1, openvino batch 64 (by more than ROUTE_GAIN)
    onnx, ov = _routed("onnx", 0.1, 4.0), _routed("openvino", 0.3, 2.0)
    # execute + assert: the pair's score sqrt(0.1 * 2.0) beats either alone
    assert cand.select_routed([onnx, ov]) == (onnx, ov)
    assert cand.select([onnx, ov]) is onnx  # one engine for all: the old rule still holds
    # a batch-64 gain under ROUTE_GAIN is no reason for a second engine
    close = _routed("openvino", 0.3, 4.0 / cand.ROUTE_GAIN * 1.01)
    assert cand.select_routed([onnx, close]) == (onnx, None)
    # another lowering is another model file: never a pair
    other = _routed("openvino", 0.3, 2.0, lowering="scan")
    assert cand.select_routed([onnx, other]) == (onnx, None)
    # a failed candidate is no partner either
    failed = dataclasses.replace(ov, max_abs_diff=5.0)
    assert cand.select_routed([onnx, failed]) == (onnx, None)


@pytest.mark.skipif(not HAS_OPENVINO, reason="openvino is not installed: pip install openvino")
def test_a_routed_build_records_where_the_second_engine_takes_over(tmp_path, monkeypatch):
    import edgecomp_runtime.engines as engines
    from edgecomp_runtime.engines.openvino import OpenVinoEngine

    # setup: given timings, OpenVINO slower below 8 windows, faster from 8 up
    def timed(run, x, n):
        if isinstance(run.__self__, OpenVinoEngine):
            return 5.0 if len(x) < 8 else 1.0
        return 2.0

    monkeypatch.setattr(cand, "_median_call", timed)
    # execute
    result = _emit(tmp_path)
    # assert
    lowering = result.lowering
    assert lowering["engine"] == "onnx"
    assert lowering["batch_routing"] == {"engine": "openvino", "min_batch": 8}
    routed = lowering["candidates"]["routed"]
    assert routed["candidate"]["engine"] == "openvino" and routed["confirmed"]
    assert routed["latency_ms"]["4"] == {"main": 2.0, "routed": 5.0}
    if routed["candidate"]["inference_precision"] != "f32":
        assert lowering["openvino"] == {"inference_precision": "bf16"}
    # the build's verify runner routes as load() does
    model_bytes = (tmp_path / result.model_file).read_bytes()
    manifest = {"model_file": result.model_file, "io": result.io, "recipe": {"lowering": lowering}}
    runner = get_target("onnx").runner(model_bytes, manifest)
    assert isinstance(runner, engines.BatchRouter) and runner.min_batch == 8
    x = _windows()[:8]
    np.testing.assert_allclose(runner.run(x)[:1], runner.run(x[:1]), rtol=2e-2, atol=2e-2)
    assert isinstance(runner.routed.engine, OpenVinoEngine)


@pytest.mark.skipif(not HAS_OPENVINO, reason="openvino is not installed: pip install openvino")
def test_the_measured_winner_is_the_engine_the_runtime_loads(tmp_path, monkeypatch):
    from edgecomp_runtime.engines import choose_engine
    from edgecomp_runtime.engines.openvino import OpenVinoEngine

    # setup: OpenVINO times faster (given measurements), so the build must choose it
    def timed(run, x, n):
        return 1.0 if isinstance(run.__self__, OpenVinoEngine) else 2.0

    monkeypatch.setattr(cand, "_median_call", timed)
    result = _emit(tmp_path)
    # execute: the manifest's sections as the pipeline writes them, read by the runtime
    manifest = {"target": {"backend": "onnx"}, "recipe": {"lowering": result.lowering}}
    backend, engine = choose_engine(manifest)
    # assert
    assert result.lowering["engine"] == "openvino"
    assert result.lowering["equivalent_engines"] == ["onnx"]
    assert (backend, engine) == ("openvino", OpenVinoEngine)


def test_a_real_pipeline_build_runs_on_the_recorded_engine(
    tmp_path, traffic_checkpoints, traffic_path
):
    import edgecomp_runtime
    from edgecomp.checkpoint import load_checkpoint
    from edgecomp.config import BuildConfig
    from edgecomp.manifest import format_manifest, read_manifest
    from edgecomp.pipeline import build
    from edgecomp.workflow import dataset_for

    # setup
    model = load_checkpoint(traffic_checkpoints["gru"])
    dataset = dataset_for(model.spec, traffic_path)
    # execute
    path = build(model, dataset, BuildConfig(precision="int8"), tmp_path / "a.edgepkg").path
    # assert
    with zipfile.ZipFile(path) as archive:
        lowering = json.loads(archive.read("manifest.json"))["recipe"]["lowering"]
    measured = lowering["candidates"]["measured"]
    engines = cand.available_engines()
    options = get_target("onnx").options_type()
    precisions = cand.available_precisions(engines)
    expected = cand.candidates(options, engines, cand.available_lowerings(), precisions)
    assert len(measured) == len(expected) >= len(engines)
    loaded = edgecomp_runtime.load(path)
    assert loaded.backend == lowering["engine"]
    routing = lowering.get("batch_routing")
    if routing:  # the build measured another engine faster on large batches: load routes them
        assert loaded.engine.engine_for(routing["min_batch"]) is loaded.engine.routed
    shown = format_manifest(read_manifest(path))  # what `edgecomp inspect` prints
    chosen = f"{lowering['candidate_lowering']}/{lowering['engine']}/{lowering['threads']}t"
    assert f"engine      chosen {chosen} b1/b64" in shown
    assert shown.count("engine      ") == len(measured)
