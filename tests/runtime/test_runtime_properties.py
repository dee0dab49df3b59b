"""Property tests: malformed manifests and corrupt zips only ever raise ArtifactError."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import pytest

hypothesis = pytest.importorskip("hypothesis", reason="property tests need hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from edgecomp_runtime import ArtifactError, read_artifact, validate_manifest  # noqa: E402

SETTINGS = settings(
    max_examples=300,
    deadline=None,
    database=None,
    # too_slow / data_too_large: generation slows down on a loaded 2-core CI machine
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

SPECIAL = st.sampled_from(
    [0, -1, 1, 2, 100_001, 10**30, True, False, "", "1", "batch", "..", float("nan"), float("inf"),
     1.5, [], {}, [1.0], ["a"], None]
)  # fmt: skip
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6) | SPECIAL,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=10,
)


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path in a nested JSON value (dict keys and list indices)."""
    items = (
        obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else []
    )
    paths = []
    for key, value in items:
        paths.append((*prefix, key))
        paths.extend(_paths(value, (*prefix, key)))
    return paths


def _mutate(manifest: dict, data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(_paths(manifest)), label="path")
    *parents, last = path
    parent = manifest
    for key in parents:
        parent = parent[key]
    action = data.draw(st.sampled_from(["replace", "delete", "add"]), label="action")
    if action == "replace":
        parent[last] = data.draw(JSON, label="value")
    elif action == "delete":
        del parent[last]
    elif isinstance(parent[last], dict):
        parent[last][data.draw(st.text(max_size=8), label="new key")] = data.draw(JSON)
    elif isinstance(parent[last], list):
        parent[last].append(data.draw(JSON, label="new item"))


@SETTINGS
@given(data=st.data())
def test_validate_manifest_only_raises_artifact_error(valid_manifest, data):
    # setup
    manifest = copy.deepcopy(valid_manifest)
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        if _paths(manifest):
            _mutate(manifest, data)
    # execute / assert: returns the manifest, or raises ArtifactError (never anything else)
    try:
        assert validate_manifest(manifest, source="fuzz") is manifest
    except ArtifactError as exc:
        assert str(exc).startswith("fuzz: ") and "\n" not in str(exc)


@SETTINGS
@given(value=JSON)
def test_validate_manifest_refuses_any_non_manifest_value(value):
    with pytest.raises(ArtifactError):
        validate_manifest(value, source="fuzz")


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(data=st.data())
def test_corrupt_zip_bytes_only_raise_artifact_error(make_artifact, data):
    # setup: flip or cut bytes of a valid artifact
    original = make_artifact().read_bytes()
    corrupted = bytearray(original)
    for _ in range(data.draw(st.integers(1, 4), label="flips")):
        at = data.draw(st.integers(0, len(original) - 1), label="offset")
        corrupted[at] = data.draw(st.integers(0, 255), label="byte")
    corrupted = corrupted[: data.draw(st.integers(0, len(original)), label="keep")]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.edgepkg"
        path.write_bytes(bytes(corrupted))
        # execute / assert
        try:
            manifest, files = read_artifact(path)
        except ArtifactError:
            return
    assert set(files) == {entry["name"] for entry in manifest["files"]}
