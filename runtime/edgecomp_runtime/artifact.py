"""Read and check an edgecomp artifact (.edgepkg zip or unpacked folder), per FORMAT.md.

Nothing in an artifact is trusted: zip entries are checked for unsafe names and zip bombs before
anything is decompressed, the manifest is type-checked key by key, and every listed file must match
its size and sha256. Errors are one line and name the artifact and the key or file.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import reprlib
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from edgecomp_runtime.errors import ArtifactError, ChecksumError, FormatVersionError
from edgecomp_runtime.signing import (
    SIGNATURE_NAME,
    check_signature_size,
    load_trusted_keys,
    verify_manifest,
)

FORMAT = "edgecomp-artifact"
FORMAT_VERSION = 1
MIN_FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"

# Zip-bomb and resource guards; module attributes so a deployment (or a test) can tighten them.
MAX_TOTAL_BYTES = 512 * 2**20  # uncompressed bytes of all entries together
MAX_MANIFEST_BYTES = 16 * 2**20
MAX_ENTRIES = 64
MAX_RATIO = 100  # uncompressed / compressed, checked for entries above RATIO_MIN_BYTES
RATIO_MIN_BYTES = 2**20
MAX_DIM = 100_000  # largest L, H or F accepted
_FLOAT32_MAX = 3.4028234663852886e38  # scaler values must fit (and, for std, invert) in float32

_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_REPR = reprlib.Repr()
_REPR.maxstring = 40
_REPR.maxother = 40


def read_artifact(
    path: str | Path, *, trusted_keys: Any = None
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Read an artifact and verify it.

    Args:
        path: A ``.edgepkg`` zip file, or a folder holding the same files unpacked.
        trusted_keys: None (signatures are not checked), or ed25519 public keys (paths, PEM or
            raw 32-byte ``bytes``, ``Ed25519PublicKey``): the artifact must then carry a
            ``manifest.sig`` by one of them that matches its manifest. Needs ``cryptography``.

    Returns:
        The validated manifest, and the content of every file it lists, keyed by file name.

    Raises:
        ArtifactError: Not a zip, truncated, unsafe or oversize entries, missing or malformed
            manifest, missing files. ``ChecksumError``, ``FormatVersionError`` and
            ``SignatureError`` (only with ``trusted_keys``) are subclasses.
        ValueError: ``trusted_keys`` is empty or holds something that is not an ed25519 public key.
        EngineUnavailableError: ``trusted_keys`` given and ``cryptography`` is not installed.
    """
    path = Path(path)
    source = str(path)
    trusted = None if trusted_keys is None else load_trusted_keys(trusted_keys)
    if path.is_dir():
        return _read_folder(path, source, trusted)
    if not path.is_file():
        raise ArtifactError(f"{source}: no such artifact file or folder")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise ArtifactError(
            f"{source}: not a readable zip, truncated or not an .edgepkg ({exc})"
        ) from None
    with archive:
        return _read_zip(archive, source, trusted)


def _read_zip(
    archive: zipfile.ZipFile, source: str, trusted: dict[str, Any] | None
) -> tuple[dict[str, Any], dict[str, bytes]]:
    infos = {info.filename: info for info in _checked_entries(archive.infolist(), source)}
    if MANIFEST_NAME not in infos:
        raise ArtifactError(f"{source}: no {MANIFEST_NAME} in the artifact")
    if infos[MANIFEST_NAME].file_size > MAX_MANIFEST_BYTES:
        raise ArtifactError(f"{source}: {MANIFEST_NAME} is larger than {MAX_MANIFEST_BYTES} bytes")
    raw = _read_entry(archive, infos[MANIFEST_NAME], source)
    if trusted is not None:  # authenticate the manifest before parsing it
        sig = infos.get(SIGNATURE_NAME)
        if sig is not None:
            check_signature_size(sig.file_size, source)
        signature = None if sig is None else _read_entry(archive, sig, source)
        verify_manifest(raw, signature, trusted, source=source)
    manifest = validate_manifest(_parse_manifest(raw, source), source=source)
    files = {}
    for entry in manifest["files"]:
        info = infos.get(entry["name"])
        if info is None:
            raise ArtifactError(
                f"{source}: '{entry['name']}' is listed in the manifest but missing"
            )
        _check_size(entry, info.file_size, source)
        files[entry["name"]] = _verified(_read_entry(archive, info, source), entry, source)
    return manifest, files


