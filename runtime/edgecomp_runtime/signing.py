"""Optional ed25519 signatures of artifacts (FORMAT.md, "manifest.sig").

The signature covers the exact bytes of ``manifest.json``, which lists the size and sha256 of every
other file, so a valid signature vouches for the whole artifact. It is stored beside the manifest as
``manifest.sig``: ``{"alg": "ed25519", "key_id": ..., "signature": base64}``.

The ``cryptography`` package is imported only when a key is used (``pip install
'edgecomp-runtime[signing]'``), so ``import edgecomp_runtime`` stays light.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from edgecomp_runtime.errors import EngineUnavailableError, SignatureError

SIGNATURE_NAME = "manifest.sig"
SIGNATURE_ALG = "ed25519"
MAX_SIGNATURE_BYTES = 4096  # a real manifest.sig is ~150 bytes
MAX_KEY_FILE_BYTES = 64 * 1024
_RAW_KEY_BYTES = 32
_SIGNATURE_BYTES = 64
_INSTALL = "pip install 'edgecomp-runtime[signing]'"
_MANIFEST = "manifest.json"
_KEY_ID = re.compile(r"[0-9a-f]{1,64}")

KeyLike = Any  # str | Path | bytes | Ed25519PublicKey


def _ed25519() -> Any:
    """The cryptography ed25519 module, or a clear error when the package is missing."""
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise EngineUnavailableError(
            f"artifact signatures need the 'cryptography' package: {_INSTALL}"
        ) from None
    return ed25519


def key_id(public_key: Any) -> str:
    """The first 16 hex digits of the sha256 of a public key's raw 32 bytes."""
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def new_key_pair() -> tuple[bytes, bytes]:
    """A fresh ed25519 key pair: (PKCS8 PEM private key, SubjectPublicKeyInfo PEM public key)."""
    from cryptography.hazmat.primitives import serialization

    private = _ed25519().Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


def load_private_key(key: str | Path | bytes | Any) -> Any:
    """An ``Ed25519PrivateKey`` from a PEM (PKCS8, unencrypted) file path, PEM bytes or a key.

    Raises:
        ValueError: The file is missing or holds no unencrypted ed25519 private key.
    """
    ed25519 = _ed25519()
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    from cryptography.hazmat.primitives import serialization

    label, data = _key_bytes(key)
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"{label}: not an unencrypted PEM private key ({_first_line(exc)})"
        ) from None
    if not isinstance(private, ed25519.Ed25519PrivateKey):
        raise ValueError(f"{label}: the private key is {type(private).__name__}, not ed25519")
    return private


def load_trusted_keys(keys: KeyLike | Iterable[KeyLike]) -> dict[str, Any]:
    """Parse ``trusted_keys``: paths, PEM or raw 32-byte ``bytes``, or ``Ed25519PublicKey``.

    A single key may be given instead of a list.

    Returns:
        key id -> ``Ed25519PublicKey``.

    Raises:
        ValueError: No keys, or one that is not an ed25519 public key (the entry is named).
        EngineUnavailableError: ``cryptography`` is not installed.
    """
    ed25519 = _ed25519()
    single = (str, Path, bytes, bytearray, ed25519.Ed25519PublicKey)
    items = [keys] if isinstance(keys, single) else list(keys)
    if not items:
        raise ValueError("trusted_keys is empty; pass None to skip signature checks")
    parsed = {}
    for i, item in enumerate(items):
        public = _public_key(item, f"trusted_keys[{i}]", ed25519)
        parsed[key_id(public)] = public
    return parsed


def sign_manifest(manifest_bytes: bytes, private_key: Any) -> bytes:
    """The ``manifest.sig`` content for ``manifest_bytes``, signed by ``private_key``."""
    private = load_private_key(private_key)
    record = {
        "alg": SIGNATURE_ALG,
        "key_id": key_id(private.public_key()),
        "signature": base64.b64encode(private.sign(manifest_bytes)).decode("ascii"),
    }
    return json.dumps(record, indent=2).encode()


def verify_manifest(
    manifest_bytes: bytes, signature: bytes | None, trusted: dict[str, Any], *, source: str
) -> str:
    """Check ``signature`` (the ``manifest.sig`` bytes, None when absent) against ``trusted``.

    Args:
        manifest_bytes: The exact bytes of ``manifest.json``.
        signature: The content of ``manifest.sig``, or None when the artifact has none.
        trusted: From ``load_trusted_keys``.
        source: The artifact, named in errors.

    Returns:
        The key id that signed the manifest.

    Raises:
        SignatureError: Unsigned, malformed signature, untrusted key, or a signature that does not
            match the manifest.
    """
    from cryptography.exceptions import InvalidSignature

    if signature is None:
        raise SignatureError(f"{source}: artifact is not signed; trusted keys were given")
    signer, raw = _parse_signature(signature, source)
    if signer not in trusted:
        raise SignatureError(
            f"{source}: signed by key {signer}, which is not among the trusted keys "
            f"({', '.join(sorted(trusted))})"
        )
    try:
        trusted[signer].verify(raw, manifest_bytes)
    except InvalidSignature:
        raise SignatureError(
            f"{source}: the signature by key {signer} does not match {_MANIFEST}: the manifest "
            "was altered after signing, or the signature is corrupt"
        ) from None
    return signer


