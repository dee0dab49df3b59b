"""read_artifact and validate_manifest: zip safety, checksums, format versions, manifest checks."""

from __future__ import annotations

import copy
import hashlib
import re
import struct
import warnings
import zipfile

import pytest

from edgecomp_runtime import (
    ArtifactError,
    ChecksumError,
    FormatVersionError,
    read_artifact,
    validate_manifest,
)
from edgecomp_runtime import artifact as artifact_module

DELETE = "<delete>"  # see conftest.DELETE
CENTRAL_DIR = b"PK\x01\x02"
CD_FIELDS = {"flags": (8, "<H"), "method": (10, "<H"), "usize": (24, "<I")}


def _patch_central_dir(data: bytes, name: str, field: str, value: int) -> bytes:
    """Overwrite one field of the central-directory record of entry ``name``."""
    start = data.index(CENTRAL_DIR)
    while data[start + 46 : start + 46 + len(name)] != name.encode():
        start = data.index(CENTRAL_DIR, start + 4)
    offset, fmt = CD_FIELDS[field]
    patched = bytearray(data)
    struct.pack_into(fmt, patched, start + offset, value)
    return bytes(patched)


# --- reading -------------------------------------------------------------------------------


@pytest.mark.parametrize("unpacked", [False, True], ids=["zip", "folder"])
def test_read_artifact_returns_manifest_and_verified_files(
    make_artifact, toy_model_bytes, unpacked
):
    # setup
    path = make_artifact(unpacked=unpacked)
    # execute
    manifest, files = read_artifact(path)
    # assert
    assert manifest["format"] == "edgecomp-artifact"
    assert files == {"model.onnx": toy_model_bytes}


def test_unknown_keys_are_ignored_and_optional_keys_may_be_absent(make_artifact):
    path = make_artifact(
        manifest={
            "future_key": {"anything": [1, 2]},
            "spec.future_spec_key": 3,
            "created": DELETE,
            "recipe": DELETE,
        }
    )
    manifest, _ = read_artifact(path)
    assert manifest["future_key"] == {"anything": [1, 2]}


def test_missing_path_is_refused(tmp_path):
    with pytest.raises(ArtifactError, match="no such artifact"):
        read_artifact(tmp_path / "absent.edgepkg")


def test_not_a_zip_is_refused(tmp_path):
    path = tmp_path / "model.edgepkg"
    path.write_bytes(b"this is not a zip file at all")
    with pytest.raises(ArtifactError, match="not a readable zip"):
        read_artifact(path)


@pytest.mark.parametrize("keep", [0.5, 0.95, -1, -22], ids=["half", "95pct", "last-byte", "eocd"])
def test_truncated_zip_is_refused(make_artifact, keep):
    # setup
    path = make_artifact()
    data = path.read_bytes()
    cut = int(len(data) * keep) if keep > 0 else len(data) + keep
    path.write_bytes(data[:cut])
    # execute / assert
    with pytest.raises(ArtifactError):
        read_artifact(path)


def test_corrupted_byte_inside_zip_entry_is_a_checksum_error(make_artifact, toy_model_bytes):
    # setup: stored entries, so the model's bytes appear verbatim in the zip
    path = make_artifact(compression=zipfile.ZIP_STORED)
    data = bytearray(path.read_bytes())
    at = data.index(toy_model_bytes) + len(toy_model_bytes) // 2
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))
    # execute / assert
    with pytest.raises(ChecksumError, match="model.onnx"):
        read_artifact(path)


@pytest.mark.parametrize("unpacked", [False, True], ids=["zip", "folder"])
def test_model_file_not_matching_its_sha256_is_a_checksum_error(
    make_artifact, toy_model_bytes, unpacked
):
    corrupted = bytearray(toy_model_bytes)
    corrupted[len(corrupted) // 2] ^= 0x01
    path = make_artifact(files={"model.onnx": bytes(corrupted)}, unpacked=unpacked)
    with pytest.raises(ChecksumError, match=r"'model.onnx' sha256 is .* the manifest says"):
        read_artifact(path)


@pytest.mark.parametrize("unpacked", [False, True], ids=["zip", "folder"])
def test_model_file_of_another_size_is_a_checksum_error(make_artifact, toy_model_bytes, unpacked):
    path = make_artifact(files={"model.onnx": toy_model_bytes + b"\0"}, unpacked=unpacked)
    with pytest.raises(ChecksumError, match=r"'model.onnx' is \d+ bytes, the manifest says"):
        read_artifact(path)


def test_lying_uncompressed_size_in_zip_header_is_refused(make_artifact):
    path = make_artifact()
    path.write_bytes(_patch_central_dir(path.read_bytes(), "model.onnx", "usize", 10))
    with pytest.raises(ChecksumError, match="model.onnx"):
        read_artifact(path)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("flags", 0x1, "encrypted"), ("method", 14, "compression method 14")],
)
def test_encrypted_or_exotic_entries_are_refused(make_artifact, field, value, message):
    path = make_artifact()
    path.write_bytes(_patch_central_dir(path.read_bytes(), "model.onnx", field, value))
    with pytest.raises(ArtifactError, match=message):
        read_artifact(path)


