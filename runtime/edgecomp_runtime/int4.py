"""int4 weights: symmetric quantization, nibble packing and expansion back to float32 (numpy only).

Layout (ONNX's INT4, ``TensorProto.INT4``): signed values in [-8, 7], two per byte, element
``2i`` in the low nibble of byte ``i`` and ``2i + 1`` in the high nibble; an odd count leaves the
last high nibble zero. One scale per slice along ``axis`` (per output channel): ``w ≈ q * scale``.
The compiler packs with these functions; ONNX Runtime expands the same layout when it loads an
int4 artifact, and ``dequantize_int4`` is the reference expansion the tests hold it to.
"""

from __future__ import annotations

import numpy as np

__all__ = ["pack_int4", "unpack_int4", "quantize_int4", "dequantize_int4"]

QMIN, QMAX = -8, 7


def pack_int4(values: np.ndarray) -> np.ndarray:
    """Pack int values in [-8, 7] into uint8 bytes, two per byte (low nibble first).

    Raises:
        ValueError: A value lies outside [-8, 7].
    """
    flat = np.asarray(values).reshape(-1)
    if flat.size and (flat.min() < QMIN or flat.max() > QMAX):
        raise ValueError(f"int4 values must lie in [{QMIN}, {QMAX}]")
    nibbles = (flat.astype(np.int16) & 0x0F).astype(np.uint8)
    if nibbles.size % 2:
        nibbles = np.append(nibbles, np.uint8(0))
    return (nibbles[0::2] | (nibbles[1::2] << 4)).astype(np.uint8)


def unpack_int4(packed: np.ndarray, count: int) -> np.ndarray:
    """The first ``count`` signed int4 values of ``packed`` bytes, as int8.

    Raises:
        ValueError: ``packed`` holds fewer than ``count`` values.
    """
    packed = np.asarray(packed, dtype=np.uint8).reshape(-1)
    if count < 0 or 2 * packed.size < count:
        raise ValueError(f"int4: {packed.size} bytes cannot hold {count} values")
    nibbles = np.empty(packed.size * 2, dtype=np.uint8)
    nibbles[0::2] = packed & 0x0F
    nibbles[1::2] = packed >> 4
    signed = nibbles[:count].astype(np.int8)
    return np.where(signed > QMAX, signed - 16, signed).astype(np.int8)


def quantize_int4(
    weights: np.ndarray, axis: int, scale_dtype: type = np.float32
) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int4 per slice along ``axis``: (int8 values in [-8, 7], scales).

    The scale maps each slice's largest magnitude to 7 (an all-zero slice gets scale 1); it is
    rounded to ``scale_dtype`` before the weights are, so ``q * scale`` uses the stored scale.
    """
    w = np.asarray(weights, dtype=np.float32)
    other = tuple(i for i in range(w.ndim) if i != axis % w.ndim)
    peak = np.abs(w).max(axis=other) if other else np.abs(w)
    scales = np.where(peak > 0, peak / QMAX, 1.0).astype(scale_dtype)
    scales[scales == 0] = 1  # a peak below the dtype's smallest normal
    stored = _along(scales.astype(np.float32), axis, w.ndim)
    q = np.clip(np.rint(w / stored), QMIN, QMAX).astype(np.int8)
    return q, scales


def dequantize_int4(q: np.ndarray, scales: np.ndarray, axis: int) -> np.ndarray:
    """float32 weights ``q * scale`` with one scale per slice along ``axis``."""
    q = np.asarray(q)
    return (q.astype(np.float32) * _along(np.asarray(scales, np.float32), axis, q.ndim)).astype(
        np.float32
    )


def _along(scales: np.ndarray, axis: int, ndim: int) -> np.ndarray:
    shape = [1] * ndim
    shape[axis % ndim] = -1
    return scales.reshape(shape)
