"""Hostile inputs not covered elsewhere: pickles where weights or models are expected, a foreign
target, truncated checkpoints. Each payload's __reduce__ would create a marker file: it must not.

Already covered: zip path traversal, zip bombs, malformed / newer manifests, sha256 mismatch,
truncated zips (tests/runtime/test_runtime_artifact.py), pickle-bearing .pt weights
(tests/test_frontend.py, tests/test_train.py).
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

import edgecomp_runtime as ecr
from edgecomp.checkpoint import CheckpointError, load_checkpoint, load_state_dict_file


class Evil:
    """Unpickling this would create ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture
def marker(tmp_path) -> Path:
    return tmp_path / "PWNED"


@pytest.fixture(scope="module")
def artifact(tmp_path_factory, traffic_checkpoints, traffic_path) -> Path:
    from edgecomp.pipeline import BuildConfig
    from edgecomp.workflow import build_artifact

    out = tmp_path_factory.mktemp("hostile") / "tcn.edgepkg"
    config = BuildConfig(precision="fp32", calibration_windows=8)
    return build_artifact(str(traffic_checkpoints["tcn"]), traffic_path, config, out).path


def _rewrite(src: Path, dest: Path, *, target: dict | None = None, files: dict | None = None):
    """Copy an artifact, updating manifest target keys and replacing files (checksums redone)."""
    with zipfile.ZipFile(src) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    manifest = json.loads(entries.pop("manifest.json"))
    manifest["target"].update(target or {})
    entries.update(files or {})
    manifest["files"] = [
        {"name": n, "sha256": hashlib.sha256(d).hexdigest(), "size": len(d)}
        for n, d in entries.items()
    ]
    with zipfile.ZipFile(dest, "w") as archive:
        archive.writestr("manifest.json", json.dumps(manifest))
        for name, data in entries.items():
            archive.writestr(name, data)
    return dest


def _checkpoint_copy(traffic_checkpoints, tmp_path) -> Path:
    folder = tmp_path / "ckpt"
    shutil.copytree(traffic_checkpoints["tcn"], folder)
    return folder


def test_pickle_as_checkpoint_safetensors_is_refused_without_running(
    traffic_checkpoints, tmp_path, marker
):
    # setup: a pickle whose payload would touch the marker, named model.safetensors
    folder = _checkpoint_copy(traffic_checkpoints, tmp_path)
    (folder / "model.safetensors").write_bytes(pickle.dumps({"w": Evil(marker)}))
    # execute / assert
    with pytest.raises(CheckpointError, match=r"model\.safetensors: not a readable safetensors"):
        load_checkpoint(folder)
    assert not marker.exists()


def test_torch_saved_pickle_payload_is_refused_without_running(tmp_path, marker):
    torch.save({"w": torch.zeros(2), "evil": Evil(marker)}, tmp_path / "weights.pt")
    with pytest.raises(CheckpointError, match=r"weights\.pt: refused by torch\.load"):
        load_state_dict_file(tmp_path / "weights.pt")
    assert not marker.exists()


def test_truncated_checkpoint_safetensors_names_the_file(traffic_checkpoints, tmp_path):
    folder = _checkpoint_copy(traffic_checkpoints, tmp_path)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=re.escape(f"{weights}: not a readable safetensors")):
        load_checkpoint(folder)


def test_pickle_smuggled_as_model_onnx_is_an_artifact_error(artifact, tmp_path, marker):
    # setup: checksums match, so only the engine stands between the pickle and execution
    payload = pickle.dumps(Evil(marker))
    path = _rewrite(artifact, tmp_path / "evil.edgepkg", files={"model.onnx": payload})
    assert ecr.read_artifact(path)[1]["model.onnx"] == payload
    # execute / assert
    with pytest.raises(ecr.ArtifactError, match=r"model\.onnx: not a readable ONNX model"):
        ecr.load(path)
    assert not marker.exists()


@pytest.mark.parametrize("backend", ["coreml", "qnn"])
def test_artifact_for_another_backend_names_it_and_the_fix(artifact, tmp_path, backend):
    path = _rewrite(artifact, tmp_path / f"{backend}.edgepkg", target={"backend": backend})
    with pytest.raises(ecr.EngineUnavailableError) as info:
        ecr.load(path)
    assert f"backend '{backend}'" in str(info.value) and "pip install" in str(info.value)


def test_foreign_arch_artifact_still_loads_and_reports_its_arch(artifact, tmp_path):
    # documents today's behaviour: target.arch is informational; the ONNX model is portable
    path = _rewrite(artifact, tmp_path / "arm.edgepkg", target={"arch": "aarch64"})
    model = ecr.load(path)
    assert model.manifest["target"]["arch"] == "aarch64"
    assert model.predict(_window(model)).shape == (model.horizon, len(model.targets))


def _window(model) -> list[list[float]]:
    return [[float(i)] * len(model.features) for i in range(model.input_len)]


# --- regressions found by tests/runtime/test_runtime_fuzz.py ----------------------------------


def test_manifest_integer_too_large_for_a_float_is_an_artifact_error(artifact):
    manifest = ecr.read_artifact(artifact)[0]
    manifest["spec"]["scaler"]["mean"][0] = 10**400  # json.loads("1000...0") gives this int
    with pytest.raises(ecr.ArtifactError, match=r"'spec\.scaler\.mean' must be a list of"):
        ecr.validate_manifest(manifest, source="big.edgepkg")


def _patched(src: Path, dest: Path, signature: bytes, offset: int, value: bytes) -> Path:
    blob = bytearray(src.read_bytes())
    at = blob.index(signature) + offset
    blob[at : at + len(value)] = value
    dest.write_bytes(bytes(blob))
    return dest


def test_zip_needing_a_newer_unzip_version_is_an_artifact_error(artifact, tmp_path):
    # central directory "version needed to extract" = 25.5: zipfile raises NotImplementedError
    path = _patched(artifact, tmp_path / "v.edgepkg", b"PK\x01\x02", 6, b"\xff\x00")
    with pytest.raises(ecr.ArtifactError, match=r"v\.edgepkg: not a readable zip"):
        ecr.read_artifact(path)


@pytest.mark.parametrize("flag", [b"\x20\x00", b"\x40\x00"], ids=["patched", "strong-enc"])
def test_zip_entry_flags_zipfile_cannot_read_are_an_artifact_error(artifact, tmp_path, flag):
    # the first central directory entry (manifest.json) sets flag bit 5 or 6
    path = _patched(artifact, tmp_path / "enc.edgepkg", b"PK\x01\x02", 8, flag)
    with pytest.raises(ecr.ChecksumError, match=r"'manifest\.json' is corrupt in the zip"):
        ecr.read_artifact(path)


def test_huge_finite_raw_values_are_refused_not_turned_into_nan(artifact):
    # setup: 1e300 is finite in float64 but overflows float32 on the way into the engine
    import warnings

    import numpy as np

    model = ecr.load(artifact)
    window = np.zeros((model.input_len, len(model.features)))
    window[3, 1] = 1e300
    # execute / assert
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(ecr.InputError, match="step 3, feature .* out of float32 range"):
            model.predict(window)