def _checked_entries(infos: list[zipfile.ZipInfo], source: str) -> list[zipfile.ZipInfo]:
    if len(infos) > MAX_ENTRIES:
        raise ArtifactError(
            f"{source}: {len(infos)} zip entries, more than the {MAX_ENTRIES} allowed"
        )
    seen: set[str] = set()
    for info in infos:
        name = info.filename
        if not _is_safe_name(name):
            raise ArtifactError(
                f"{source}: unsafe zip entry name {_short(name)} "
                "(folders, absolute paths and '..' are not allowed)"
            )
        if name in seen:
            raise ArtifactError(f"{source}: zip entry '{name}' appears more than once")
        seen.add(name)
        if info.flag_bits & 0x1:
            raise ArtifactError(f"{source}: zip entry '{name}' is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise ArtifactError(
                f"{source}: zip entry '{name}' uses compression method {info.compress_type}; "
                "only stored and deflated entries are read"
            )
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > RATIO_MIN_BYTES and ratio > MAX_RATIO:
            raise ArtifactError(
                f"{source}: zip entry '{name}' expands {ratio:.0f}x "
                f"(limit {MAX_RATIO}x): refused as a possible zip bomb"
            )
    total = sum(info.file_size for info in infos)
    if total > MAX_TOTAL_BYTES:
        raise ArtifactError(
            f"{source}: entries declare {total} uncompressed bytes, more than the "
            f"{MAX_TOTAL_BYTES} allowed"
        )
    return infos


def _read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, source: str) -> bytes:
    """Read one entry, never more than its declared size (+1 to notice a longer stream)."""
    try:
        with archive.open(info) as handle:
            data = handle.read(info.file_size + 1)
    except (
        zipfile.BadZipFile,
        zlib.error,
        EOFError,
        OSError,
        ValueError,
        NotImplementedError,  # e.g. flag bit 5 or 6 (patched data, strong encryption)
    ) as exc:
        raise ChecksumError(f"{source}: '{info.filename}' is corrupt in the zip ({exc})") from None
    if len(data) != info.file_size:
        raise ChecksumError(
            f"{source}: '{info.filename}' holds {len(data)} bytes, its zip header says "
            f"{info.file_size}"
        )
    return data


def _read_folder(
    folder: Path, source: str, trusted: dict[str, Any] | None
) -> tuple[dict[str, Any], dict[str, bytes]]:
    manifest_path = folder / MANIFEST_NAME
    if not manifest_path.is_file():
        raise ArtifactError(f"{source}: no {MANIFEST_NAME} in the artifact folder")
    if manifest_path.stat().st_size > MAX_MANIFEST_BYTES:
        raise ArtifactError(f"{source}: {MANIFEST_NAME} is larger than {MAX_MANIFEST_BYTES} bytes")
    raw = manifest_path.read_bytes()
    if trusted is not None:
        sig = folder / SIGNATURE_NAME
        if sig.is_file():
            check_signature_size(sig.stat().st_size, source)
        signature = sig.read_bytes() if sig.is_file() else None
        verify_manifest(raw, signature, trusted, source=source)
    manifest = validate_manifest(_parse_manifest(raw, source), source=source)
    total = sum(entry["size"] for entry in manifest["files"])
    if total > MAX_TOTAL_BYTES:
        raise ArtifactError(f"{source}: files total {total} bytes, more than {MAX_TOTAL_BYTES}")
    files = {}
    for entry in manifest["files"]:
        file = folder / entry["name"]
        if not file.is_file():
            raise ArtifactError(
                f"{source}: '{entry['name']}' is listed in the manifest but missing"
            )
        _check_size(entry, file.stat().st_size, source)
        files[entry["name"]] = _verified(file.read_bytes(), entry, source)
    return manifest, files


