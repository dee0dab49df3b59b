"""The ``.native`` file: a versioned JSON header and raw little-endian arrays (never pickle).

Layout: the 8-byte magic ``EDGENATV``, a little-endian uint32 header length, the UTF-8 JSON
header, zero padding to a multiple of 64 bytes, then the arrays at the offsets the header lists
(relative to the end of that padding). ``pack`` writes it, ``parse`` validates every field and
every array (dtype, shape, byte count, finite values, dimension limits) before anything reads it.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgecomp_runtime.errors import ArtifactError

MAGIC = b"EDGENATV"
FORMAT = "edgecomp-native"
VERSION = 1
ALIGN = 64
CELLS = {"lstm": 4, "gru": 3}  # PyTorch gate order: LSTM i, f, g, o; GRU r, z, n
PRECISIONS = ("fp32", "int8")
DTYPES = {"float32": np.dtype("<f4"), "int8": np.dtype("i1")}
# bounds that keep every buffer the kernel allocates small and every index in int32
LIMITS = {
    "layers": 16,
    "hidden": 4096,
    "n_features": 4096,
    "input_len": 100_000,
    "outputs": 1_000_000,  # horizon * n_targets
    "weights": 64_000_000,  # all weight elements together
    "sequence": 1 << 24,  # input_len * widest layer: the kernel's per-window sequence buffer
}
MAX_HEADER = 1 << 20


@dataclass(frozen=True)
class Linear:
    """One dense map ``y = W x + b``: float weights, or int8 rows with one float scale each."""

    precision: str
    weight: np.ndarray  # [N, K] float32 (fp32) or int8 (int8)
    scale: np.ndarray | None  # [N] float32, int8 only
    bias: np.ndarray  # [N] float32


@dataclass(frozen=True)
class Layer:
    """One recurrent layer: input and hidden maps, each [G * hidden, in] / [G * hidden, hidden]."""

    input_size: int
    hidden: int
    ih: Linear
    hh: Linear


@dataclass(frozen=True)
class NativeModel:
    """A parsed, validated ``.native`` file."""

    header: dict[str, Any]
    cell: str
    input_len: int
    n_features: int
    horizon: int
    n_targets: int
    target_index: tuple[int, ...]
    residual: bool
    layers: tuple[Layer, ...]
    head: Linear


def pack(
    cell: str,
    layers: list[dict[str, np.ndarray]],
    head_weight: np.ndarray,
    head_bias: np.ndarray,
    *,
    input_len: int,
    n_features: int,
    target_index: list[int],
    residual: bool,
    precision: str | list[str],
    input_precision: str | None = None,
) -> bytes:
    """The ``.native`` file of a stacked LSTM/GRU with a Linear head (see native/__init__.py).

    int8 maps store symmetric per-output-row int8 weights (scale = row max |w| / 127); the
    kernel quantizes each step's input and hidden vector per batch row the same way.

    Args:
        cell: "lstm" (PyTorch gates i, f, g, o) or "gru" (r, z, n).
        layers: One dict per stacked layer: float arrays "w_ih" [G*hidden, in], "w_hh"
            [G*hidden, hidden], "b_ih" and "b_hh" [G*hidden] (G = 4 LSTM, 3 GRU).
        head_weight: [horizon * n_targets, last hidden], applied to the last step's state.
        head_bias: [horizon * n_targets].
        input_len: Window length L the engine reads.
        n_features: Window width F (layer 0's ``in``).
        target_index: Feature position of each target (the residual's last reading).
        residual: Add each target's last reading to its forecast.
        precision: "fp32", "int8", or one per layer then one for the head.
        input_precision: Layer 0's input projection alone (the window's features -> gates,
            one GEMM over all steps): "fp32" or "int8"; default: layer 0's precision.

    Returns:
        The file's bytes: JSON header + raw little-endian arrays (FORMAT.md).

    Raises:
        ValueError: An argument is inconsistent; the message names it (and the layer).
    """
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {sorted(CELLS)}, got {cell!r}")
    if not isinstance(layers, (list, tuple)) or not 1 <= len(layers) <= LIMITS["layers"]:
        raise ValueError(f"layers must be a list of 1..{LIMITS['layers']} layer dicts")
    precisions = _precisions(precision, len(layers))
    gates = CELLS[cell]
    _check_int("input_len", input_len, LIMITS["input_len"])
    _check_int("n_features", n_features, LIMITS["n_features"])
    if input_precision not in (None, *PRECISIONS):
        raise ValueError(f"input_precision must be 'fp32' or 'int8', got {input_precision!r}")
    header_layers, arrays = [], []
    width = n_features
    for i, layer in enumerate(layers):
        plan = (precisions[i], input_precision if i == 0 and input_precision else precisions[i])
        width = _pack_layer(i, layer, width, gates, plan, header_layers, arrays)
    head_weight = _float_array("head_weight", head_weight, 2)
    head_bias = _float_array("head_bias", head_bias, 1)
    if head_weight.shape[1] != width or head_bias.shape != (head_weight.shape[0],):
        raise ValueError(
            f"head_weight must be [outputs, {width}] and head_bias [outputs], got "
            f"{list(head_weight.shape)} and {list(head_bias.shape)}"
        )
    index = [int(i) for i in target_index]
    if not index or not all(0 <= i < n_features for i in index):
        raise ValueError(f"target_index {index} must hold feature positions < {n_features}")
    if head_bias.shape[0] % len(index):
        raise ValueError(
            f"head_bias has {head_bias.shape[0]} outputs, not a multiple of "
            f"{len(index)} targets (target_index)"
        )
    arrays += _linear_arrays("head", head_weight, head_bias, precisions[-1])
    header = {
        "format": FORMAT,
        "version": VERSION,
        "cell": cell,
        "input_len": int(input_len),
        "n_features": int(n_features),
        "horizon": head_bias.shape[0] // len(index),
        "n_targets": len(index),
        "target_index": index,
        "residual": bool(residual),
        "layers": header_layers,
        "head": {"outputs": head_bias.shape[0], "precision": precisions[-1]},
    }
    return _serialize(header, arrays)


def _pack_layer(i, layer, width, gates, plan, header_layers, arrays) -> int:
    precision, input_precision = plan
    if not isinstance(layer, dict):
        raise ValueError(f"layers[{i}] must be a dict of w_ih, w_hh, b_ih, b_hh")
    try:
        w_ih, w_hh = (_float_array(f"layers[{i}].{k}", layer[k], 2) for k in ("w_ih", "w_hh"))
        b_ih, b_hh = (_float_array(f"layers[{i}].{k}", layer[k], 1) for k in ("b_ih", "b_hh"))
    except KeyError as exc:
        raise ValueError(f"layers[{i}] lacks {exc.args[0]!r}") from None
    rows = w_hh.shape[0]
    hidden = rows // gates
    if hidden < 1 or rows != gates * hidden or w_hh.shape != (rows, hidden):
        raise ValueError(
            f"layers[{i}].w_hh must be [{gates}*hidden, hidden], got {list(w_hh.shape)}"
        )
    _check_int(f"layers[{i}] hidden", hidden, LIMITS["hidden"])
    if w_ih.shape != (rows, width):
        raise ValueError(
            f"layers[{i}].w_ih must be [{rows}, {width}] (input {width}), got {list(w_ih.shape)}"
        )
    if b_ih.shape != (rows,) or b_hh.shape != (rows,):
        raise ValueError(f"layers[{i}].b_ih and b_hh must be [{rows}]")
    entry = {"input": width, "hidden": hidden, "precision": precision}
    if input_precision != precision:
        entry["input_precision"] = input_precision
    header_layers.append(entry)
    arrays += _linear_arrays(f"layer{i}.ih", w_ih, b_ih, input_precision)
    arrays += _linear_arrays(f"layer{i}.hh", w_hh, b_hh, precision)
    return hidden


def quantize_rows(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-row int8: (q [N, K] int8, scale [N] float32), w ~= q * scale[:, None]."""
    peak = np.abs(weight).max(axis=1).astype(np.float32)
    scale = np.where(peak > 0, peak / np.float32(127), np.float32(1)).astype(np.float32)
    q = np.clip(np.rint(weight / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale


def _linear_arrays(name, weight, bias, precision) -> list[tuple[str, np.ndarray]]:
    if precision == "fp32":
        return [(f"{name}.weight", weight), (f"{name}.bias", bias)]
    q, scale = quantize_rows(weight)
    return [(f"{name}.weight", q), (f"{name}.scale", scale), (f"{name}.bias", bias)]


def _precisions(precision, n_layers: int) -> list[str]:
    if isinstance(precision, str):
        precision = [precision] * (n_layers + 1)
    precision = list(precision)
    if len(precision) != n_layers + 1 or any(p not in PRECISIONS for p in precision):
        raise ValueError(
            f"precision must be 'fp32', 'int8' or a list of {n_layers + 1} of them "
            f"(one per layer, then the head), got {precision!r}"
        )
    return precision


def _float_array(name: str, value: Any, ndim: int) -> np.ndarray:
    array = np.asarray(value, dtype=np.float32)
    if array.ndim != ndim or 0 in array.shape:
        raise ValueError(f"{name} must be a non-empty {ndim}-d array, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return np.ascontiguousarray(array)


def _check_int(name: str, value: Any, limit: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if not 1 <= value <= limit:
        raise ValueError(f"{name} must be in 1..{limit}, got {value}")


def _serialize(header: dict, arrays: list[tuple[str, np.ndarray]]) -> bytes:
    entries, blobs, offset = [], [], 0
    for name, array in arrays:
        dtype = "int8" if array.dtype == np.int8 else "float32"
        raw = np.ascontiguousarray(array, dtype=DTYPES[dtype]).tobytes()
        entries.append({"name": name, "dtype": dtype, "shape": list(array.shape), "offset": offset})
        blobs.append(raw + b"\0" * (-len(raw) % ALIGN))
        offset += len(blobs[-1])
    text = json.dumps(
        {**header, "arrays": entries, "body_bytes": offset}, separators=(",", ":")
    ).encode()
    start = len(MAGIC) + 4 + len(text)
    return b"".join([MAGIC, struct.pack("<I", len(text)), text, b"\0" * (-start % ALIGN), *blobs])


def parse(data: bytes, name: str = "model.native") -> NativeModel:
    """Validate a ``.native`` file and view its arrays (no copies).

    Raises:
        ArtifactError: Anything is malformed: the message names ``name`` and the field.
    """
    header, body = _read_header(data, name)
    spec = _Spec(header, name)
    cell = spec.choice("cell", tuple(CELLS))
    input_len = spec.integer("input_len", LIMITS["input_len"])
    n_features = spec.integer("n_features", LIMITS["n_features"])
    horizon = spec.integer("horizon", LIMITS["outputs"])
    n_targets = spec.integer("n_targets", LIMITS["outputs"])
    if horizon * n_targets > LIMITS["outputs"]:
        raise ArtifactError(f"{name}: horizon * n_targets exceeds {LIMITS['outputs']}")
    index = header.get("target_index")
    if (
        not isinstance(index, list)
        or len(index) != n_targets
        or not all(type(i) is int and 0 <= i < n_features for i in index)
    ):
        raise ArtifactError(
            f"{name}: target_index must list {n_targets} feature positions < {n_features}"
        )
    if not isinstance(header.get("residual"), bool):
        raise ArtifactError(f"{name}: residual must be true or false")
    arrays = _Arrays(header, body, name)
    layers = _layers(spec, arrays, cell, n_features)
    head_spec = _Spec(header.get("head"), name, "head")
    outputs = head_spec.integer("outputs", LIMITS["outputs"])
    if outputs != horizon * n_targets:
        raise ArtifactError(f"{name}: head.outputs must be horizon * n_targets = {outputs}")
    head = arrays.linear(
        "head", head_spec.choice("precision", PRECISIONS), (outputs, layers[-1].hidden)
    )
    widest = max(n_features, *(layer.hidden for layer in layers))
    if input_len * widest > LIMITS["sequence"]:
        raise ArtifactError(
            f"{name}: input_len * widest layer = {input_len * widest} exceeds {LIMITS['sequence']}"
        )
    unread = sorted(set(arrays.entries) - set(arrays.seen))
    if unread:
        raise ArtifactError(f"{name}: arrays lists {unread}, which no layer or head reads")
    total = sum(a.size for a in arrays.seen.values())
    if total > LIMITS["weights"]:
        raise ArtifactError(f"{name}: {total} weight elements exceed {LIMITS['weights']}")
    return NativeModel(
        header, cell, input_len, n_features, horizon, n_targets, tuple(index),
        header["residual"], tuple(layers), head,
    )  # fmt: skip


def _layers(spec: _Spec, arrays: _Arrays, cell: str, n_features: int) -> list[Layer]:
    entries = spec.header.get("layers")
    if not isinstance(entries, list) or not 1 <= len(entries) <= LIMITS["layers"]:
        raise ArtifactError(f"{spec.name}: layers must list 1..{LIMITS['layers']} layers")
    layers, width = [], n_features
    for i, entry in enumerate(entries):
        layer = _Spec(entry, spec.name, f"layers[{i}]")
        if layer.integer("input", LIMITS["n_features"] + LIMITS["hidden"]) != width:
            raise ArtifactError(f"{spec.name}: layers[{i}].input must be {width}")
        hidden = layer.integer("hidden", LIMITS["hidden"])
        precision = layer.choice("precision", PRECISIONS)
        # optional: the input map's own precision (pack's input_precision, layer 0)
        input_precision = layer.choice("input_precision", PRECISIONS, precision)
        rows = CELLS[cell] * hidden
        ih = arrays.linear(f"layer{i}.ih", input_precision, (rows, width))
        hh = arrays.linear(f"layer{i}.hh", precision, (rows, hidden))
        layers.append(Layer(width, hidden, ih, hh))
        width = hidden
    return layers


def _read_header(data: bytes, name: str) -> tuple[dict, memoryview]:
    view = memoryview(data)
    if len(view) < len(MAGIC) + 4 or bytes(view[: len(MAGIC)]) != MAGIC:
        raise ArtifactError(f"{name}: not an edgecomp .native file (no {MAGIC.decode()} magic)")
    (length,) = struct.unpack_from("<I", view, len(MAGIC))
    start = len(MAGIC) + 4
    if length > MAX_HEADER or start + length > len(view):
        raise ArtifactError(f"{name}: header length {length} runs past the file (truncated?)")
    try:
        header = json.loads(
            bytes(view[start : start + length]).decode(), object_pairs_hook=_unique(name)
        )
    except ArtifactError:
        raise  # a repeated key (_unique)
    except (ValueError, RecursionError):  # bad UTF-8 or JSON, an int of > 4300 digits, nesting
        raise ArtifactError(f"{name}: the header is not valid JSON") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ArtifactError(f"{name}: header.format must be {FORMAT!r}")
    if type(header.get("version")) is not int or header["version"] != VERSION:
        raise ArtifactError(
            f"{name}: version {header.get('version')!r} is not {VERSION}, the one this runtime "
            "reads (pip install -U edgecomp-runtime, or rebuild the artifact)"
        )
    body = view[start + length + (-(start + length) % ALIGN) :]
    if header.get("body_bytes") != len(body):
        raise ArtifactError(
            f"{name}: the arrays hold {len(body)} bytes, the header says "
            f"{header.get('body_bytes')!r} (truncated or altered file)"
        )
    return header, body


def _unique(name: str):
    """A json object hook refusing a key given twice (readers could take either value)."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(items)
        if len(out) != len(items):
            key = next(k for i, (k, _) in enumerate(items) if k in dict(items[:i]))
            raise ArtifactError(f"{name}: the header repeats the key {key!r}")
        return out

    return pairs


class _Spec:
    """Typed, bounded reads of one header object; errors name the file and the field."""

    def __init__(self, header: Any, name: str, where: str = "") -> None:
        if not isinstance(header, dict):
            raise ArtifactError(f"{name}: {where or 'header'} must be an object")
        self.header, self.name, self.where = header, name, f"{where}." if where else ""

    def integer(self, key: str, limit: int) -> int:
        value = self.header.get(key)
        if type(value) is not int or not 1 <= value <= limit:
            raise ArtifactError(
                f"{self.name}: {self.where}{key} must be an int in 1..{limit}, got {value!r}"
            )
        return value

    def choice(self, key: str, options: tuple[str, ...], default: str | None = None) -> str:
        value = self.header.get(key, default)
        if value not in options:
            raise ArtifactError(
                f"{self.name}: {self.where}{key} must be one of {list(options)}, got {value!r}"
            )
        return value


class _Arrays:
    """The header's array table over the body: each array read once, checked, viewed."""

    def __init__(self, header: dict, body: memoryview, name: str) -> None:
        entries = header.get("arrays")
        if not isinstance(entries, list):
            raise ArtifactError(f"{name}: arrays must be a list")
        self.entries = {}
        for entry in entries:
            key = entry.get("name") if isinstance(entry, dict) else None
            if not isinstance(key, str) or key in self.entries:
                raise ArtifactError(f"{name}: arrays holds an unnamed or repeated entry")
            self.entries[key] = entry
        self.body, self.name, self.seen = body, name, {}

    def linear(self, prefix: str, precision: str, shape: tuple[int, int]) -> Linear:
        dtype = "float32" if precision == "fp32" else "int8"
        weight = self.get(f"{prefix}.weight", dtype, shape)
        scale = None
        if precision == "int8":
            scale = self.get(f"{prefix}.scale", "float32", shape[:1])
            if not (scale > 0).all():
                raise ArtifactError(f"{self.name}: {prefix}.scale must be positive and finite")
        return Linear(precision, weight, scale, self.get(f"{prefix}.bias", "float32", shape[:1]))

    def get(self, key: str, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
        entry = self.entries.get(key)
        where = f"{self.name}: array {key}"
        if entry is None:
            raise ArtifactError(f"{where} is missing")
        if entry.get("dtype") != dtype or entry.get("shape") != list(shape):
            raise ArtifactError(
                f"{where} must be {dtype} {list(shape)}, got "
                f"{entry.get('dtype')!r} {entry.get('shape')!r}"
            )
        offset = entry.get("offset")
        nbytes = math.prod(shape) * DTYPES[dtype].itemsize
        if type(offset) is not int or offset < 0 or offset + nbytes > len(self.body):
            raise ArtifactError(f"{where}: offset {offset!r} + {nbytes} bytes runs past the file")
        array = np.frombuffer(self.body, DTYPES[dtype], math.prod(shape), offset).reshape(shape)
        if dtype == "float32" and not np.isfinite(array).all():
            raise ArtifactError(f"{where} holds NaN or infinite values")
        self.seen[key] = array
        return array


def describe(data: bytes, name: str = "model.native") -> dict[str, Any]:
    """The validated header: cell, sizes, per-layer precisions, horizon, targets, arrays."""
    return parse(data, name).header
