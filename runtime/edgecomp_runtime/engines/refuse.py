"""Engines that refuse, with the reason: artifacts this torch-free runtime does not run itself.

An ExecuTorch program (.pte) needs ExecuTorch's runtime. Its Python bindings load torch and link
libtorch (measured with executorch 1.5.1), which edgecomp-runtime never loads; on a device the
program runs in ExecuTorch's C++ runtime (the Module API or executor_runner). On a build host with
the compiler installed, importing ``edgecomp.targets.executorch`` registers a torch-based engine in
place of this one (``edgecomp_runtime.engines.register_engine``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from edgecomp_runtime.errors import EngineUnavailableError


class ExecuTorchRefused:
    """Refuses every ExecuTorch artifact, naming where it runs."""

    module: ClassVar[str] = "numpy"
    package: ClassVar[str] = "numpy"
    extra: ClassVar[str] = ""
    min_version: ClassVar[str] = "1.26"

    def __init__(
        self, model_bytes: bytes, manifest: dict[str, Any], *, threads: int | None
    ) -> None:
        raise EngineUnavailableError(
            f"{manifest.get('model_file', 'model.pte')}: an ExecuTorch program runs in "
            "ExecuTorch's own runtime (C++ Module API or executor_runner on the device); its "
            "Python bindings need torch, which edgecomp-runtime never imports. On a build host: "
            "pip install 'edgecomp[executorch]' and import edgecomp.targets.executorch"
        )

    def run(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - __init__ always raises
        raise EngineUnavailableError("ExecuTorch artifacts are not run by edgecomp-runtime")