def _parse_manifest(raw: bytes, source: str) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ArtifactError(f"{source}: {MANIFEST_NAME} is not valid UTF-8 JSON ({exc})") from None


def _check_size(entry: dict[str, Any], size: int, source: str) -> None:
    if size != entry["size"]:
        raise ChecksumError(
            f"{source}: '{entry['name']}' is {size} bytes, the manifest says {entry['size']}; "
            "the artifact is corrupt or was modified"
        )


def _verified(data: bytes, entry: dict[str, Any], source: str) -> bytes:
    _check_size(entry, len(data), source)
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry["sha256"].lower():
        raise ChecksumError(
            f"{source}: '{entry['name']}' sha256 is {digest[:12]}..., the manifest says "
            f"{entry['sha256'][:12]}...; the artifact is corrupt or was modified"
        )
    return data


# --- manifest validation --------------------------------------------------------------------


def validate_manifest(manifest: Any, *, source: str) -> dict[str, Any]:
    """Check a manifest's keys and types per FORMAT.md; unknown keys are ignored.

    Args:
        manifest: The parsed ``manifest.json``.
        source: Where it came from, used as the prefix of error messages.

    Returns:
        The same manifest, once every check passed.

    Raises:
        FormatVersionError: ``format_version`` is outside MIN_FORMAT_VERSION..FORMAT_VERSION.
        ArtifactError: A key is missing or malformed; the message names the key.
    """
    check = _Checker(source)
    if not isinstance(manifest, dict):
        raise ArtifactError(
            f"{source}: {MANIFEST_NAME} must hold a JSON object, not {_kind(manifest)}"
        )
    _check_format(check, manifest)
    _check_header(check, manifest)
    spec = _check_spec(check, manifest)
    _check_io(check, manifest, spec)
    _check_files(check, manifest)
    return manifest


