"""Profile options of the tensorrt backend, checked, and the builder settings they give."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from edgecomp.targets.base import TargetError, TargetOptions

# Builder flags per precision. int8: INT8 honours the explicit Q/DQ; FP16 lets the layers left
# in float (LSTM/GRU, elementwise) run in fp16. fp32: TF32 off, so Ampere matches fp32 parity.
BUILDER_FLAGS = {"fp32": [], "fp16": ["FP16"], "int8": ["INT8", "FP16"]}
CLEARED_FLAGS = {"fp32": ["TF32"], "fp16": [], "int8": []}


@dataclass(frozen=True)
class TrtOptions(TargetOptions):
    """Options of a tensorrt profile (targets/profiles/jetson-*.json), overridable per build.

    Attributes:
        tensorrt: The device's TensorRT version, a key of support_matrix.json.
        jetpack: The JetPack release that ships it.
        opset: ONNX opset to export with.
        compute_capability: The GPU's compute capability, e.g. "8.7".
        batch_sizes: Min, opt and max batch of the engine's optimization profile.
        workspace_mb: Builder workspace memory pool limit.
        dla_cores: DLA cores on the module (0: none); the engine runs on the GPU.
        host_build: Parse and build with tensorrt-rtx on the host when it is installed.
        aot: Compile ahead of time with torch-tensorrt (needs it importable: a GPU host).
        int4_weight_only: The device's TensorRT takes int4 weight-only Q/DQ.
    """

    VERSION: ClassVar[int] = 1

    tensorrt: str = ""
    jetpack: str = ""
    opset: int = 17
    compute_capability: str = ""
    batch_sizes: tuple[int, int, int] = (1, 8, 64)
    workspace_mb: int = 256
    dla_cores: int = 0
    host_build: bool = True
    aot: bool = False
    int4_weight_only: bool = False

    def validate(self, where: str) -> None:
        """The TensorRT version is given, counts are >= 0 and batch sizes ascend."""
        super().validate(where)
        if not self.tensorrt:
            raise TargetError(f"{where}: option 'tensorrt' (the device's TensorRT) is missing")
        for key in ("opset", "workspace_mb", "dla_cores"):
            if getattr(self, key) < 0:
                raise TargetError(
                    f"{where}: option '{key}' must be an integer >= 0; got {getattr(self, key)!r}"
                )
        _batch_sizes(where, self.batch_sizes)

    def builder(self, precision: str, io: dict[str, Any]) -> dict[str, Any]:
        """What the device's TensorRT builder is told, recorded in the manifest's recipe."""
        return {
            "version": self.tensorrt,
            "jetpack": self.jetpack,
            "compute_capability": self.compute_capability,
            "flags": BUILDER_FLAGS[precision],
            "clear_flags": CLEARED_FLAGS[precision],
            "input": io["inputs"][0]["name"],
            "shapes": self.shapes(io),
            "workspace_mb": self.workspace_mb,
            "dla_cores": self.dla_cores,
            "device": "GPU",
        }

    def shapes(self, io: dict[str, Any]) -> list[list[int]]:
        """Min, opt and max input shapes of the engine's optimization profile."""
        shape = io["inputs"][0]["shape"][1:]
        return [[batch, *shape] for batch in self.batch_sizes]


def _batch_sizes(where: str, value: Any) -> None:
    ok = (
        isinstance(value, list | tuple)
        and len(value) == 3
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
        and list(value) == sorted(value)
    )
    if not ok:
        raise TargetError(
            f"{where}: option 'batch_sizes' must be [min, opt, max] ascending integers >= 1; "
            f"got {list(value)!r}"
        )
