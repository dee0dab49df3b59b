"""Heavy property tests (10,000 examples in the default run) over the runtime's hostile inputs.

(a) validate_manifest on mutated manifests: 5,000 examples; (b) Model.predict on generated
windows: 3,000; (c) read_artifact on corrupted zip bytes: 2,000. Each may only return a correct
value or raise the documented error family, with a one-line message.

Hypothesis draws one 64-bit seed per example and the mutations are made from it in plain Python:
that keeps an example at ~0.1-0.5 ms (rich ``st.data()`` draws cost ~5-10 ms each), and a failure
still reports the seed that reproduces it.
"""

from __future__ import annotations

import copy
import io
import json
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("hypothesis", reason="property tests need hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import edgecomp_runtime as ecr  # noqa: E402
from edgecomp_runtime import ArtifactError, InputError  # noqa: E402

MANIFEST_EXAMPLES = 5_000
PREDICT_EXAMPLES = 3_000
ZIP_EXAMPLES = 2_000
SEEDS = st.integers(0, 2**64 - 1)


def _settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


# --- (a) validate_manifest -------------------------------------------------------------------

ABSURD = [0, -1, 1, 100_000, 100_001, 2**63, -(2**63), 10**400, True, False, None, "", " ", "..",
          "../x", "/etc/passwd", "model.onnx", "manifest.json", "\x00", "\u202e\u0000é漢字🙂",
          float("nan"), float("inf"), -float("inf"), 1e308, -0.0, 5e-324, [], {}, [[]], {"": {}},
          "0" * 64, "batch", "standard", "ffill", "edgecomp-artifact"]  # fmt: skip
HUGE = [0, 1, 2, 99, 100_001]


def _text(rng: random.Random) -> str:
    alphabet = "ab_.-/\\ \x00\n\u202eé漢🙂"
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(9)))


def _scalar(rng: random.Random) -> Any:
    kind = rng.randrange(6)
    if kind == 0:
        return rng.randint(-(2**70), 2**70)
    if kind == 1:
        return rng.choice([rng.uniform(-1e6, 1e6), rng.random(), float(rng.randrange(-3, 4))])
    if kind == 2:
        return _text(rng)
    return copy.deepcopy(rng.choice(ABSURD))


def _junk(rng: random.Random, depth: int = 0) -> Any:
    """A random JSON-like value: scalars, unicode, and nested lists / dicts up to depth 3."""
    kind = rng.randrange(4) if depth < 3 else 0
    if kind == 1:
        return [_junk(rng, depth + 1) for _ in range(rng.randrange(5))]
    if kind == 2:
        return {_text(rng): _junk(rng, depth + 1) for _ in range(rng.randrange(5))}
    return _scalar(rng)


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    """Every dict key / list index path in a JSON value (a list's first 8 items only)."""
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, list):
        items = enumerate(obj[:8])
    else:
        return []
    paths = []
    for key, value in items:
        paths.append((*prefix, key))
        paths.extend(_paths(value, (*prefix, key)))
    return paths


