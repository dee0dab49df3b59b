"""A native kernel for stacked LSTM / GRU forecasters with a Linear head (fp32 or int8 per layer).

``pack`` writes the ``.native`` file (format.py, FORMAT.md), ``describe`` reads its validated
header, ``Kernel`` runs it on the compiled C kernel (kernel.c, built at install where a C compiler
is present; ``available()`` says whether it was), and ``reference.run`` is the same math in numpy.

int8 maps use symmetric per-output-row int8 weights and quantize their input per row (per window
and step) at run time, the scheme of ONNX Runtime's dynamic quantization; the kernel multiplies
on AVX512-VNNI where the CPU has it, else on AVX2 (x86-64 without VNNI), else in plain C
(``host_isa``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import numpy as np

from edgecomp_runtime.native.format import LIMITS, NativeModel, describe, pack, parse

__all__ = [
    "Kernel",
    "Stepper",
    "available",
    "describe",
    "host_isa",
    "pack",
    "parse",
    "unavailable_reason",
]

_NB = 64  # the kernel's column block (kernel.c NB)
# one kernel call's windows: its two sequence buffers (kernel.c scratch_alloc, windows * input_len
# * widest layer floats each) stay within the per-window limit's 64 MiB; kernel.c takes <= 1e6
_SCRATCH_FLOATS = LIMITS["sequence"]
_MAX_WINDOWS = 1_000_000
_FORCE = {None: 0, "portable": 1, "avx2": 2}  # Kernel(isa=...) -> kernel.c model_new's force


def _load() -> tuple[Any, str | None]:
    try:
        return importlib.import_module("edgecomp_runtime.native._kernel"), None
    except ImportError as exc:
        return None, (
            f"the native kernel was not built ({exc}): it is compiled when edgecomp-runtime is "
            "installed where a C compiler is; install one (gcc) and reinstall: pip install "
            "--no-cache-dir --force-reinstall --no-deps edgecomp-runtime"
        )


_KERNEL, _WHY = _load()


def available() -> bool:
    """Whether the compiled kernel loaded on this host."""
    return _KERNEL is not None


def unavailable_reason() -> str | None:
    """Why the kernel is not available (None when it is)."""
    return _WHY


def host_isa() -> str:
    """The fastest int8 path of this CPU: "avx512-vnni", "avx2" or "portable" (plain C: int8 maps
    as integer math in float32, slower than ONNX Runtime's int8 LSTM; also without the kernel)."""
    return "portable" if _KERNEL is None else str(_KERNEL.host_isa())


class Kernel:
    """A ``.native`` file prepared for the compiled kernel; ``run`` is thread-safe.

    Raises:
        ArtifactError: The file is malformed (the message names ``name`` and the field).
        RuntimeError: The compiled kernel is not available (``unavailable_reason()``).
    """

    def __init__(
        self,
        data: bytes,
        name: str = "model.native",
        *,
        portable: bool = False,
        isa: str | None = None,
    ) -> None:
        if _KERNEL is None:
            raise RuntimeError(_WHY)
        if isa not in _FORCE:
            raise ValueError(f"isa must be None, 'avx2' or 'portable', got {isa!r}")
        self.model = parse(data, name)
        self.name = name
        # for tests: portable / isa="portable" runs the plain C loops only (as on aarch64),
        # isa="avx2" no AVX-512 (as on AVX2-only x86-64: int8 on AVX2 where the CPU has it)
        force = _FORCE["portable" if portable else isa]
        self._capsule = _KERNEL.prepare(*_kernel_arrays(self.model), force)
        self._outputs = self.model.horizon * self.model.n_targets
        widest = max(self.model.n_features, *(layer.hidden for layer in self.model.layers))
        per_window = self.model.input_len * widest
        self._step = max(1, min(_MAX_WINDOWS, _SCRATCH_FLOATS // per_window))

    @property
    def vnni(self) -> bool:
        """Whether int8 maps run on AVX512-VNNI."""
        return bool(_KERNEL.vnni(self._capsule))

    @property
    def isa(self) -> str:
        """The int8 maps' path: "avx512-vnni", "avx2" or "portable" (plain C)."""
        return str(_KERNEL.isa(self._capsule))

    def run(self, x: np.ndarray) -> np.ndarray:
        """Scaled float32 windows [B, L, F] -> float32 [B, horizon, n_targets]."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        model = self.model
        if x.ndim != 3 or x.shape[1:] != (model.input_len, model.n_features) or not len(x):
            raise ValueError(
                f"{self.name}: windows must be [batch, {model.input_len}, {model.n_features}], "
                f"got {list(x.shape)}"
            )
        y = np.empty((len(x), model.horizon, model.n_targets), np.float32)
        _run_steps(_KERNEL.run, self._capsule, x, y, self._step)
        return y

    def bind(self, x: np.ndarray, out_shape: tuple[int, ...]) -> Callable[[], np.ndarray]:
        """A call that runs what the float32 C-contiguous ``x`` [B, L, F] holds into one output
        array of ``out_shape`` and returns it (overwritten by the next call)."""
        model = self.model
        shape = (model.input_len, model.n_features)
        if (
            not isinstance(x, np.ndarray)
            or x.dtype != np.float32
            or not x.flags.c_contiguous
            or x.ndim != 3
            or x.shape[1:] != shape
            or not len(x)
            or tuple(out_shape) != (len(x), model.horizon, model.n_targets)
        ):
            raise ValueError(
                f"{self.name}: bind needs float32 C-order windows [batch, {shape[0]}, {shape[1]}]"
                f" and an output [batch, {model.horizon}, {model.n_targets}]"
            )
        y = np.empty(out_shape, np.float32)
        run, capsule, step = _KERNEL.run, self._capsule, self._step
        if len(x) > step:  # rare: windows whose scratch would exceed _SCRATCH_FLOATS at once
            return lambda: _run_steps(run, capsule, x, y, step)

        def call() -> np.ndarray:
            run(capsule, x, y)
            return y

        return call

    def stepper(self) -> Stepper:
        """A stream's step on this model: its own zero state; see ``Stepper``."""
        return Stepper(self)


class Stepper:
    """One stream's recurrent state on a prepared ``Kernel``: ``step`` feeds one scaled reading
    and returns the scaled forecast, the windowed run's math for one step (int8 maps quantize the
    reading and each h per step). The state is every layer's h, then (LSTM) every layer's c.

    Not thread-safe (one per stream); steppers of one ``Kernel`` may run in several threads.
    """

    def __init__(self, kernel: Kernel) -> None:
        model = kernel.model
        self.name = kernel.name
        self.state_size = sum(layer.hidden for layer in model.layers) * (
            1 if model.cell == "gru" else 2
        )
        self._shape = (model.horizon, model.n_targets)
        self._features = model.n_features
        self._capsule = kernel._capsule
        self._state = np.zeros(self.state_size, np.float32)

    def packed(self) -> np.ndarray:
        """A copy of the state as [1, S]."""
        return self._state[None].copy()

    def unpack(self, state: np.ndarray) -> None:
        """Set the state from [1, S] (as ``packed`` gives it)."""
        flat = np.asarray(state, dtype=np.float32).reshape(-1)
        if flat.size != self.state_size:
            raise ValueError(
                f"{self.name}: a state of {flat.size} values, expected {self.state_size}"
            )
        self._state[...] = flat

    def step(self, reading: np.ndarray) -> np.ndarray:
        """One scaled reading [F] -> the scaled forecast [horizon, n_targets] (a new array); the
        state advances."""
        x = reading  # the stream's own float32 row: as it is (the kernel checks its size)
        if type(x) is not np.ndarray or x.dtype != np.float32 or not x.flags.c_contiguous:
            x = np.ascontiguousarray(reading, dtype=np.float32).reshape(-1)
        if x.size != self._features:
            raise ValueError(
                f"{self.name}: a reading of {x.size} values, expected {self._features}"
            )
        y = np.empty(self._shape, np.float32)
        _KERNEL.step(self._capsule, x, self._state, y)
        return y

    def raw_step(
        self, scaler: tuple[np.ndarray, np.ndarray], unscaler: tuple[np.ndarray, ...]
    ) -> Callable[[np.ndarray], tuple[np.ndarray, bool]]:
        """``step`` from a raw reading to a raw forecast in one kernel call: a function of one
        C-contiguous float64 reading [F] that returns (forecast [horizon, n_targets] in raw
        units, a new array; whether it is all finite). It scales as ``predict`` scales a float64
        window (``scaler``: mean, 1 / std, float64 [F]) and unscales as it does (``unscaler``:
        std, mean and floor or None, float32 [horizon * n_targets])."""
        sc64 = np.ascontiguousarray(np.concatenate(scaler), dtype=np.float64)
        std, mean, floor = unscaler
        has_floor = floor is not None
        parts = (std, mean, floor if has_floor else np.zeros_like(std))
        sc32 = np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)
        if sc64.size != 2 * self._features or sc32.size != 3 * int(np.prod(self._shape)):
            raise ValueError(f"{self.name}: scaler or unscaler of the wrong size")
        step_raw, capsule, state, shape = _KERNEL.step_raw, self._capsule, self._state, self._shape

        def call(row: np.ndarray) -> tuple[np.ndarray, bool]:
            y = np.empty(shape, np.float32)
            return y, step_raw(capsule, row, sc64, sc32, has_floor, state, y)

        return call


def _run_steps(run: Any, capsule: Any, x: np.ndarray, y: np.ndarray, step: int) -> np.ndarray:
    """Run the C-contiguous ``x`` into ``y``, at most ``step`` windows per kernel call."""
    if len(x) <= step:
        run(capsule, x, y)
        return y
    for start in range(0, len(x), step):
        run(capsule, x[start : start + step], y[start : start + step])
    return y


def _kernel_arrays(model: NativeModel) -> tuple[tuple[int, ...], tuple[np.ndarray, ...]]:
    """The kernel's meta ints and arrays, in kernel.c's layouts (see its header comment)."""
    meta = [
        int(model.cell == "gru"), model.input_len, model.n_features, len(model.layers),
        model.horizon, model.n_targets, int(model.residual), int(model.head.precision == "int8"),
    ]  # fmt: skip
    arrays: list[np.ndarray] = []
    for layer in model.layers:
        meta += [layer.hidden, int(layer.hh.precision == "int8"), int(layer.ih.precision == "int8")]
        arrays += _linear(layer.ih) + _linear(layer.hh)
    arrays += _linear(model.head)
    arrays.append(np.asarray(model.target_index, np.int32))
    return tuple(meta), tuple(arrays)


def _linear(linear) -> list[np.ndarray]:
    n, k = linear.weight.shape
    np_ = -(-n // _NB) * _NB
    bias = _pad(linear.bias, np_)
    if linear.precision == "fp32":
        w = np.zeros((np_, k), np.float32)
        w[:n] = linear.weight
        # [Np/64][K][64]
        return [np.ascontiguousarray(w.reshape(np_ // _NB, _NB, k).transpose(0, 2, 1)), bias]
    kp = -(-k // 4) * 4
    q = np.zeros((np_, kp), np.int8)
    q[:n, :k] = linear.weight
    # [Np/64][Kp/4][64][4]
    packed = np.ascontiguousarray(q.reshape(np_ // _NB, _NB, kp // 4, 4).transpose(0, 2, 1, 3))
    comp = (128 * q.astype(np.int32).sum(axis=1)).astype(np.int32)
    return [packed, _pad(linear.scale, np_), comp, bias]


def _pad(values: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros(size, np.float32)
    out[: len(values)] = values
    return out
