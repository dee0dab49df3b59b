"""Artifacts that explain themselves: a build id, ONNX metadata and MODEL_CARD.md.

Run by the build's package stage, before checksums are computed (so ``files`` lists the
annotated bytes and the card): ``explain(ctx, verify)``.

The build id is a random 128-bit hex string, new for every build, stored as the manifest's
``build_id`` and as ``edgecomp.build_id`` in every ONNX file of the artifact. It is not a checksum
(the checksums are computed over these very files): it ties an ONNX file taken out of an
artifact back to that artifact's manifest.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from importlib import metadata
from typing import Any

__all__ = ["explain", "new_build_id", "onnx_metadata"]


def new_build_id() -> str:
    """A fresh build id: 32 hex digits (uuid4)."""
    return uuid.uuid4().hex


def explain(ctx: Any, verify: Callable[..., dict[str, Any]]) -> None:
    """Give ``ctx.manifest`` a build id, annotate every ``*.onnx`` file of ``ctx.files`` and add
    ``MODEL_CARD.md`` (a ``pipeline.BuildContext`` after verify; in place). ``verify`` is
    ``pipeline.verify``, passed in so that this module does not import the pipeline."""
    from edgecomp.report.model_card import CARD_NAME, card_facts, render_model_card

    manifest = ctx.manifest
    manifest["build_id"] = new_build_id()
    test = _test_metrics(ctx, verify)
    roles = {manifest["model_file"]: "model"}
    if manifest.get("stream"):
        roles[manifest["stream"]["step_file"]] = "step"
    for name in [n for n in ctx.files if n.endswith(".onnx")]:
        ctx.files[name] = _annotated(ctx.files[name], manifest, roles.get(name, "other"))
    sizes = {name: len(data) for name, data in ctx.files.items()}
    card = render_model_card(
        manifest, card_facts(ctx.dataset, ctx.model), test_metrics=test, sizes=sizes
    )
    ctx.files[CARD_NAME] = card.encode()


def onnx_metadata(manifest: dict[str, Any], role: str = "model") -> dict[str, Any]:
    """The ``edgecomp.*`` metadata an ONNX file of the artifact carries (keys without prefix):
    short fields, and digests of the spec and producer records the manifest holds in full."""
    from edgecomp.targets.onnx.metadata import digest, spec_record

    return {
        "version": _version("edgecomp"),
        "build_id": manifest["build_id"],
        "file": role,
        "spec": spec_record(manifest["spec"]),
        "precision": manifest["precision"],
        "target": manifest["target"]["name"],
        "producer": digest(manifest["producer"]),
    }


def _annotated(data: bytes, manifest: dict[str, Any], role: str) -> bytes:
    from edgecomp.targets.onnx.metadata import annotate

    return annotate(data, onnx_metadata(manifest, role), producer_version=_version("edgecomp"))


def _test_metrics(ctx: Any, verify: Callable[..., dict[str, Any]]) -> dict[str, Any] | None:
    """The manifest's metrics when on the test split, else computed on it (None: no window)."""
    metrics = ctx.manifest.get("metrics") or {}
    if metrics.get("split") == "test":
        return metrics
    if not len(ctx.dataset.split("test")):
        return None
    return verify(ctx.model, ctx.dataset, ctx.manifest, ctx.files, split="test")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"
