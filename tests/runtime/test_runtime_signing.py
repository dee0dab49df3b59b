"""Optional ed25519 signatures: load(..., trusted_keys=...) refuses unsigned or wrongly signed."""

from __future__ import annotations

import base64
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

import edgecomp_runtime as ecr
from edgecomp_runtime.signing import key_id, load_private_key, new_key_pair, sign_manifest


@pytest.fixture(scope="module")
def keys() -> dict[str, tuple[bytes, bytes]]:
    """Two key pairs: name -> (private PEM, public PEM)."""
    return {"good": new_key_pair(), "other": new_key_pair()}


def _kid(private_pem: bytes) -> str:
    return key_id(load_private_key(private_pem).public_key())


def _zip_entries(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _rezip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return path


def _sign(path: Path, private_pem: bytes, *, signature: bytes | None = None) -> Path:
    """Add manifest.sig (a real signature, or the bytes given) to a zip or folder artifact."""
    if path.is_dir():
        sig = signature or sign_manifest((path / "manifest.json").read_bytes(), private_pem)
        (path / "manifest.sig").write_bytes(sig)
        return path
    entries = _zip_entries(path)
    entries["manifest.sig"] = signature or sign_manifest(entries["manifest.json"], private_pem)
    return _rezip(path, entries)


@pytest.mark.parametrize("form", ["pem_path", "pem_bytes", "pem_text", "raw_bytes", "key_object"])
def test_signed_artifact_loads_with_its_key_and_predicts_as_unsigned(
    make_artifact, keys, toy, tmp_path, form
):
    # setup
    private, public = keys["good"]
    unsigned = make_artifact()
    signed = _sign(make_artifact(), private)
    key_object = load_private_key(private).public_key()
    (tmp_path / "key.pub").write_bytes(public)
    trusted = {
        "pem_path": tmp_path / "key.pub",
        "pem_bytes": public,
        "pem_text": public.decode(),
        "raw_bytes": key_object.public_bytes_raw(),
        "key_object": key_object,
    }[form]
    window = toy.window(batch=3)
    # execute
    model = ecr.load(signed, trusted_keys=[trusted, keys["other"][1]])
    # assert
    np.testing.assert_array_equal(model.predict(window), ecr.load(unsigned).predict(window))


def test_signed_folder_loads_and_an_altered_folder_is_refused(make_artifact, keys):
    # setup
    private, public = keys["good"]
    folder = _sign(make_artifact(unpacked=True), private)
    # execute
    manifest, _ = ecr.read_artifact(folder, trusted_keys=public)
    manifest_path = folder / "manifest.json"
    manifest_path.write_bytes(manifest_path.read_bytes().replace(b"2025-01-01", b"2025-01-02"))
    # assert
    assert manifest["spec"]["input_len"] == 6
    with pytest.raises(ecr.SignatureError, match="altered after signing"):
        ecr.read_artifact(folder, trusted_keys=public)


def test_wrong_key_is_refused_naming_both_key_ids(make_artifact, keys):
    # setup
    signed = _sign(make_artifact(), keys["good"][0])
    # execute
    with pytest.raises(ecr.SignatureError) as caught:
        ecr.load(signed, trusted_keys=[keys["other"][1]])
    # assert
    message = str(caught.value)
    assert _kid(keys["good"][0]) in message and _kid(keys["other"][0]) in message
    assert "not among the trusted keys" in message and str(signed) in message


@pytest.mark.parametrize("unpacked", [False, True])
def test_unsigned_artifact_is_refused_when_keys_are_given(make_artifact, keys, unpacked):
    artifact = make_artifact(unpacked=unpacked)
    with pytest.raises(ecr.SignatureError, match="not signed; trusted keys were given"):
        ecr.load(artifact, trusted_keys=[keys["good"][1]])


def test_manifest_altered_after_signing_is_refused(make_artifact, keys):
    # setup: sign, then change one byte of "created" and re-zip with the old signature
    private, public = keys["good"]
    signed = _sign(make_artifact(), private)
    entries = _zip_entries(signed)
    entries["manifest.json"] = entries["manifest.json"].replace(b"2025-01-01", b"2025-01-02")
    _rezip(signed, entries)
    # execute / assert: still a valid artifact, but no longer the signed one
    assert ecr.read_artifact(signed)[0]["created"].startswith("2025-01-02")
    with pytest.raises(ecr.SignatureError, match="altered after signing"):
        ecr.load(signed, trusted_keys=public)


def _signature_record(**changes) -> bytes:
    record = {"alg": "ed25519", "key_id": "0" * 16, "signature": base64.b64encode(b"s" * 64)}
    record["signature"] = record["signature"].decode()
    record.update(changes)
    return json.dumps({k: v for k, v in record.items() if v is not None}).encode()


@pytest.mark.parametrize(
    ("signature", "expected"),
    [
        (b"\xff garbage", "not valid UTF-8 JSON"),
        (b"[1, 2]", "must hold a JSON object"),
        (_signature_record(alg="rsa"), "'alg' must be 'ed25519'"),
        (_signature_record(key_id=None), "'key_id' must be"),
        (_signature_record(key_id="\x1b[31mred"), "'key_id' must be"),
        (_signature_record(signature="not base64!"), "'signature' must be 64 bytes"),
        (_signature_record(signature=base64.b64encode(b"short").decode()), "must be 64 bytes"),
        (b" " * 5000, "more than 4096"),
    ],
)
def test_malformed_signature_file_is_refused(make_artifact, keys, signature, expected):
    signed = _sign(make_artifact(), keys["good"][0], signature=signature)
    with pytest.raises(ecr.SignatureError, match=expected) as caught:
        ecr.load(signed, trusted_keys=keys["good"][1])
    assert "manifest.sig" in str(caught.value)


def test_forged_signature_under_a_trusted_key_id_is_refused(make_artifact, keys):
    # setup: the key id is right, the signature bytes are not
    private, public = keys["good"]
    forged = _signature_record(key_id=_kid(private))
    signed = _sign(make_artifact(), private, signature=forged)
    # execute / assert
    with pytest.raises(ecr.SignatureError, match="does not match manifest.json"):
        ecr.load(signed, trusted_keys=public)


@pytest.mark.parametrize("unpacked", [False, True])
def test_without_trusted_keys_signed_and_unsigned_both_load(make_artifact, keys, unpacked):
    # setup: a signature that would not verify is not even read without trusted_keys
    plain = make_artifact(unpacked=unpacked)
    signed = _sign(make_artifact(unpacked=unpacked), keys["good"][0], signature=b"garbage")
    # execute
    models = [ecr.load(plain), ecr.load(signed)]
    # assert
    assert [m.input_len for m in models] == [6, 6]


@pytest.mark.parametrize(
    ("trusted", "expected"),
    [
        ([], "trusted_keys is empty"),
        ([b"short"], r"trusted_keys\[0\]: not a PEM public key"),
        (["/no/such/key.pub"], r"trusted_keys\[0\]: /no/such/key.pub: no such key file"),
        ([42], r"trusted_keys\[0\]: expected a path"),
    ],
)
def test_malformed_trusted_keys_are_a_one_line_value_error(make_artifact, trusted, expected):
    with pytest.raises(ValueError, match=expected) as caught:
        ecr.load(make_artifact(), trusted_keys=trusted)
    assert not isinstance(caught.value, ecr.ArtifactError)
    assert "\n" not in str(caught.value)


def test_private_key_as_trusted_key_is_refused(make_artifact, keys):
    with pytest.raises(ValueError, match="private key; pass the public key"):
        ecr.load(make_artifact(), trusted_keys=[keys["good"][0]])


def test_manifest_may_not_list_a_file_named_manifest_sig(make_artifact, valid_manifest):
    entry = dict(valid_manifest["files"][0], name="manifest.sig")
    artifact = make_artifact(manifest={"files.0": entry, "model_file": "manifest.sig"})
    with pytest.raises(ecr.ArtifactError, match=r"files\[0\]\.name"):
        ecr.read_artifact(artifact)


SCRIPT = """
import json, sys
import edgecomp_runtime
imported = "cryptography" in sys.modules
sys.modules["cryptography"] = None  # as if the package were not installed
plain = edgecomp_runtime.load(sys.argv[1]).input_len
try:
    edgecomp_runtime.load(sys.argv[1], trusted_keys=[b"x" * 32])
    error = None
except edgecomp_runtime.EngineUnavailableError as exc:
    error = str(exc)
print(json.dumps({"imported": imported, "plain": plain, "error": error}))
"""


def test_bare_import_skips_cryptography_and_its_absence_is_a_clear_error(make_artifact, run_fresh):
    # execute: a fresh interpreter, so nothing the test process imported leaks in
    outcome = run_fresh(SCRIPT, str(make_artifact()))
    # assert
    assert outcome["imported"] is False
    assert outcome["plain"] == 6
    assert "pip install 'edgecomp-runtime[signing]'" in outcome["error"]


def test_runtime_cli_checks_signatures_with_trusted_key(make_artifact, keys, tmp_path, capsys):
    # setup
    from edgecomp_runtime.__main__ import main

    signed = _sign(make_artifact(), keys["good"][0])
    good, other = tmp_path / "good.pub", tmp_path / "other.pub"
    good.write_bytes(keys["good"][1])
    other.write_bytes(keys["other"][1])
    # execute
    ok = main(["info", str(signed), "--trusted-key", str(good)])
    refused = main(["info", str(signed), "--trusted-key", str(other)])
    missing = main(["info", str(signed), "--trusted-key", str(tmp_path / "absent.pub")])
    # assert
    err = capsys.readouterr().err.strip().splitlines()
    assert (ok, refused, missing) == (0, 2, 2)
    assert "not among the trusted keys" in err[0] and "absent.pub" in err[1]
