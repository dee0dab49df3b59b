"""Stream state files: a small ``.npz`` (no pickles) written atomically, read with checks."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from edgecomp_runtime._atomic import atomic_write
from edgecomp_runtime.errors import EdgecompRuntimeError

STATE_VERSION = 1
_ARRAYS = ("window", "fed", "state", "forecast")
_MAX_BYTES = 64 * 2**20


class StateFileError(EdgecompRuntimeError):
    """A stream state file cannot be read: missing, corrupt, or from another version."""


def save_state(path: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Path:
    """Write ``meta`` (JSON-ready) and ``arrays`` to ``path``: temp file, fsync, rename, fsync dir.

    Returns:
        ``path``. On any failure nothing is left beside it and an older file stays as it was.
    """
    payload = json.dumps({"version": STATE_VERSION, **meta}, allow_nan=False)
    return atomic_write(
        path,
        lambda fh: np.savez(
            fh, meta=np.array(payload), **{k: np.asarray(arrays[k]) for k in _ARRAYS}
        ),
    )


def load_state(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a state file written by ``save_state``: (meta, arrays).

    Raises:
        StateFileError: Missing, oversize, not a state file, corrupt, or a newer version.
    """
    where = f"{path}: stream state"
    if not path.is_file():
        raise StateFileError(f"{where}: no such file")
    if path.stat().st_size > _MAX_BYTES:
        raise StateFileError(f"{where}: larger than {_MAX_BYTES} bytes")
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"][()]))
            arrays = {key: np.array(data[key]) for key in _ARRAYS}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise StateFileError(f"{where}: not a readable state file ({exc})") from None
    version = meta.get("version") if isinstance(meta, dict) else None
    if version != STATE_VERSION:
        raise StateFileError(f"{where}: version {version!r}, expected {STATE_VERSION}")
    if any(arrays[key].dtype.kind != "f" for key in _ARRAYS):
        raise StateFileError(f"{where}: arrays must hold floats")
    return meta, arrays