@pytest.mark.parametrize("unpacked", [False, True], ids=["zip", "folder"])
def test_missing_manifest_is_refused(tmp_path, toy_model_bytes, unpacked):
    path = tmp_path / ("art" if unpacked else "art.edgepkg")
    if unpacked:
        path.mkdir()
        (path / "model.onnx").write_bytes(toy_model_bytes)
    else:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("model.onnx", toy_model_bytes)
    with pytest.raises(ArtifactError, match="no manifest.json"):
        read_artifact(path)


@pytest.mark.parametrize("unpacked", [False, True], ids=["zip", "folder"])
def test_listed_file_missing_from_the_artifact_is_refused(
    tmp_path, write_artifact, valid_manifest, toy_model_bytes, unpacked
):
    extra = {"name": "weights.bin", "sha256": "0" * 64, "size": 4}
    valid_manifest["files"].append(extra)
    path = write_artifact(
        tmp_path / "art", valid_manifest, {"model.onnx": toy_model_bytes}, unpacked=unpacked
    )
    with pytest.raises(ArtifactError, match="'weights.bin' is listed in the manifest but missing"):
        read_artifact(path)


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"\xff\xfe\x00", b"[1, 2]", b'"text"'],
    ids=["json", "utf8", "list", "str"],
)
def test_unparsable_manifest_is_refused(tmp_path, toy_model_bytes, raw):
    path = tmp_path / "art.edgepkg"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("manifest.json", raw)
        archive.writestr("model.onnx", toy_model_bytes)
    with pytest.raises(ArtifactError, match="manifest.json"):
        read_artifact(path)


@pytest.mark.parametrize(
    "name", ["../evil.onnx", "/etc/evil", "sub/model.onnx", "sub/", "..\\evil", "C:evil", ".."]
)
def test_unsafe_zip_entry_names_are_refused(make_artifact, name):
    path = make_artifact(files={name: b"x"})
    with pytest.raises(ArtifactError, match="unsafe zip entry name"):
        read_artifact(path)


def test_path_traversal_in_manifest_file_names_is_refused(tmp_path, write_artifact, valid_manifest):
    # setup: a folder artifact whose manifest points outside the folder
    (tmp_path / "secret.onnx").write_bytes(b"outside")
    valid_manifest["files"][0]["name"] = "../secret.onnx"
    path = write_artifact(tmp_path / "art", valid_manifest, {}, unpacked=True)
    # execute / assert
    with pytest.raises(ArtifactError, match=r"'files\[0\].name' must be a plain file name"):
        read_artifact(path)


def test_duplicate_zip_entries_are_refused(make_artifact, toy_model_bytes):
    path = make_artifact()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns about the duplicate name
        with zipfile.ZipFile(path, "a") as archive:
            archive.writestr("model.onnx", toy_model_bytes)
    with pytest.raises(ArtifactError, match="appears more than once"):
        read_artifact(path)


def test_zip_bomb_ratio_guard(make_artifact):
    path = make_artifact(files={"padding.bin": bytes(4 * 2**20)})
    with pytest.raises(ArtifactError, match="possible zip bomb"):
        read_artifact(path)


def test_total_uncompressed_size_guard(make_artifact, monkeypatch):
    path = make_artifact()
    monkeypatch.setattr(artifact_module, "MAX_TOTAL_BYTES", 1000)
    with pytest.raises(ArtifactError, match="more than the 1000 allowed"):
        read_artifact(path)


