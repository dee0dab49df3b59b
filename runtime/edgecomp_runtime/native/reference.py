"""The native kernel's math in plain numpy: the test oracle for the compiled kernel.

Float32 throughout. An int8 map quantizes its input per row (per window and step): peak =
max |a|, q = clip(rint(a * (127 / peak)), -127, 127), scale = peak / 127 (q = 0 for a row whose
peak is at most ``TINY_PEAK``: 127 / peak would overflow float32 below ~3.7e-37), multiplies int8
by int8 into exact integers and rescales by the input row's scale times the weight row's scale,
then adds the float bias.
"""

from __future__ import annotations

import numpy as np

from edgecomp_runtime.native.format import Linear, NativeModel

F32 = np.float32
TINY_PEAK = F32(2.0**-100)  # kernel.c's TINY_PEAK


def quantize_activations(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row symmetric int8 of a float32 [M, K] matrix: (q [M, K] int32, scale [M])."""
    peak = np.abs(a).max(axis=1)
    tiny = peak <= TINY_PEAK
    inv = np.where(tiny, F32(0), F32(127) / np.where(tiny, F32(1), peak)).astype(F32)
    q = np.clip(np.rint(a * inv[:, None]), -127, 127).astype(np.int32)
    return q, (peak / F32(127)).astype(F32)


def linear(layer: Linear, a: np.ndarray) -> np.ndarray:
    """``a @ W.T + b`` for float32 [M, K] ``a``, in the map's precision."""
    if layer.precision == "fp32":
        return (a @ layer.weight.T + layer.bias).astype(F32)
    q, scale = quantize_activations(a)
    acc = (q @ layer.weight.T.astype(np.int32)).astype(F32)
    return (acc * (scale[:, None] * layer.scale[None, :]) + layer.bias).astype(F32)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function in float32."""
    return (F32(1) / (F32(1) + np.exp(-x))).astype(F32)


def run(model: NativeModel, x: np.ndarray) -> np.ndarray:
    """Forecast scaled float32 windows [B, L, F]: float32 [B, horizon, n_targets]."""
    x = np.asarray(x, dtype=F32)
    batch, steps, _ = x.shape
    seq = x
    for layer in model.layers:
        seq = _layer(model.cell, layer, seq)
    y = linear(model.head, seq[:, -1]).reshape(batch, model.horizon, model.n_targets)
    if model.residual:
        y = y + x[:, -1, list(model.target_index)][:, None, :]
    return y.astype(F32)


def _layer(cell: str, layer, seq: np.ndarray) -> np.ndarray:
    batch, steps, width = seq.shape
    hidden = layer.hidden
    xg = linear(layer.ih, seq.reshape(batch * steps, width)).reshape(batch, steps, -1)
    h = np.zeros((batch, hidden), F32)
    c = np.zeros((batch, hidden), F32)
    out = np.empty((batch, steps, hidden), F32)
    for t in range(steps):
        hg = linear(layer.hh, h)
        if cell == "lstm":
            pre = xg[:, t] + hg
            i, f, g, o = (pre[:, k * hidden : (k + 1) * hidden] for k in range(4))
            c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
            h = (sigmoid(o) * np.tanh(c)).astype(F32)
        else:
            xr, xz, xn = (xg[:, t, k * hidden : (k + 1) * hidden] for k in range(3))
            hr, hz, hn = (hg[:, k * hidden : (k + 1) * hidden] for k in range(3))
            r, z = sigmoid(xr + hr), sigmoid(xz + hz)
            n = np.tanh(xn + r * hn)
            h = ((F32(1) - z) * n + z * h).astype(F32)
        out[:, t] = h
    return out
