"""Manifest writing: validated by the runtime's rules, checksummed, atomic; goldens load."""

import json
import os
import zipfile
from pathlib import Path

import pytest

import edgecomp_runtime
from edgecomp.manifest import format_manifest, read_manifest, write_artifact

GOLDEN = Path(__file__).parent / "golden" / "manifests"


def _golden(version: int) -> dict:
    return json.loads((GOLDEN / f"v{version}.json").read_text())


def test_every_golden_manifest_validates_with_the_runtime():
    paths = sorted(GOLDEN.glob("v*.json"))
    assert paths
    for path in paths:
        edgecomp_runtime.validate_manifest(json.loads(path.read_text()), source=str(path))


def test_round_trip_keeps_every_key(tmp_path):
    # setup
    manifest = _golden(1)
    manifest.pop("files")
    payload = b"\x08\x07" * 50
    # execute
    path = write_artifact(tmp_path / "a.edgepkg", manifest, {manifest["model_file"]: payload})
    back = read_manifest(path)
    # assert
    assert back == manifest
    assert back["files"][0]["size"] == len(payload)
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == sorted(["manifest.json", manifest["model_file"]])


def test_invalid_manifest_is_refused_and_nothing_is_written(tmp_path):
    manifest = _golden(1)
    manifest["spec"]["input_len"] = "forty-eight"
    with pytest.raises(edgecomp_runtime.ArtifactError, match="input_len"):
        write_artifact(tmp_path / "a.edgepkg", manifest, {manifest["model_file"]: b"x"})
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    manifest = _golden(1)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(zipfile.ZipFile, "writestr", boom)
    with pytest.raises(OSError, match="disk full"):
        write_artifact(tmp_path / "a.edgepkg", manifest, {manifest["model_file"]: b"x"})
    assert list(tmp_path.iterdir()) == []


def test_format_manifest_is_readable():
    text = format_manifest(_golden(1))
    assert "x86-64-avx2" in text and "artifact MAE" in text and "model.onnx" in text


def test_format_manifest_shows_passes_calibration_mixed_and_stream():
    # setup
    manifest = _golden(1)
    measured = {"before": {"params": 67248}, "after": {"params": 21424}, "stats": {}}
    manifest["recipe"] = {
        "passes": [{"_type": "prune", "_data": {"ratio": 0.5}, "measured": measured}],
        "lowering": {"calibration": {"n_windows": 256, "span_fraction": 0.98, "sha256": "ab" * 32}},
        "mixed_precision": {
            "base_precision": "int4",
            "budget": {"text": "MAE +1 % at every horizon step"},
            "kept_float": ["head"],
        },
    }
    manifest["stream"] = {
        "step_file": "step.onnx",
        "kind": "lstm-state",
        "exact": False,
        "allowed": True,
        "error_budget": 0.01,
        "worst_increase": 0.02,
    }
    # execute
    lines = format_manifest(manifest).splitlines()
    # assert
    assert "pass        prune {'ratio': 0.5}: params 67,248 -> 21,424" in lines
    assert any(x.startswith("calibration 256 windows spanning 98 % ") for x in lines)
    assert "mixed       int4 under MAE +1 % at every horizon step; kept in float: ['head']" in lines
    assert any("exact False, allowed True; worst step vs windowed +2.00 % (budget 1 %)" in x
               for x in lines)  # fmt: skip


def test_format_manifest_marks_the_chosen_and_the_routed_engine():
    # setup: ONNX Runtime for small batches, OpenVINO bf16 from batch 4 (candidates.py)
    def measured(engine, precision, b1, b64):
        return {"lowering": "default", "engine": engine, "threads": 1,
                "inference_precision": precision, "latency_ms": {"b1": b1, "b64": b64},
                "parity_limit": 0.07, "passed": True}  # fmt: skip

    manifest = _golden(1)
    manifest["recipe"] = {
        "lowering": {
            "candidate_lowering": "default",
            "engine": "onnxruntime",
            "threads": 1,
            "openvino": {"inference_precision": "bf16"},
            "batch_routing": {"engine": "openvino", "min_batch": 4},
            "candidates": {
                "measured": [
                    measured("onnxruntime", "f32", 0.05, 6.4),
                    measured("openvino", "f32", 0.2, 5.0),
                    measured("openvino", "bf16", 0.2, 3.4),
                ]
            },
        }
    }
    # execute
    lines = [x for x in format_manifest(manifest).splitlines() if x.startswith("engine ")]
    # assert
    assert lines == [
        "engine      chosen default/onnxruntime/1t b1/b64 0.050 / 6.400 ms",
        "engine      measured default/openvino/1t b1/b64 0.200 / 5.000 ms",
        "engine      routed (batches >= 4) default/openvino/1t/bf16 b1/b64 0.200 / 3.400 ms",
    ]


def test_artifacts_get_the_usual_file_mode(tmp_path):
    manifest = _golden(1)
    path = write_artifact(tmp_path / "a.edgepkg", manifest, {manifest["model_file"]: b"x"})
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask
