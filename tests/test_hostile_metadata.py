"""A tampered ``edgecomp.*`` field in an artifact's model.onnx: the runtime refuses the artifact at
load (the file's sha256 no longer matches the manifest, as before the provenance was compacted),
and ``check_against`` names the field when the file is read against its manifest."""

from __future__ import annotations

import json
import zipfile

import pytest

import edgecomp_runtime as ecr

onnx = pytest.importorskip("onnx", reason="onnx missing (pip install 'edgecomp[onnx]')")

from edgecomp.targets.onnx.metadata import PREFIX, check_against, read_metadata  # noqa: E402

TAMPERED = {  # field -> a value an attacker (or a copy from another build) could write
    "build_id": "0" * 32,
    "precision": "int8",
    "target": "arm64-gateway",
    "producer": "0123456789abcdef",
    "version": "0.0.1",
    "spec": json.dumps({"arch": "tcn", "input_len": 16, "horizon": 4, "period_s": 900.0}),
}


@pytest.fixture(scope="module")
def artifact(tmp_path_factory, traffic_tcn):
    from edgecomp.config import BuildConfig
    from edgecomp.pipeline import build
    from edgecomp.targets import get_target

    if not get_target("onnx").is_available():
        pytest.skip(get_target("onnx").missing_reason())
    path = tmp_path_factory.mktemp("tamper") / "fp32.edgepkg"
    return build(*traffic_tcn, BuildConfig(target="x86-64-avx2", precision="fp32"), path)


def _tampered(artifact, field: str, tmp_path):
    """The artifact with model.onnx's ``edgecomp.<field>`` replaced, the manifest unchanged."""
    name = artifact.manifest["model_file"]
    with zipfile.ZipFile(artifact.path) as zf:
        entries = {info.filename: zf.read(info) for info in zf.infolist()}
    proto = onnx.load_from_string(entries[name])
    (prop,) = [p for p in proto.metadata_props if p.key == PREFIX + field]
    assert prop.value != TAMPERED[field]
    prop.value = TAMPERED[field]
    entries[name] = proto.SerializeToString()
    path = tmp_path / f"{field}.edgepkg"
    with zipfile.ZipFile(path, "w") as zf:
        for entry, data in entries.items():
            zf.writestr(entry, data)
    return path, proto


@pytest.mark.parametrize("field", sorted(TAMPERED))
def test_a_tampered_metadata_field_is_refused_at_load_and_named(artifact, field, tmp_path):
    # setup
    path, proto = _tampered(artifact, field, tmp_path)
    # execute / assert: the runtime refuses the file (its sha256), naming it
    refused = r"'model.onnx' (sha256|is [0-9]+ bytes).* modified"  # sha256, or size first
    with pytest.raises(ecr.ArtifactError, match=refused):
        ecr.load(path)
    # assert: read against the manifest, the field is named
    problems = check_against(read_metadata(proto), artifact.manifest)
    assert [p.split(":")[0] for p in problems] == [field]


def test_the_untampered_artifact_loads_and_matches(artifact):
    # execute / assert
    with zipfile.ZipFile(artifact.path) as zf:
        proto = onnx.load_from_string(zf.read(artifact.manifest["model_file"]))
    assert check_against(read_metadata(proto), artifact.manifest) == []
    assert ecr.load(artifact.path).manifest["build_id"] == artifact.manifest["build_id"]
