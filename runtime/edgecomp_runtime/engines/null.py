"""The null backend's engine: it refuses, with the reason.

A null artifact (the compiler's reference backend, targets/null) holds fp32 torch weights for the
compiler's tests; running them needs torch, which a gateway does not have. Loading one fails here
with that reason instead of the generic "no engine for backend" message.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from edgecomp_runtime.errors import EngineUnavailableError


class NullEngine:
    """Refuses every null artifact: build for a device target instead."""

    module: ClassVar[str] = "numpy"
    package: ClassVar[str] = "numpy"
    extra: ClassVar[str] = ""  # nothing to install: no engine runs a null artifact
    min_version: ClassVar[str] = "1.26"

    def __init__(
        self, model_bytes: bytes, manifest: dict[str, Any], *, threads: int | None
    ) -> None:
        raise EngineUnavailableError(
            f"{manifest.get('model_file', 'model')}: built for the 'null' target, the compiler's "
            "reference backend: it holds torch weights for tests and no gateway engine runs it; "
            "build for a device target (edgecomp targets lists them)"
        )

    def run(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - __init__ always raises
        raise EngineUnavailableError("null artifacts are not run by edgecomp-runtime")
