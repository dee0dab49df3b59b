"""x86 ONNX backend (ONNX Runtime): fp32, int8 with a rule per op type, int4 weight-only.

Importing this package loads no toolchain: onnx, onnxsim and onnxruntime are imported on use.
"""

from .target import OnnxTarget, count_ops, export_onnx

__all__ = ["OnnxTarget", "count_ops", "export_onnx"]