def signer_key_id(path: str | Path) -> str | None:
    """The key id an artifact's ``manifest.sig`` names, or None when unsigned. NOT verified.

    For display (``edgecomp inspect``); use ``read_artifact(path, trusted_keys=...)`` to verify.

    Raises:
        SignatureError: ``manifest.sig`` is oversize or malformed.
    """
    path = Path(path)
    source = str(path)
    data = _read_signature_file(path)
    return None if data is None else _parse_signature(data, source)[0]


def _read_signature_file(path: Path) -> bytes | None:
    """manifest.sig of a folder or zip artifact (None when absent), at most MAX_SIGNATURE_BYTES."""
    if path.is_dir():
        file = path / SIGNATURE_NAME
        if not file.is_file():
            return None
        check_signature_size(file.stat().st_size, str(path))
        return file.read_bytes()
    try:
        with zipfile.ZipFile(path) as archive:
            if SIGNATURE_NAME not in archive.namelist():
                return None
            info = archive.getinfo(SIGNATURE_NAME)
            check_signature_size(info.file_size, str(path))
            return archive.read(info)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
        raise SignatureError(f"{path}: cannot read {SIGNATURE_NAME} ({exc})") from None


def check_signature_size(size: int, source: str) -> None:
    """Refuse a ``manifest.sig`` above MAX_SIGNATURE_BYTES before it is read."""
    if size > MAX_SIGNATURE_BYTES:
        raise SignatureError(
            f"{source}: {SIGNATURE_NAME} is {size} bytes, more than {MAX_SIGNATURE_BYTES}"
        )


def _parse_signature(data: bytes, source: str) -> tuple[str, bytes]:
    prefix = f"{source}: {SIGNATURE_NAME}"
    try:
        record = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise SignatureError(f"{prefix} is not valid UTF-8 JSON") from None
    if not isinstance(record, dict):
        raise SignatureError(f"{prefix} must hold a JSON object")
    if record.get("alg") != SIGNATURE_ALG:
        raise SignatureError(f"{prefix}: 'alg' must be '{SIGNATURE_ALG}'")
    signer = record.get("key_id")
    if not isinstance(signer, str) or not _KEY_ID.fullmatch(signer):
        raise SignatureError(f"{prefix}: 'key_id' must be 1 to 64 lowercase hex digits")
    try:
        raw = base64.b64decode(str(record.get("signature")), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != _SIGNATURE_BYTES:
        raise SignatureError(f"{prefix}: 'signature' must be {_SIGNATURE_BYTES} bytes in base64")
    return signer, raw


def _public_key(item: Any, label: str, ed25519: Any) -> Any:
    if isinstance(item, ed25519.Ed25519PublicKey):
        return item
    if isinstance(item, ed25519.Ed25519PrivateKey):
        raise ValueError(f"{label}: a private key; pass its public key")
    if not isinstance(item, str | Path | bytes | bytearray):
        raise ValueError(
            f"{label}: expected a path, PEM or raw bytes, or an Ed25519PublicKey, "
            f"not {type(item).__name__}"
        )
    try:
        where, data = _key_bytes(item)
    except ValueError as exc:
        raise ValueError(f"{label}: {exc}") from None
    where = f"{label} ({where})" if where != "key" else label
    if len(data) == _RAW_KEY_BYTES:
        return ed25519.Ed25519PublicKey.from_public_bytes(data)
    if b"PRIVATE KEY" in data:
        raise ValueError(f"{where}: a private key; pass the public key (.pub) instead")
    from cryptography.hazmat.primitives import serialization

    try:
        public = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"{where}: not a PEM public key or 32 raw bytes ({_first_line(exc)})"
        ) from None
    if not isinstance(public, ed25519.Ed25519PublicKey):
        raise ValueError(f"{where}: the public key is {type(public).__name__}, not ed25519")
    return public


def _key_bytes(key: str | Path | bytes | bytearray) -> tuple[str, bytes]:
    """(label for errors, key bytes): bytes as given, PEM text as given, else a file's content."""
    if isinstance(key, bytes | bytearray):
        return "key", bytes(key)
    if isinstance(key, str) and key.lstrip().startswith("-----BEGIN"):
        return "key", key.encode()
    path = Path(key)
    if not path.is_file():
        raise ValueError(f"{path}: no such key file")
    if path.stat().st_size > MAX_KEY_FILE_BYTES:
        raise ValueError(f"{path}: larger than {MAX_KEY_FILE_BYTES} bytes, not a key file")
    return str(path), path.read_bytes()


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
