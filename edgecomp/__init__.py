"""edgecomp: compile, compress, package and benchmark spatio-temporal forecasters for edge targets.

The public API is loaded lazily, so `import edgecomp` loads neither torch nor a target toolchain.
"""

from __future__ import annotations

import importlib
from importlib import metadata

try:
    __version__ = metadata.version("edgecomp")
except metadata.PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"

_API = {
    "ModelSpec": "edgecomp.spec",
    "Model": "edgecomp.spec",
    "DataConfig": "edgecomp.data",
    "prepare": "edgecomp.data",
    "TrainConfig": "edgecomp.train",
    "BuildConfig": "edgecomp.pipeline",
    "build": "edgecomp.pipeline",
    "load_model": "edgecomp.frontend",
    "load_checkpoint": "edgecomp.checkpoint",
    "read_manifest": "edgecomp.manifest",
    "bench_artifact": "edgecomp.bench",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'edgecomp' has no attribute '{name}'")