def _swap_type(value: Any) -> Any:
    """The same information in another JSON type (1 -> "1", [a] -> {"0": a}, "x" -> ["x"])."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    if isinstance(value, dict):
        return list(value.values())
    return 0


def _mutate(manifest: dict, rng: random.Random) -> None:
    paths = _paths(manifest)
    if not paths:
        return
    *parents, last = rng.choice(paths)
    parent = manifest
    for key in parents:
        parent = parent[key]
    action = rng.choice(["drop", "swap", "junk", "huge", "add"])
    if action == "drop":
        del parent[last]
    elif action == "swap":
        parent[last] = _swap_type(parent[last])
    elif action == "junk":
        parent[last] = _junk(rng)
    elif action == "huge":
        parent[last] = [_scalar(rng)] * rng.choice(HUGE)
    elif isinstance(parent[last], dict):
        parent[last][_text(rng)] = _junk(rng)
    elif isinstance(parent[last], list):
        parent[last].append(_junk(rng))


@_settings(MANIFEST_EXAMPLES)
@given(seed=SEEDS)
def test_validate_manifest_returns_or_raises_artifact_error(toy_manifest, seed):
    # setup: 1-4 mutations of a valid manifest
    rng = random.Random(seed)
    manifest = copy.deepcopy(toy_manifest)
    for _ in range(rng.randint(1, 4)):
        _mutate(manifest, rng)
    # execute / assert: the manifest itself, or one line of ArtifactError naming the source
    try:
        assert ecr.validate_manifest(manifest, source="fz.edgepkg") is manifest
    except ArtifactError as exc:
        message = str(exc)
        assert message.startswith("fz.edgepkg: ") and "\n" not in message


# --- (b) Model.predict -----------------------------------------------------------------------

FLOATS = ["float16", "float32", "float64"]
OTHERS = ["int8", "int32", "int64", "uint8", "uint64", "bool", "complex64", "U3", "datetime64[s]"]


def _shape(rng: np.random.Generator, length: int, width: int) -> tuple[int, ...]:
    kind = rng.integers(4)
    if kind == 0:
        return (length, width)
    if kind == 1:
        return (int(rng.integers(1, 5)), length, width)
    dims = [0, 1, 2, length, width, length + 1]
    return tuple(int(rng.choice(dims)) for _ in range(rng.integers(0, 5)))


def _values(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    if dtype in FLOATS:
        scale = rng.choice([1.0, 1e3, 6e4 if dtype == "float16" else 1e6])
        x = rng.standard_normal(shape) * scale
        x = (np.clip(x, -6e4, 6e4) if dtype == "float16" else x).astype(dtype)
        return _holes(rng, x)
    if dtype[0] in "iu":
        info = np.iinfo(dtype)
        low, high = (info.min, info.max) if rng.random() < 0.5 else (0, 120)
        return rng.integers(low, high, size=shape, dtype=dtype, endpoint=True)
    if dtype == "bool":
        return rng.random(shape) < 0.5
    return rng.standard_normal(shape).astype("complex64").astype(dtype, casting="unsafe")


def _holes(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    """NaN / inf patterns: none, a few, whole columns, a random fraction, one infinity."""
    if x.size == 0 or x.ndim < 2:
        return x
    kind = rng.integers(5)
    flat = x.reshape(-1)
    if kind == 1:
        flat[rng.integers(0, x.size, size=rng.integers(1, 4))] = np.nan
    elif kind == 2:
        x[..., int(rng.integers(x.shape[-1]))] = np.nan
    elif kind == 3:
        flat[rng.random(x.size) < rng.random()] = np.nan
    elif kind == 4:
        flat[rng.integers(x.size)] = rng.choice([np.inf, -np.inf])
    return x


def _check_forecast(model: ecr.Model, window: np.ndarray, out: np.ndarray) -> None:
    expected = (model.horizon, len(model.targets))
    if window.ndim == 3:
        expected = (window.shape[0], *expected)
    assert out.dtype == np.float32 and out.shape == expected
    assert np.isfinite(out).all()


@_settings(PREDICT_EXAMPLES)
@given(seed=SEEDS)
def test_predict_returns_finite_forecasts_or_raises_input_error(toy_model, seed):
    # setup: a random dtype, shape and NaN / inf pattern; sometimes as nested lists
    rng = np.random.default_rng(seed)
    dtype = str(rng.choice(FLOATS * 3 + OTHERS))
    window = _values(rng, _shape(rng, toy_model.input_len, len(toy_model.features)), dtype)
    before = window.copy()
    given_window = window.tolist() if rng.random() < 0.1 else window
    # execute
    try:
        out = toy_model.predict(given_window)
    except InputError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("window: ")
    else:
        _check_forecast(toy_model, window, out)
    # assert: the caller's window is never modified
    np.testing.assert_array_equal(window, before)


@_settings(300)
@given(seed=SEEDS)
def test_predict_on_ragged_python_values_raises_input_error_or_returns(toy_model, seed):
    rng = random.Random(seed)
    value = _junk(rng) if rng.random() < 0.5 else [[_scalar(rng)] * 3 for _ in range(6)]
    try:
        out = toy_model.predict(value)
    except InputError as exc:
        assert "\n" not in str(exc)
    else:
        _check_forecast(toy_model, np.asarray(value), out)


# --- (c) read_artifact -----------------------------------------------------------------------


def _corrupt(original: bytes, rng: random.Random) -> bytes:
    """1-4 edits: bit flips, overwritten / inserted / deleted runs, or a cut tail."""
    blob = bytearray(original)
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(max(len(blob), 1))
        kind = rng.choice(["flip", "overwrite", "insert", "delete", "cut"])
        if kind == "flip" and blob:
            blob[at] ^= 1 << rng.randrange(8)
        elif kind == "overwrite":
            blob[at : at + 4] = rng.randbytes(4)
        elif kind == "insert":
            blob[at:at] = rng.randbytes(rng.randint(1, 16))
        elif kind == "delete":
            del blob[at : at + rng.randint(1, 64)]
        elif kind == "cut":
            del blob[at:]
    return bytes(blob)


def _rezipped(entries: dict[str, bytes], rng: random.Random) -> bytes:
    """A well-formed zip whose manifest.json text was edited (JSON-level corruption)."""
    text = bytearray(entries["manifest.json"])
    at = rng.randrange(len(text))
    text[at : at + rng.randrange(9)] = rng.randbytes(rng.randrange(9))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for name, payload in {**entries, "manifest.json": bytes(text)}.items():
            dst.writestr(name, payload)
    return out.getvalue()


@_settings(ZIP_EXAMPLES)
@given(seed=SEEDS)
def test_read_artifact_on_corrupt_bytes_returns_or_raises_artifact_error(toy_zip, scratch, seed):
    # setup
    rng = random.Random(seed)
    data, entries = toy_zip
    blob = _rezipped(entries, rng) if rng.random() < 0.3 else _corrupt(data, rng)
    scratch.write_bytes(blob)
    # execute / assert
    try:
        manifest, files = ecr.read_artifact(scratch)
    except ArtifactError as exc:
        assert str(exc).startswith(f"{scratch}: ") and "\n" not in str(exc)
    else:
        assert set(files) == {entry["name"] for entry in manifest["files"]}
        assert files[manifest["model_file"]] == entries["model.onnx"]


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def toy_manifest(toy, toy_model_bytes) -> dict[str, Any]:
    manifest = toy.manifest(toy_model_bytes)
    assert ecr.validate_manifest(copy.deepcopy(manifest), source="ok") == manifest
    return json.loads(json.dumps(manifest))


@pytest.fixture(scope="module")
def toy_path(tmp_path_factory, toy, toy_model_bytes, write_artifact) -> Path:
    dest = tmp_path_factory.mktemp("fuzz") / "toy.edgepkg"
    return write_artifact(dest, toy.manifest(toy_model_bytes), {"model.onnx": toy_model_bytes})


@pytest.fixture(scope="module")
def toy_zip(toy_path) -> tuple[bytes, dict[str, bytes]]:
    with zipfile.ZipFile(toy_path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    return toy_path.read_bytes(), entries


@pytest.fixture(scope="module")
def toy_model(toy_path) -> ecr.Model:
    return ecr.load(toy_path)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz-scratch") / "corrupt.edgepkg"
