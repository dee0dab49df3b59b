"""The artifact manifest: the only code that writes manifest.json and .edgepkg files.

The format (keys, types, versioning) is documented in runtime/FORMAT.md and
runtime/COMPATIBILITY.md. The runtime owns the reader and the validator, so the compiler can never
write what the runtime would refuse: every artifact passes the runtime's own checks before it is
written.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, TypedDict

from edgecomp._io import atomic_write
from edgecomp_runtime import FORMAT, FORMAT_VERSION, read_artifact, validate_manifest
from edgecomp_runtime.signing import SIGNATURE_NAME, load_private_key, sign_manifest

__all__ = [
    "Manifest",
    "FORMAT",
    "FORMAT_VERSION",
    "ARTIFACT_SUFFIX",
    "producer_versions",
    "new_manifest",
    "write_artifact",
    "read_manifest",
    "format_manifest",
]

ARTIFACT_SUFFIX = ".edgepkg"
MANIFEST_NAME = "manifest.json"


class Manifest(TypedDict, total=False):
    """The keys of manifest.json (runtime/FORMAT.md), as the build stages fill them in.

    ``new_manifest`` gives the header; the lower stage the target, io, spec, recipe and layers;
    verify the metrics; stream the optional ``stream`` section; ``write_artifact`` the files.
    """

    format: str
    format_version: int
    created: str
    producer: dict[str, str]
    target: dict[str, Any]
    precision: str
    model_file: str
    io: dict[str, Any]
    spec: dict[str, Any]
    recipe: dict[str, Any]
    layers: list[dict[str, Any]]
    metrics: dict[str, Any]
    stream: dict[str, Any]
    build_id: str
    files: list[dict[str, Any]]


def producer_versions(*packages: str) -> dict[str, str]:
    """Installed versions of edgecomp, torch and ``packages`` (absent ones are skipped)."""
    versions = {}
    for name in ("edgecomp", "edgecomp-runtime", "torch", *packages):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def new_manifest(**sections: Any) -> Manifest:
    """A manifest dict with the format header, creation time and the given sections."""
    return {  # type: ignore[return-value]
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        **sections,
    }


def write_artifact(
    path: str | Path,
    manifest: dict[str, Any],
    files: dict[str, bytes],
    *,
    sign_key: Any = None,
) -> Path:
    """Checksum ``files``, validate the manifest with the runtime's rules, write a zip atomically.

    Args:
        path: Destination .edgepkg path.
        manifest: Manifest without ``files``; it is completed in place with names, sizes and sha256.
        files: File name -> contents, flat names only.
        sign_key: None, or an ed25519 private key (PEM file path, PEM bytes or key object): the
            manifest's bytes are signed into ``manifest.sig``.

    Returns:
        The written path.
    """
    path = Path(path)
    private = None if sign_key is None else load_private_key(sign_key)
    manifest["files"] = [
        {"name": name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        for name, data in sorted(files.items())
    ]
    validate_manifest(manifest, source=str(path))
    payload = json.dumps(manifest, indent=2, sort_keys=False, allow_nan=False).encode()
    signature = None if private is None else sign_manifest(payload, private)

    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(MANIFEST_NAME, payload)
            if signature is not None:
                zf.writestr(SIGNATURE_NAME, signature)
            for name, data in sorted(files.items()):
                zf.writestr(name, data)

    atomic_write(path, write)
    # read back through the runtime: checksums, format and the signature
    read_artifact(path, trusted_keys=None if private is None else private.public_key())
    return path


def read_manifest(path: str | Path, *, trusted_keys: Any = None) -> dict[str, Any]:
    """Read and verify an artifact's manifest (format version, checksums, optional signature)."""
    manifest, _ = read_artifact(path, trusted_keys=trusted_keys)
    return manifest


def format_manifest(manifest: dict[str, Any]) -> str:
    """A readable multi-line summary of a manifest (for `edgecomp inspect`)."""
    out = io.StringIO()
    spec, target = manifest["spec"], manifest["target"]
    print(f"format      {manifest['format']} v{manifest['format_version']}", file=out)
    print(f"created     {manifest.get('created', '?')}", file=out)
    if manifest.get("build_id"):
        card = " (card: MODEL_CARD.md)" if _has_file(manifest, "MODEL_CARD.md") else ""
        print(f"build id    {manifest['build_id']}{card}", file=out)
    print(
        f"target      {target.get('name')} (backend {target.get('backend')}, "
        f"{target.get('arch', '?')})  precision {manifest['precision']}",
        file=out,
    )
    print("producer    " + ", ".join(f"{k} {v}" for k, v in manifest["producer"].items()), file=out)
    print(
        f"model       {spec['arch']} {spec.get('hparams', {})}  L={spec['input_len']} "
        f"H={spec['horizon']}  F={len(spec['features'])} -> {len(spec['targets'])}",
        file=out,
    )
    if spec.get("period_s"):
        print(
            f"sampling    every {spec['period_s']:g} s, imputation {spec['imputation']}", file=out
        )
    _format_io(manifest["io"], out)
    _format_recipe(manifest.get("recipe") or {}, out)
    _format_stream(manifest.get("stream"), out)
    _format_layers(manifest["layers"], out)
    _format_metrics(manifest["metrics"], out)
    print("files", file=out)
    for entry in manifest["files"]:
        print(
            f"  {entry['name']:<24} {entry['size']:>10,} B  sha256 {entry['sha256'][:16]}…",
            file=out,
        )
    return out.getvalue()


