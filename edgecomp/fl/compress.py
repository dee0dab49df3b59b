"""int8-quantized model updates: what a client sends instead of its fp32 weights.

A client sends ``delta = local - global`` per tensor as symmetric int8 with one fp32 scale per
tensor (``scale = max|delta| / 127``); the server rebuilds ``global + q * scale`` before
averaging. Per element the rebuilt weight is within ``scale / 2`` of the client's weight. Tensors
that are not floating point (counters) travel as they are.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SCALE_SUFFIX", "decode_update", "encode_update", "max_roundtrip_error"]

SCALE_SUFFIX = "::scale"


def _check_keys(global_arrays: dict[str, np.ndarray], other: dict[str, np.ndarray], what: str):
    missing = sorted(set(global_arrays) - set(other))
    extra = sorted(set(other) - set(global_arrays))
    if missing or extra:
        raise ValueError(f"{what}: tensors missing {missing[:3]}, unexpected {extra[:3]}")


def encode_update(
    global_arrays: dict[str, np.ndarray], local_arrays: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The int8 update of ``local_arrays`` against ``global_arrays``: ``{name: int8, name::scale}``.

    Raises:
        ValueError: Different tensor names or shapes, or a non-finite weight.
    """
    _check_keys(global_arrays, local_arrays, "int8 update")
    out: dict[str, np.ndarray] = {}
    for name, ref in global_arrays.items():
        local = np.asarray(local_arrays[name])
        if local.shape != ref.shape:
            raise ValueError(f"int8 update: '{name}' has shape {local.shape}, global {ref.shape}")
        if not np.issubdtype(ref.dtype, np.floating):
            out[name] = local
            continue
        delta = local.astype(np.float64) - ref.astype(np.float64)
        if not np.isfinite(delta).all():
            raise ValueError(f"int8 update: '{name}' holds non-finite weights")
        peak = float(np.abs(delta).max(initial=0.0))
        scale = peak / 127.0 if peak > 0 else 1.0
        out[name] = np.clip(np.rint(delta / scale), -127, 127).astype(np.int8)
        out[name + SCALE_SUFFIX] = np.asarray([scale], dtype=np.float32)
    return out


def decode_update(
    global_arrays: dict[str, np.ndarray], payload: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Rebuild a client's weights from ``global_arrays`` and its ``encode_update`` payload.

    Raises:
        ValueError: Tensors missing or unexpected, a wrong shape or dtype, or a bad scale.
    """
    tensors = {k: v for k, v in payload.items() if not k.endswith(SCALE_SUFFIX)}
    _check_keys(global_arrays, tensors, "int8 update")
    out = {}
    for name, ref in global_arrays.items():
        q = np.asarray(tensors[name])
        if q.shape != ref.shape:
            raise ValueError(f"int8 update: '{name}' has shape {q.shape}, global {ref.shape}")
        if not np.issubdtype(ref.dtype, np.floating):
            out[name] = q.astype(ref.dtype)
            continue
        scale = np.asarray(payload.get(name + SCALE_SUFFIX, np.nan), dtype=np.float64).ravel()
        if q.dtype != np.int8 or scale.size != 1 or not (np.isfinite(scale[0]) and scale[0] > 0):
            raise ValueError(f"int8 update: '{name}' needs int8 values and one positive scale")
        out[name] = (ref.astype(np.float64) + q.astype(np.float64) * scale[0]).astype(ref.dtype)
    return out


def max_roundtrip_error(payload: dict[str, np.ndarray]) -> float:
    """The bound on ``|decoded - local|`` per element: half the largest scale in ``payload``."""
    scales = [float(v.ravel()[0]) for k, v in payload.items() if k.endswith(SCALE_SUFFIX)]
    return max(scales, default=0.0) / 2
