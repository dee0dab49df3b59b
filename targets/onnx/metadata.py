"""Provenance inside an ONNX file: ``metadata_props`` and the producer fields.

An ONNX file taken out of an artifact still says what made it and what it expects: the edgecomp
version, the artifact's build id, the model spec in short, precision, target profile and the
toolchain versions. Keys are prefixed ``edgecomp.``; values are strings (JSON for lists/objects).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import onnx

__all__ = ["PREFIX", "annotate", "read_metadata"]

PREFIX = "edgecomp."
PRODUCER_NAME = "edgecomp"


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
