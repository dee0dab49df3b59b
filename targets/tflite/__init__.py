"""ARM TFLite backend (LiteRT): fp32, full int8, dynamic int8 and int4 weights.

Importing this package loads no toolchain: litert-torch, ai-edge-quantizer and ai-edge-litert are
imported on use.
"""

from .target import TfliteTarget

__all__ = ["TfliteTarget"]