def _has_file(manifest: dict[str, Any], name: str) -> bool:
    return any(entry.get("name") == name for entry in manifest.get("files", []))


def _format_io(io_spec: dict[str, Any], out: io.StringIO) -> None:
    for kind in ("inputs", "outputs"):
        for t in io_spec.get(kind, []):
            print(f"{kind[:-1]:<11} {t['name']} {t['shape']} {t['dtype']}", file=out)


def _format_engine(lowering: dict[str, Any], out: io.StringIO) -> None:
    """The engine the build measured fastest (onnx targets), and each alternative's latency.

    With a batch routing, the engine that runs large batches is marked ``routed`` with the
    batch size from which it takes over.
    """
    routing = lowering.get("batch_routing") or {}
    for m in lowering.get("candidates", {}).get("measured", []):
        lat = m.get("latency_ms") or {}
        cells = f"{lat['b1']:.3f} / {lat['b64']:.3f} ms" if lat else m.get("error")
        cells = cells or f"failed parity ({m.get('max_abs_diff')} > {m['parity_limit']:.3g})"
        precision = m.get("inference_precision", "f32")
        recorded = lowering.get(m["engine"], {}).get("inference_precision", "f32")
        same = (m["lowering"], m["threads"], precision) == (
            lowering.get("candidate_lowering"),
            lowering.get("threads"),
            recorded,
        )
        mark = "measured"
        if same and m["engine"] == lowering.get("engine"):
            mark = "chosen"
        elif same and m["engine"] == routing.get("engine"):
            mark = f"routed (batches >= {routing.get('min_batch')})"
        suffix = "" if precision == "f32" else f"/{precision}"
        name = f"{m['lowering']}/{m['engine']}/{m['threads']}t{suffix}"
        print(f"engine      {mark} {name} b1/b64 {cells}", file=out)


def _format_recipe(recipe: dict[str, Any], out: io.StringIO) -> None:
    for record in recipe.get("passes", []):
        m = record.get("measured", {})
        before, after = m.get("before") or {}, m.get("after") or {}
        change = ""
        if before.get("params") and after.get("params"):
            change = f": params {before['params']:,} -> {after['params']:,}"
        print(f"pass        {record.get('_type')} {record.get('_data', {})}{change}", file=out)
    calibration = recipe.get("lowering", {}).get("calibration")
    if calibration:
        print(
            f"calibration {calibration['n_windows']} windows spanning "
            f"{100 * calibration['span_fraction']:.0f} % of the training range, "
            f"sha256 {calibration['sha256'][:16]}…",
            file=out,
        )
    _format_engine(recipe.get("lowering", {}), out)
    mixed = recipe.get("mixed_precision")
    if mixed:
        print(
            f"mixed       {mixed['base_precision']} under {mixed['budget']['text']}; "
            f"kept in float: {mixed['kept_float'] or 'none'}"
            + (f"; kept in int8: {mixed['kept_int8']}" if mixed.get("kept_int8") else ""),
            file=out,
        )


def _format_stream(stream: dict[str, Any] | None, out: io.StringIO) -> None:
    if not stream:
        return
    worst = stream["worst_increase"]
    print(
        f"stream      {stream['step_file']} ({stream['kind']}), exact {stream['exact']}, "
        f"allowed {stream['allowed']}; worst step vs windowed {100 * worst:+.2f} % "
        f"(budget {100 * stream['error_budget']:g} %)"
        + (f", measured on the {stream['step_path']} step" if stream.get("step_path") else ""),
        file=out,
    )


def _format_layers(layers: list[dict[str, Any]], out: io.StringIO) -> None:
    print("layers", file=out)
    for layer in layers:
        method = f" ({layer['method']})" if layer.get("method") else ""
        print(
            f"  {layer['name']:<28} {layer['op_type']:<8} {layer['precision']:<5}{method}"
            f"  {layer.get('reason', '')}",
            file=out,
        )


def _format_metrics(metrics: dict[str, Any], out: io.StringIO) -> None:
    print(
        f"metrics     {metrics.get('split', '?')} split, {metrics.get('n_windows', '?')} windows; "
        f"parity max |diff| {metrics.get('parity', {}).get('max_abs_diff', float('nan')):.3g} "
        "(scaled units)",
        file=out,
    )
    rows = [
        ("reference MAE", metrics["reference"]["mae"]),
        ("artifact MAE", metrics["artifact"]["mae"]),
    ]
    rows += [(f"{name} MAE", m["mae"]) for name, m in metrics.get("baselines", {}).items()]
    horizon = len(rows[0][1])
    print("  " + " " * 22 + "".join(f"h{h + 1:<8}" for h in range(horizon)), file=out)
    for label, values in rows:
        print(f"  {label:<22}" + "".join(f"{v:<9.4g}" for v in values), file=out)
