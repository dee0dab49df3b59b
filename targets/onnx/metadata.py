"""Provenance inside an ONNX file: ``metadata_props`` and the producer fields.

An ONNX file taken out of an artifact still says what made it and what it expects: the edgecomp
version, the artifact's build id, the model spec in short, precision and target profile. Keys are
prefixed ``edgecomp.``; values are strings (JSON for lists/objects). The file carries the short
fields only; the full records (the spec's feature and target names, every toolchain version) stay
in the artifact's manifest, and the file carries their ``digest`` (``spec.sha256``,
``producer``): ``check_against`` ties a file to a manifest. Every byte shows in a small int4
file, and the same provenance goes into every precision's file, so size ratios stay comparable.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import onnx

__all__ = ["PREFIX", "annotate", "check_against", "digest", "read_metadata", "spec_record"]

PREFIX = "edgecomp."
PRODUCER_NAME = "edgecomp"
DIGEST_HEX = 16  # 64 bits of sha256: ties a file to its manifest, not a security checksum
SPEC_KEYS = ("arch", "input_len", "horizon", "features", "targets", "period_s")
SHORT_SPEC_KEYS = ("arch", "input_len", "horizon", "period_s")


def digest(record: Any) -> str:
    """The first ``DIGEST_HEX`` hex digits of the sha256 of ``record`` as canonical JSON."""
    text = json.dumps(record, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_HEX]


def spec_record(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The short spec an ONNX file carries: arch, window, horizon, period and the digest of the
    full record (``SPEC_KEYS``, feature and target names included) that the manifest holds."""
    full = {key: spec.get(key) for key in SPEC_KEYS}
    return {**{key: full[key] for key in SHORT_SPEC_KEYS}, "sha256": digest(full)}


def check_against(meta: Mapping[str, str], manifest: Mapping[str, Any]) -> list[str]:
    """What in an ONNX file's metadata (``read_metadata``) disagrees with ``manifest``: a list of
    "<key>: <why>" (empty: the file belongs to that artifact)."""
    try:
        spec = json.loads(meta.get("spec", "null"))
    except json.JSONDecodeError:
        spec = None
    expected = {
        "build_id": manifest.get("build_id"),
        "precision": manifest.get("precision"),
        "target": (manifest.get("target") or {}).get("name"),
        "producer": digest(manifest.get("producer")),
        "version": (manifest.get("producer") or {}).get("edgecomp"),
    }
    problems = [
        f"{key}: {meta.get(key)!r} in the file, {value!r} in the manifest"
        for key, value in expected.items()
        if meta.get(key) != value
    ]
    if spec != spec_record(manifest.get("spec") or {}):
        problems.append("spec: the file's short spec or its sha256 differs from the manifest's")
    return problems


def annotate(model: bytes, props: Mapping[str, Any], *, producer_version: str) -> bytes:
    """``model`` with ``props`` as ``metadata_props`` (``edgecomp.<key>``, replacing earlier
    ``edgecomp.*`` entries) and ``producer_name``/``producer_version`` set to edgecomp's.

    Non-string values are stored as compact JSON. The graph is not touched.

    Raises:
        ValueError: ``model`` is not a readable ONNX model.
    """
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(model)
    except Exception as exc:  # protobuf DecodeError
        raise ValueError(f"not a readable ONNX model: {exc}") from None
    kept = [p for p in proto.metadata_props if not p.key.startswith(PREFIX)]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in props.items():
        text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
        proto.metadata_props.add(key=f"{PREFIX}{key}", value=text)
    proto.producer_name, proto.producer_version = PRODUCER_NAME, producer_version
    return proto.SerializeToString()


def read_metadata(proto: onnx.ModelProto) -> dict[str, str]:
    """The ``edgecomp.*`` metadata of ``proto``, keys without the prefix."""
    return {
        p.key.removeprefix(PREFIX): p.value
        for p in proto.metadata_props
        if p.key.startswith(PREFIX)
    }
