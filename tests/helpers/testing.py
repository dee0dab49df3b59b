"""Test helpers shipped with the package: tiny specs and models, synthetic windows, tolerances.

Everything here is small and deterministic, so tests that use it run in milliseconds on one thread.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from edgecomp.data.windows import Windows
from edgecomp.models import build_model
from edgecomp.spec import Model, ModelSpec

__all__ = [
    "TINY_HPARAMS",
    "TOLERANCES",
    "assert_close",
    "sine_series",
    "sine_windows",
    "tiny_model",
    "tiny_spec",
]

TINY_HPARAMS: dict[str, dict[str, Any]] = {
    "lstm": {"hidden": 8, "layers": 1},
    "gru": {"hidden": 8, "layers": 1},
    "tcn": {"channels": 8},
}

# (atol, rtol) per precision, for outputs in scaled units (values of order 1).
TOLERANCES: dict[str, tuple[float, float]] = {
    "fp32": (1e-4, 1e-4),
    "fp16": (1e-2, 1e-2),
    "int8": (1e-1, 1e-1),
    "int4": (3e-1, 1e-1),
}


def tiny_spec(
    arch: str = "lstm",
    *,
    input_len: int = 8,
    horizon: int = 3,
    n_features: int = 4,
    n_targets: int = 2,
) -> ModelSpec:
    """A small valid spec: features f0..f{F-1}, targets the first ``n_targets`` of them.

    The scaler is plausible and distinct per feature (mean 10 i, std 1 + i), so a test that
    forgets to scale or unscale sees a difference.
    """
    features = [f"f{i}" for i in range(n_features)]
    return ModelSpec(
        arch=arch,
        input_len=input_len,
        horizon=horizon,
        features=features,
        targets=features[:n_targets],
        scaler={
            "kind": "standard",
            "mean": [10.0 * i for i in range(n_features)],
            "std": [1.0 + i for i in range(n_features)],
        },
        hparams=dict(TINY_HPARAMS.get(arch, {})),
        period_s=60.0,
        data={"source": "tests/helpers/testing.py"},
    )


def tiny_model(arch: str = "lstm", seed: int = 0, **kw: Any) -> Model:
    """An untrained tiny model for ``tiny_spec(arch, **kw)``, seeded by ``seed``, in eval mode.

    The global torch random state is left as it was.
    """
    spec = tiny_spec(arch, **kw)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = build_model(spec)
    module.eval()
    return Model(module=module, spec=spec, source=f"tests/helpers: tiny_model({arch!r})")


def sine_series(
    length: int, n_features: int, seed: int = 0, *, period: int = 16, noise: float = 0.05
) -> np.ndarray:
    """Noisy phase-shifted sines [length, n_features], float32, values of order 1."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)[:, None]
    phase = 2 * np.pi * np.arange(n_features)[None, :] / max(n_features, 1)
    clean = np.sin(2 * np.pi * t / period + phase) + 0.3 * np.sin(2 * np.pi * t / (3 * period))
    return (clean + noise * rng.standard_normal(clean.shape)).astype(np.float32)


def sine_windows(
    n: int, input_len: int, horizon: int, n_features: int, n_targets: int, seed: int = 0
) -> Windows:
    """``n`` overlapping windows (stride 1) of a learnable noisy sine series.

    Targets are the first ``n_targets`` features; ``starts`` are 0..n-1.
    """
    if n < 1 or not 1 <= n_targets <= n_features:
        raise ValueError(
            f"need n >= 1 and 1 <= n_targets <= n_features, got n={n}, "
            f"n_targets={n_targets}, n_features={n_features}"
        )
    series = sine_series(n + input_len + horizon - 1, n_features, seed)
    starts = np.arange(n, dtype=np.int64)
    x = np.stack([series[s : s + input_len] for s in starts])
    y = np.stack([series[s + input_len : s + input_len + horizon, :n_targets] for s in starts])
    return Windows(x=x, y=y, starts=starts)


def assert_close(
    ref: Any, out: Any, *, dtype: str = "fp32", atol: float | None = None, rtol: float | None = None
) -> None:
    """Assert ``out`` matches ``ref`` within the tolerances of ``dtype`` (see ``TOLERANCES``).

    Raises:
        AssertionError: Shapes differ or some element is out of tolerance (with the max difference).
        ValueError: Unknown ``dtype`` (lists the known ones).
    """
    if dtype not in TOLERANCES:
        raise ValueError(f"unknown dtype '{dtype}'. Known: {sorted(TOLERANCES)}")
    default_atol, default_rtol = TOLERANCES[dtype]
    ref = np.asarray(ref.detach() if isinstance(ref, torch.Tensor) else ref, dtype=np.float64)
    out = np.asarray(out.detach() if isinstance(out, torch.Tensor) else out, dtype=np.float64)
    if ref.shape != out.shape:
        raise AssertionError(f"shapes differ: ref {list(ref.shape)} vs out {list(out.shape)}")
    diff = float(np.max(np.abs(ref - out))) if ref.size else 0.0
    np.testing.assert_allclose(
        out,
        ref,
        atol=default_atol if atol is None else atol,
        rtol=default_rtol if rtol is None else rtol,
        err_msg=f"{dtype}: max abs diff {diff:.3g}",
    )


def run_onnx(proto: Any, x: np.ndarray) -> np.ndarray:
    """The first output of an in-memory ONNX model on ``x`` (input "window"), one ORT thread."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(
        proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return session.run(None, {"window": x})[0]


def recurrent_module(
    cls: type, features: int, hidden: int, layers: int, targets: Any, residual: bool, *, length=10
) -> torch.nn.Module:
    """A ``cls`` (LSTM/GRU) ``forecaster`` of ``layers`` layers of ``hidden`` units."""
    return forecaster(
        cls, features, targets, length, hidden=hidden, layers=layers, residual=residual
    )


def forecaster(
    cls: type, features: int, targets: Any, length: int, **hparams: Any
) -> torch.nn.Module:
    """A ``cls`` forecaster over ``length`` steps, horizon 4, seeded 0, in eval mode; it forecasts
    ``targets`` (feature indices) or, when None, every feature; ``hparams`` go to ``cls``."""
    torch.manual_seed(0)
    n_targets = len(targets) if targets else features
    return cls(features, n_targets, length, 4, target_index=targets, **hparams).eval()


def int4_sensitivity(all_int4: Any, float_mae: list[float], layer_mae: dict[str, Any]) -> Any:
    """A planted x86-64-avx2 int4 ``Sensitivity`` (val split) over the layers of the all-int4
    measurement ``all_int4``, with the given float and per-layer MAE."""
    from edgecomp.analyze import Sensitivity

    return Sensitivity(
        target="x86-64-avx2",
        precision="int4",
        split="val",
        layers=all_int4.op_types,
        float_mae=float_mae,
        layer_mae=layer_mae,
        quantizable=list(all_int4.precisions),
        all_mae=all_int4.mae,
    )