class _Checker:
    """Fetches keys and checks them, raising ArtifactError that names the key path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def need(self, obj: dict, key: str, path: str, ok: Callable[[Any], bool], expected: str) -> Any:
        if key not in obj:
            raise ArtifactError(f"{self.source}: manifest is missing key '{path}{key}'")
        return self.opt(obj, key, path, ok, expected)

    def opt(self, obj: dict, key: str, path: str, ok: Callable[[Any], bool], expected: str) -> Any:
        value = obj.get(key)
        if key in obj and not ok(value):
            self.fail(f"{path}{key}", expected, value)
        return value

    def fail(self, key: str, expected: str, value: Any) -> NoReturn:
        raise ArtifactError(
            f"{self.source}: manifest key '{key}' must be {expected}, got {_short(value)}"
        )


def _check_format(check: _Checker, manifest: dict) -> None:
    fmt = check.need(manifest, "format", "", _is_str, "a string")
    if fmt != FORMAT:
        raise ArtifactError(
            f"{check.source}: not an edgecomp artifact "
            f"(format is {_short(fmt)}, expected '{FORMAT}')"
        )
    version = check.need(manifest, "format_version", "", _is_int, "an integer")
    readable = _readable_versions()
    if version > FORMAT_VERSION:
        raise FormatVersionError(
            f"{check.source}: artifact format_version {_short(version)} is newer than this runtime "
            f"reads ({readable}); upgrade: pip install -U edgecomp-runtime"
        )
    if version < MIN_FORMAT_VERSION:
        raise FormatVersionError(
            f"{check.source}: artifact format_version {_short(version)} is older than this runtime "
            f"reads ({readable}); rebuild it with a current edgecomp"
        )


def _readable_versions() -> str:
    if MIN_FORMAT_VERSION == FORMAT_VERSION:
        return str(FORMAT_VERSION)
    return f"{MIN_FORMAT_VERSION}..{FORMAT_VERSION}"


def _check_header(check: _Checker, manifest: dict) -> None:
    check.need(manifest, "producer", "", _is_obj, "an object")
    target = check.need(manifest, "target", "", _is_obj, "an object")
    check.need(target, "name", "target.", _is_name, "a non-empty string")
    check.need(target, "backend", "target.", _is_name, "a non-empty string")
    check.opt(target, "arch", "target.", _is_str, "a string")
    check.opt(target, "toolchain", "target.", _is_obj, "an object")
    check.need(manifest, "precision", "", _is_name, "a non-empty string")
    check.need(manifest, "layers", "", _is_list, "a list")
    check.need(manifest, "metrics", "", _is_obj, "an object")
    check.opt(manifest, "created", "", _is_str, "a string")
    check.opt(manifest, "recipe", "", _is_obj, "an object")


def _check_spec(check: _Checker, manifest: dict) -> dict:
    spec = check.need(manifest, "spec", "", _is_obj, "an object")
    dim = f"an integer in 1..{MAX_DIM}"
    for key in ("input_len", "horizon"):
        check.need(spec, key, "spec.", _is_dim, dim)
    names = f"a non-empty list of at most {MAX_DIM} strings"
    features = check.need(spec, "features", "spec.", _is_names, names)
    if len(set(features)) != len(features):
        check.fail("spec.features", "unique names", features)
    targets = check.need(spec, "targets", "spec.", _is_names, names)
    known = set(features)
    unknown = [name for name in targets if name not in known]
    if unknown:
        check.fail("spec.targets", "names among spec.features", unknown)
    _check_scaler(check, spec, len(features))
    _check_imputation(check, spec)
    check.opt(spec, "arch", "spec.", _is_str, "a string")
    check.opt(spec, "hparams", "spec.", _is_obj, "an object")
    check.opt(spec, "period_s", "spec.", _is_positive_or_none, "a positive number or null")
    check.opt(spec, "seasonal_period", "spec.", _is_dim_or_none, f"{dim} or null")
    check.opt(spec, "data", "spec.", _is_obj, "an object")
    return spec


def _check_scaler(check: _Checker, spec: dict, n_features: int) -> None:
    scaler = check.need(spec, "scaler", "spec.", _is_obj, "an object")
    check.opt(scaler, "kind", "spec.scaler.", lambda v: v == "standard", "'standard'")
    expected = f"a list of {n_features} finite numbers"
    for key in ("mean", "std"):
        check.need(scaler, key, "spec.scaler.", lambda v: _is_numbers(v, n_features), expected)
    if not all(value > 0 for value in scaler["std"]):
        check.fail("spec.scaler.std", "positive numbers", scaler["std"])
    for key, low in (("mean", 0.0), ("std", 1.0 / _FLOAT32_MAX)):
        if not all(low <= abs(float(value)) <= _FLOAT32_MAX for value in scaler[key]):
            expected = "numbers within float32 range" + (", and whose inverse is" if low else "")
            check.fail(f"spec.scaler.{key}", expected, scaler[key])


def _check_imputation(check: _Checker, spec: dict) -> None:
    policy = check.need(spec, "imputation", "spec.", _is_obj, "an object")
    path = "spec.imputation."
    check.need(policy, "interpolate_limit", path, _is_count, "an integer >= 0")
    check.need(policy, "then", path, lambda v: v == "ffill", "'ffill'")
    check.need(policy, "max_missing_fraction", path, _is_fraction, "a number in [0, 1]")
    if "sparse_columns" in policy:  # optional: fill a too-sparse column instead of refusing
        check.need(policy, "sparse_columns", path, lambda v: v == "fill", "'fill'")
        n = len(spec["features"])
        check.need(policy, "fill", path, lambda v: _is_numbers(v, n), f"{n} numbers")


def _check_io(check: _Checker, manifest: dict, spec: dict) -> None:
    io = check.need(manifest, "io", "", _is_obj, "an object")
    expected_dims = {
        "inputs": [spec["input_len"], len(spec["features"])],
        "outputs": [spec["horizon"], len(spec["targets"])],
    }
    for side, dims in expected_dims.items():
        entries = check.need(io, side, "io.", _is_objects, "a non-empty list of objects")
        for i, entry in enumerate(entries):
            path = f"io.{side}[{i}]."
            check.need(entry, "name", path, _is_str, "a string")
            check.need(entry, "shape", path, _is_list, "a list")
            check.need(entry, "dtype", path, _is_name, "a non-empty string")
            check.opt(entry, "scale", path, _is_finite, "a finite number")
            check.opt(entry, "zero_point", path, _is_int, "an integer")
        shape = entries[0]["shape"]
        if not _is_batched_shape(shape, dims):
            check.fail(f"io.{side}[0].shape", f"['batch', {dims[0]}, {dims[1]}] (from spec)", shape)


def _check_files(check: _Checker, manifest: dict) -> None:
    files = check.need(manifest, "files", "", _is_objects, "a non-empty list of objects")
    seen: set[str] = set()
    for i, entry in enumerate(files):
        path = f"files[{i}]."
        name = check.need(
            entry, "name", path, _is_safe_name, "a plain file name (no folders, no '..')"
        )
        if name in (MANIFEST_NAME, SIGNATURE_NAME) or name in seen:
            check.fail(f"{path}name", f"unique, not '{MANIFEST_NAME}' or '{SIGNATURE_NAME}'", name)
        seen.add(name)
        check.need(entry, "sha256", path, _is_sha256, "64 hex digits")
        check.need(entry, "size", path, _is_size, f"an integer in 0..{MAX_TOTAL_BYTES}")
    model_file = check.need(manifest, "model_file", "", _is_safe_name, "a plain file name")
    if model_file not in seen:
        check.fail("model_file", "one of the names in 'files'", model_file)


# --- predicates ----------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return abs(value) < 2**1023 if isinstance(value, int) else math.isfinite(value)  # 10**400


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _is_obj(value: Any) -> bool:
    return isinstance(value, dict)


def _is_list(value: Any) -> bool:
    return isinstance(value, list)


def _is_objects(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _is_dim(value: Any) -> bool:
    return _is_int(value) and 1 <= value <= MAX_DIM


def _is_dim_or_none(value: Any) -> bool:
    return value is None or _is_dim(value)


def _is_count(value: Any) -> bool:
    return _is_int(value) and value >= 0


def _is_size(value: Any) -> bool:
    return _is_int(value) and 0 <= value <= MAX_TOTAL_BYTES


def _is_fraction(value: Any) -> bool:
    return _is_finite(value) and 0 <= value <= 1


def _is_positive_or_none(value: Any) -> bool:
    return value is None or (_is_finite(value) and value > 0)


def _is_names(value: Any) -> bool:
    return (
        isinstance(value, list)
        and 1 <= len(value) <= MAX_DIM
        and all(isinstance(v, str) and v for v in value)
    )


def _is_numbers(value: Any, length: int) -> bool:
    return isinstance(value, list) and len(value) == length and all(_is_finite(v) for v in value)


def _is_sha256(value: Any) -> bool:
    return isinstance(value, str) and _SHA256.fullmatch(value) is not None


def _is_batched_shape(shape: list, dims: list[int]) -> bool:
    if len(shape) != 3:
        return False
    batch = shape[0]
    batch_ok = isinstance(batch, str) or (_is_int(batch) and batch >= 1)
    return batch_ok and all(_is_int(a) and a == b for a, b in zip(shape[1:], dims, strict=True))


def _is_safe_name(value: Any) -> bool:
    """A plain file name: no folders, no drive, no '..', no control characters."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= 255
        and value not in (".", "..")
        and not any(ch in value for ch in "/\\:")
        and all(ch.isprintable() for ch in value)
    )


def _kind(value: Any) -> str:
    return type(value).__name__


def _short(value: Any) -> str:
    try:
        return _REPR.repr(value)
    except ValueError:  # an int too long for str() (sys.get_int_max_str_digits)
        return f"<{_kind(value)} too large to show>"
