"""The null backend: the fp32 torch weights as they are, checked through the torch reference.

The smallest complete instance of the target template (targets/base.py, targets/README.md): it
declares its capabilities and typed options as data and implements ``lower`` only (fp32 is its
one precision, so there is no ``quantize``). The artifact's ``model.safetensors`` holds the
module's weights and, in the safetensors header's metadata, the ModelSpec that rebuilds it;
nothing is pickled. On the build host ``runner`` rebuilds the module from those bytes alone and
runs it in torch, so parity and verification check the file, not the model in memory.

No gateway engine runs it: the runtime's ``null`` engine refuses it with that reason. It serves
the compiler's tests (a pipeline without vendor toolchains) and shows how to add a backend.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from edgecomp.targets import base

MODEL_FILE = "model.safetensors"
SPEC_KEY = "edgecomp.spec"
REASON = "reference weights, unchanged (null target: no lowering)"


@dataclass(frozen=True)
class NullOptions(base.TargetOptions):
    """The options every backend takes (``keep_float`` has nothing to keep here); a backend
    adds its own fields below ``VERSION``."""

    VERSION: ClassVar[int] = 1


class NullTarget(base.Target):
    """fp32 through the torch reference: weights as safetensors, no engine on the device."""

    name: ClassVar[str] = "null"
    model_file: ClassVar[str] = MODEL_FILE
    options_type: ClassVar[type[base.TargetOptions]] = NullOptions
    capabilities: ClassVar[base.Capabilities] = base.Capabilities(
        precisions=frozenset({base.Precision.FP32}),
        engine="null",
        runs_on_device=False,  # the runtime's null engine refuses it, with the reason
        streaming=False,  # no step model: nothing on the device would run it
        requires=("safetensors",),
        install="pip install edgecomp",
        packages=("torch", "safetensors"),
    )

    def check(self, request: base.Request) -> None:
        """The module must be one ``edgecomp.models`` rebuilds from its spec."""
        from edgecomp.models import MODELS

        arch = request.model.spec.arch
        if arch not in MODELS or not hasattr(request.model.module, "state_dict"):
            raise base.TargetError(
                f"null: the artifact is rebuilt from its spec, so the model must be an edgecomp "
                f"forecaster; got arch '{arch}'. Known: {sorted(MODELS)}"
            )

    def lower(self, request: base.Request) -> base.Lowered:
        """The weights and the spec in one safetensors file; one record per weighted module."""
        from safetensors.torch import save

        module, spec = request.model.module, request.model.spec
        weights = {k: v.detach().contiguous().clone() for k, v in module.state_dict().items()}
        metadata = {SPEC_KEY: json.dumps(spec.to_dict(), sort_keys=True)}
        io = {
            "inputs": [_tensor("window", spec.input_len, spec.n_features)],
            "outputs": [_tensor("forecast", spec.horizon, len(spec.targets))],
        }
        lowering = {"format": "safetensors", "weights": len(weights)}
        return base.Lowered(save(weights, metadata=metadata), io, _layers(module), lowering)

    @classmethod
    def runner(cls, model_bytes: bytes, manifest: dict[str, Any], *, engine: str = "") -> Any:
        """The module rebuilt in torch from the file's spec and weights alone."""
        return _TorchRunner(model_bytes)


class _TorchRunner:
    """Runs a null artifact's weights in torch (the build host only)."""

    def __init__(self, model_bytes: bytes) -> None:
        from safetensors.torch import load

        from edgecomp.models import build_model
        from edgecomp.spec import Model, ModelSpec

        spec = ModelSpec.from_dict(json.loads(_metadata(model_bytes)[SPEC_KEY]), source=MODEL_FILE)
        module = build_model(spec)
        module.load_state_dict(load(model_bytes), strict=True)
        self._model = Model(module=module.eval(), spec=spec, source=MODEL_FILE)

    def run(self, x: np.ndarray) -> np.ndarray:
        from edgecomp.frontend import reference_predict

        return reference_predict(self._model, np.asarray(x, dtype=np.float32)).astype(np.float32)


def _metadata(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors header (8-byte little-endian length, then JSON)."""
    try:
        (length,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + length])
        return dict(header["__metadata__"])
    except (struct.error, ValueError, KeyError, TypeError) as exc:
        raise base.TargetError(f"null: {MODEL_FILE} has no readable spec header ({exc})") from None


def _tensor(name: str, steps: int, width: int) -> dict[str, Any]:
    return {"name": name, "shape": ["batch", steps, width], "dtype": "float32"}


def _layers(module: Any) -> list[dict[str, Any]]:
    """One fp32 record per module that holds weights of its own."""
    return [
        {
            "name": name,
            "op_type": type(child).__name__,
            "precision": "fp32",
            "method": None,
            "reason": REASON,
        }
        for name, child in module.named_modules()
        if name and any(True for _ in child.parameters(recurse=False))
    ]
