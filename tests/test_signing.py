"""`edgecomp keygen` and `edgecomp build --sign`: signed artifacts end to end through the CLI."""

from __future__ import annotations

import json
import stat
import zipfile

import pytest
from click.testing import CliRunner

import edgecomp_runtime as ecr
from edgecomp.cli import main
from edgecomp_runtime.signing import key_id, load_private_key


@pytest.fixture
def runner():
    return CliRunner()


def _keygen(runner, out, *flags):
    return runner.invoke(main, ["keygen", str(out), *flags])


def test_keygen_writes_a_private_key_for_its_owner_only_and_the_public_key(runner, tmp_path):
    # execute
    result = _keygen(runner, tmp_path / "keys" / "signer")
    # assert
    assert result.exit_code == 0, result.output
    private_path = tmp_path / "keys" / "signer"
    public = (tmp_path / "keys" / "signer.pub").read_bytes()
    assert stat.S_IMODE(private_path.stat().st_mode) == 0o600
    assert b"BEGIN PRIVATE KEY" in private_path.read_bytes()
    assert b"BEGIN PUBLIC KEY" in public
    kid = key_id(load_private_key(private_path).public_key())
    assert kid in result.output
    assert list(ecr.signing.load_trusted_keys(public)) == [kid]


def test_keygen_refuses_to_replace_a_key_unless_forced(runner, tmp_path):
    # setup
    out = tmp_path / "signer"
    _keygen(runner, out)
    before = out.read_bytes()
    # execute
    refused = _keygen(runner, out)
    after_refusal = out.read_bytes()
    forced = _keygen(runner, out, "--force")
    # assert
    assert refused.exit_code == 2
    assert "exists; pass --force" in refused.output
    assert len(refused.output.strip().splitlines()) == 1
    assert after_refusal == before
    assert forced.exit_code == 0, forced.output
    assert out.read_bytes() != before
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


@pytest.mark.target
def test_build_sign_then_load_inspect_with_trusted_keys(
    runner, traffic_checkpoints, traffic_path, tmp_path
):
    # setup
    _keygen(runner, tmp_path / "signer")
    _keygen(runner, tmp_path / "other")
    artifact = tmp_path / "gru.edgepkg"
    signer_id = key_id(load_private_key(tmp_path / "signer").public_key())
    # execute
    built = runner.invoke(
        main,
        [
            "build",
            str(traffic_checkpoints["gru"]),
            "--data",
            str(traffic_path),
            "-o",
            str(artifact),
            "-p",
            "fp32",
            "--sign",
            str(tmp_path / "signer"),
        ],
    )
    verified = runner.invoke(
        main, ["inspect", str(artifact), "--trusted-key", str(tmp_path / "signer.pub")]
    )
    refused = runner.invoke(
        main, ["inspect", str(artifact), "--trusted-key", str(tmp_path / "other.pub")]
    )
    unverified = runner.invoke(main, ["inspect", str(artifact)])
    unsigned = _resigned(artifact, tmp_path / "unsigned.edgepkg", None)
    plain = runner.invoke(main, ["inspect", str(unsigned)])
    garbled = _resigned(artifact, tmp_path / "garbled.edgepkg", b"garbage")
    unreadable = runner.invoke(main, ["inspect", str(garbled)])
    # assert
    assert built.exit_code == 0, built.output
    assert f"signed with ed25519 key {signer_id}" in built.output
    with zipfile.ZipFile(artifact) as archive:
        record = json.loads(archive.read("manifest.sig"))
        listed = [entry["name"] for entry in json.loads(archive.read("manifest.json"))["files"]]
    assert record["key_id"] == signer_id and "manifest.sig" not in listed
    model = ecr.load(artifact, trusted_keys=[tmp_path / "signer.pub"])
    window = [[100.0] * len(model.features)] * model.input_len
    assert model.predict(window).shape == (model.horizon, len(model.targets))
    assert verified.exit_code == 0, verified.output
    assert f"signature   ed25519 key {signer_id} (verified)" in verified.output
    assert refused.exit_code == 2
    assert "not among the trusted keys" in refused.output
    assert f"key {signer_id} (not verified: pass --trusted-key)" in unverified.output
    assert plain.exit_code == 0, plain.output
    assert "signature   none" in plain.output
    assert unreadable.exit_code == 0, unreadable.output
    assert "signature   unreadable" in unreadable.output
    assert "not valid UTF-8 JSON" in unreadable.output


def _resigned(artifact, dest, signature):
    """A copy of ``artifact`` whose manifest.sig holds ``signature`` (None: no manifest.sig)."""
    with zipfile.ZipFile(artifact) as src, zipfile.ZipFile(dest, "w") as out:
        for name in src.namelist():
            if name != "manifest.sig":
                out.writestr(name, src.read(name))
        if signature is not None:
            out.writestr("manifest.sig", signature)
    return dest


def test_build_with_a_public_key_as_sign_key_fails_before_building(
    runner, traffic_checkpoints, traffic_path, tmp_path
):
    # setup
    _keygen(runner, tmp_path / "signer")
    out = tmp_path / "a.edgepkg"
    # execute
    result = runner.invoke(
        main,
        [
            "build",
            str(traffic_checkpoints["lstm"]),
            "--data",
            str(traffic_path),
            "-o",
            str(out),
            "--sign",
            str(tmp_path / "signer.pub"),
        ],
    )
    # assert
    assert result.exit_code == 2
    assert "signer.pub: not an unencrypted PEM private key" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists()
