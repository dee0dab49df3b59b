"""Host-side proof: parse the emitted graph and build an engine with a real TensorRT builder.

``tensorrt-rtx`` (PyPI) ships the TensorRT builder and ONNX parser and builds engines without a
GPU. Its engine is not the Jetson's (another TensorRT, strongly typed, no DLA), so the plan is
thrown away: what counts is that TensorRT's parser read every node and its builder accepted the
network with the Q/DQ and fp16 types as emitted.
"""

from __future__ import annotations

import importlib.util
import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from edgecomp.targets.base import TargetError

MODULE = "tensorrt_rtx"
PACKAGE = "tensorrt-rtx"


def available() -> bool:
    """True when tensorrt_rtx can be imported here."""
    return importlib.util.find_spec(MODULE) is not None


def host_build(model_bytes: bytes, input_name: str, shapes: list[list[int]]) -> dict[str, Any]:
    """Parse ``model_bytes`` with TensorRT's ONNX parser and build a serialized engine.

    Args:
        model_bytes: The ONNX model.
        input_name: Its input tensor.
        shapes: Min, opt and max input shapes of the optimization profile.

    Returns:
        ``{"builder", "parsed", "built", "layers", "plan_bytes", "parse_s", "build_s"}``.

    Raises:
        TargetError: The parser or the builder refused the graph (with TensorRT's messages).
    """
    import tensorrt_rtx as trt

    logger = _Logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    start = time.perf_counter()
    if not parser.parse(model_bytes):
        errors = [parser.get_error(i) for i in range(parser.num_errors)]
        detail = "; ".join(
            f"node '{e.node_name()}' ({e.node_operator()}): {e.desc()}" for e in errors
        )
        raise TargetError(
            f"tensorrt: TensorRT's ONNX parser ({_version()}) refused the graph: {detail}"
        )
    parsed = time.perf_counter()
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, *shapes)
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    built = time.perf_counter()
    if plan is None:
        raise TargetError(
            f"tensorrt: TensorRT's builder ({_version()}) could not build the graph: "
            + (" | ".join(logger.errors[-3:]) or "no message")
        )
    return {
        "builder": f"{PACKAGE} {_version()}",
        "parsed": True,
        "built": True,
        "layers": network.num_layers,
        "plan_bytes": plan.nbytes,
        "parse_s": round(parsed - start, 4),
        "build_s": round(built - parsed, 4),
    }


def _version() -> str:
    try:
        return version(PACKAGE)
    except PackageNotFoundError:
        return "unknown"


def _Logger(trt: Any) -> Any:  # noqa: N802 (builds an ILogger subclass of the imported module)
    class Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            if severity <= trt.ILogger.Severity.ERROR:
                self.errors.append(msg.strip().splitlines()[0] if msg.strip() else msg)

    return Logger()
