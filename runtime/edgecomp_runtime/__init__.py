"""edgecomp_runtime: run edgecomp artifacts (.edgepkg) on a gateway, without torch.

    import edgecomp_runtime as ecr
    model = ecr.load("traffic.edgepkg")
    forecast = model.predict(raw_window)  # [L, F] raw units -> [H, F_out] raw units

Importing this package loads numpy only; the engine (onnxruntime) is imported by ``load``, and
``cryptography`` only when ``trusted_keys`` are given (see ``edgecomp_runtime.signing``).
"""

from edgecomp_runtime.artifact import (
    FORMAT,
    FORMAT_VERSION,
    MIN_FORMAT_VERSION,
    read_artifact,
    validate_manifest,
)
from edgecomp_runtime.engines import ENGINES, get_engine
from edgecomp_runtime.errors import (
    ArtifactError,
    ChecksumError,
    EdgecompRuntimeError,
    EngineUnavailableError,
    FormatVersionError,
    InputDtypeError,
    InputError,
    InputShapeError,
    MissingValueError,
    ModelOutputError,
    SignatureError,
    TimestampError,
)
from edgecomp_runtime.model import Model, load
from edgecomp_runtime.stream import Stream, StreamError

__version__ = "0.1.0"

__all__ = [
    "ENGINES",
    "FORMAT",
    "FORMAT_VERSION",
    "MIN_FORMAT_VERSION",
    "ArtifactError",
    "ChecksumError",
    "EdgecompRuntimeError",
    "EngineUnavailableError",
    "FormatVersionError",
    "InputDtypeError",
    "InputError",
    "InputShapeError",
    "MissingValueError",
    "Model",
    "ModelOutputError",
    "SignatureError",
    "Stream",
    "StreamError",
    "TimestampError",
    "__version__",
    "get_engine",
    "load",
    "read_artifact",
    "validate_manifest",
]
