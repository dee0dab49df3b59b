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
    expected = {
        (lo, e, 1)
        for lo in cand.available_lowerings()
        for e in cand.available_engines()
        if e in cand.LOWERING_ENGINES.get(lo, cand.ENGINE_KEYS)
    }
    assert {(m["lowering"], m["engine"], m["threads"]) for m in measured} == expected
    passed = [m for m in measured if m["passed"]]
    assert passed and all(m["latency_ms"]["b1"] > 0 and m["latency_ms"]["b64"] > 0 for m in passed)
    best = min(passed, key=lambda m: m["latency_ms"]["b1"] * m["latency_ms"]["b64"])
    chosen = {"lowering": best["lowering"], "engine": best["engine"], "threads": 1}
    assert record["chosen"] == chosen
    assert lowering["engine"] == lowering["parity"]["engine"] == best["engine"]
    same_file = [m for m in passed if m["lowering"] == best["lowering"]]
    others = {m["engine"] for m in same_file if m["engine"] != best["engine"]}
    assert set(lowering["equivalent_engines"]) == others
    assert all(m["engine_version"] not in ("", "not installed") for m in measured)


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
    expected = cand.candidates(
        get_target("onnx").options_type(), cand.available_engines(), cand.available_lowerings()
    )
    assert len(measured) == len(expected) >= len(cand.available_engines())
    assert edgecomp_runtime.load(path).backend == lowering["engine"]
    shown = format_manifest(read_manifest(path))  # what `edgecomp inspect` prints
    chosen = f"{lowering['candidate_lowering']}/{lowering['engine']}/{lowering['threads']}t"
    assert f"engine      chosen {chosen} b1/b64" in shown
    assert shown.count("engine      ") == len(measured)