def test_folder_total_size_guard(
    tmp_path, write_artifact, valid_manifest, toy_model_bytes, monkeypatch
):
    # setup: two files, each under the limit, together over it
    extra = bytes(len(toy_model_bytes))
    valid_manifest["files"].append(
        {"name": "extra.bin", "sha256": hashlib.sha256(extra).hexdigest(), "size": len(extra)}
    )
    files = {"model.onnx": toy_model_bytes, "extra.bin": extra}
    path = write_artifact(tmp_path / "art", valid_manifest, files, unpacked=True)
    monkeypatch.setattr(artifact_module, "MAX_TOTAL_BYTES", len(extra) * 3 // 2)
    # execute / assert
    with pytest.raises(ArtifactError, match=f"files total {2 * len(extra)} bytes, more than"):
        read_artifact(path)


def test_entry_count_guard(make_artifact, monkeypatch):
    path = make_artifact(files={"a.txt": b"a", "b.txt": b"b"})
    monkeypatch.setattr(artifact_module, "MAX_ENTRIES", 3)
    with pytest.raises(ArtifactError, match="4 zip entries, more than the 3 allowed"):
        read_artifact(path)


@pytest.mark.parametrize("unpacked", [False, True], ids=["zip", "folder"])
def test_manifest_size_guard(make_artifact, monkeypatch, unpacked):
    path = make_artifact(unpacked=unpacked)
    monkeypatch.setattr(artifact_module, "MAX_MANIFEST_BYTES", 100)
    with pytest.raises(ArtifactError, match="manifest.json is larger than 100 bytes"):
        read_artifact(path)


# --- format version ------------------------------------------------------------------------


def test_newer_format_version_is_refused_with_the_fix(make_artifact):
    path = make_artifact(manifest={"format_version": 2})
    with pytest.raises(FormatVersionError) as info:
        read_artifact(path)
    assert (
        "artifact format_version 2 is newer than this runtime reads (1); "
        "upgrade: pip install -U edgecomp-runtime"
    ) in str(info.value)


def test_newer_format_version_wins_over_other_manifest_errors(valid_manifest):
    # a newer format may change the schema: the version error is the useful one
    valid_manifest["format_version"] = 7
    del valid_manifest["spec"]
    with pytest.raises(FormatVersionError, match="format_version 7 is newer"):
        validate_manifest(valid_manifest, source="x")


def test_older_format_version_is_refused(valid_manifest):
    valid_manifest["format_version"] = 0
    with pytest.raises(FormatVersionError, match=r"format_version 0 is older than this runtime"):
        validate_manifest(valid_manifest, source="x")


@pytest.mark.parametrize("version", [True, "1", 1.0, None, [1]])
def test_non_integer_format_version_is_refused(valid_manifest, version):
    valid_manifest["format_version"] = version
    with pytest.raises(ArtifactError, match="'format_version' must be an integer") as info:
        validate_manifest(valid_manifest, source="x")
    assert not isinstance(info.value, FormatVersionError)


@pytest.mark.parametrize("fmt", ["edgecomp-artefact", "", "onnx"])
def test_wrong_format_is_refused(valid_manifest, fmt):
    valid_manifest["format"] = fmt
    with pytest.raises(ArtifactError, match="not an edgecomp artifact"):
        validate_manifest(valid_manifest, source="x")


# --- manifest keys and types ---------------------------------------------------------------

REQUIRED = [
    "format", "format_version", "producer", "target", "target.name", "target.backend",
    "precision", "model_file", "io", "io.inputs", "io.outputs", "io.inputs.0.shape", "spec",
    "spec.input_len", "spec.horizon", "spec.features", "spec.targets", "spec.scaler",
    "spec.scaler.mean", "spec.scaler.std", "spec.imputation", "spec.imputation.interpolate_limit",
    "spec.imputation.then", "spec.imputation.max_missing_fraction", "layers", "metrics", "files",
    "files.0.name", "files.0.sha256", "files.0.size",
]  # fmt: skip


@pytest.mark.parametrize("path", REQUIRED)
def test_missing_required_key_is_named(valid_manifest, set_path, path):
    set_path(valid_manifest, path, DELETE)
    key = path.replace(".0.", "[0].")
    with pytest.raises(ArtifactError, match=re.escape(f"missing key '{key}'")):
        validate_manifest(valid_manifest, source="art.edgepkg")


BAD_VALUES = [
    ("producer", "edgecomp 0.1", "producer"),
    ("target", ["onnx"], "target"),
    ("target.backend", "", "target.backend"),
    ("target.backend", 3, "target.backend"),
    ("precision", None, "precision"),
    ("model_file", "weights.bin", "model_file"),
    ("model_file", "../model.onnx", "model_file"),
    ("layers", {}, "layers"),
    ("metrics", [], "metrics"),
    ("created", 20250101, "created"),
    ("recipe", "none", "recipe"),
    ("io.inputs", [], "io.inputs"),
    ("io.inputs", ["window"], "io.inputs"),
    ("io.inputs.0.name", 0, r"io.inputs\[0\].name"),
    ("io.inputs.0.dtype", "", r"io.inputs\[0\].dtype"),
    ("io.inputs.0.shape", ["batch", 6], r"io.inputs\[0\].shape"),
    ("io.inputs.0.shape", ["batch", 7, 3], r"io.inputs\[0\].shape"),
    ("io.inputs.0.shape", ["batch", 6, True], r"io.inputs\[0\].shape"),
    ("io.inputs.0.shape", [0, 6, 3], r"io.inputs\[0\].shape"),
    ("io.inputs.0.shape", [None, 6, 3], r"io.inputs\[0\].shape"),
    ("io.outputs.0.shape", ["batch", 2, 3], r"io.outputs\[0\].shape"),
    ("io.inputs.0.scale", float("nan"), r"io.inputs\[0\].scale"),
    ("spec", [], "spec"),
    ("spec.input_len", "6", "spec.input_len"),
    ("spec.input_len", 6.0, "spec.input_len"),
    ("spec.input_len", True, "spec.input_len"),
    ("spec.input_len", 0, "spec.input_len"),
    ("spec.horizon", -2, "spec.horizon"),
    ("spec.features", "abc", "spec.features"),
    ("spec.features", [], "spec.features"),
    ("spec.features", ["a", 1, "c"], "spec.features"),
    ("spec.features", ["a", "a", "c"], "spec.features"),
    ("spec.targets", ["z"], "spec.targets"),
    ("spec.targets", [["a"]], "spec.targets"),
    ("spec.scaler.kind", "minmax", "spec.scaler.kind"),
    ("spec.scaler.mean", [1.0, 2.0], "spec.scaler.mean"),
    ("spec.scaler.mean", [1.0, "2", 3.0], "spec.scaler.mean"),
    ("spec.scaler.mean", [1.0, float("inf"), 3.0], "spec.scaler.mean"),
    ("spec.scaler.std", [1.0, 0.0, 1.0], "spec.scaler.std"),
    ("spec.scaler.std", [1.0, -1.0, 1.0], "spec.scaler.std"),
    ("spec.scaler.std", [1.0, True, 1.0], "spec.scaler.std"),
    ("spec.imputation.then", "bfill", "spec.imputation.then"),
    ("spec.imputation.interpolate_limit", -1, "spec.imputation.interpolate_limit"),
    ("spec.imputation.max_missing_fraction", 1.5, "spec.imputation.max_missing_fraction"),
    ("spec.imputation.max_missing_fraction", float("nan"), "spec.imputation.max_missing_fraction"),
    ("spec.period_s", 0, "spec.period_s"),
    ("spec.seasonal_period", 1.5, "spec.seasonal_period"),
    ("files", [], "files"),
    ("files.0.sha256", "abc", r"files\[0\].sha256"),
    ("files.0.size", -1, r"files\[0\].size"),
    ("files.0.size", "12", r"files\[0\].size"),
    ("files.0.name", "manifest.json", r"files\[0\].name"),
]


@pytest.mark.parametrize(("path", "value", "key"), BAD_VALUES)
def test_malformed_value_is_refused_naming_the_key(valid_manifest, set_path, path, value, key):
    set_path(valid_manifest, path, value)
    with pytest.raises(ArtifactError, match=f"'{key}' must be"):
        validate_manifest(valid_manifest, source="art.edgepkg")


def test_duplicate_file_entries_are_refused(valid_manifest):
    valid_manifest["files"].append(copy.deepcopy(valid_manifest["files"][0]))
    with pytest.raises(ArtifactError, match=r"'files\[1\].name' must be unique"):
        validate_manifest(valid_manifest, source="x")


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("spec.input_len", 100_001),
        ("spec.horizon", 10**12),
        ("spec.features", [f"f{i}" for i in range(100_001)]),
        ("io.inputs.0.shape", ["batch", 6, 10**9]),
    ],
    ids=["L", "H", "F", "io-dim"],
)
def test_absurd_shapes_are_refused(valid_manifest, set_path, path, value):
    set_path(valid_manifest, path, value)
    with pytest.raises(ArtifactError, match="must be"):
        validate_manifest(valid_manifest, source="x")


def test_error_message_names_the_source_and_is_one_line(valid_manifest, set_path):
    set_path(valid_manifest, "spec.input_len", "six" * 100)
    with pytest.raises(ArtifactError) as info:
        validate_manifest(valid_manifest, source="/srv/traffic.edgepkg")
    message = str(info.value)
    assert message.startswith("/srv/traffic.edgepkg: manifest key 'spec.input_len'")
    assert "\n" not in message and len(message) < 200


def test_validate_manifest_returns_the_manifest(valid_manifest):
    assert validate_manifest(valid_manifest, source="x") is valid_manifest
