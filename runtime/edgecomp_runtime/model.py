"""load() and Model: raw sensor windows in, forecasts in raw units out."""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

import numpy as np

from edgecomp_runtime.artifact import read_artifact
from edgecomp_runtime.calendar import add_future, sensor_features
from edgecomp_runtime.engines import Engine, choose_engine, engine_input, route_batches
from edgecomp_runtime.errors import (
    ArtifactError,
    InputDtypeError,
    InputError,
    InputShapeError,
    ModelOutputError,
)
from edgecomp_runtime.layout import flatten_nodes, lead_count
from edgecomp_runtime.opcheck import check_onnx, check_tflite
from edgecomp_runtime.preprocess import impute_window
from edgecomp_runtime.readings import finite
from edgecomp_runtime.step import stream_files, stream_section
from edgecomp_runtime.stream import Stream
from edgecomp_runtime.tabular import as_numeric
from edgecomp_runtime.transform import forecast_floor

_REAL_KINDS = "fiu"  # float, signed and unsigned integer dtypes
_CHUNK_ELEMENTS = 1 << 20  # predict converts, imputes and runs at most this many values at once
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_FAST_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))  # predict's fast path takes these
_SLOT_BATCH = 64  # batches up to this size keep per-thread buffers (and an engine binding)
_SLOTS = 4  # batch sizes one thread keeps buffers for
_COPY_BYTES = 1 << 16  # run_scaled copies a float32 batch into the bound buffer up to this size
# backends whose model file is ONNX, checked at load
_ONNX_BACKENDS = ("onnx", "tensorrt", "openvino")


def load(
    path: str | Path,
    *,
    threads: int | None = None,
    engine: str | None = None,
    trusted_keys: Any = None,
    range_factor: float | None = 4.0,
) -> Model:
    """Load and verify an artifact, ready to predict.

    Args:
        path: A ``.edgepkg`` file or an unpacked artifact folder.
        threads: Intra-op threads of the engine; None means 1.
        engine: Key of ``ENGINES`` to use instead of the build's choice (see
            ``engines.choose_engine``: ``recipe.lowering.engine``, else ``target.backend``);
            it then runs every batch (no ``recipe.lowering.batch_routing``).
        trusted_keys: None, or ed25519 public keys (paths, PEM or raw bytes, key objects): the
            artifact must then be signed by one of them (see read_artifact).
        range_factor: For a model whose input is quantized (int8), ``predict`` refuses scaled
            values more than this many times the calibrated range's half-width from its center
            (InputError) instead of saturating silently; None turns the check off.

    Returns:
        The Model.

    Raises:
        ArtifactError: The artifact is unreadable, corrupt or malformed (see read_artifact), or
            its ONNX model's inputs, outputs or operators differ from what the manifest and the
            backend allow (see ``edgecomp_runtime.opcheck``).
        SignatureError: ``trusted_keys`` given and the artifact is unsigned, signed by another
            key, or altered after signing.
        EngineUnavailableError: No engine for the backend, or its package is not installed.
        ValueError: ``threads`` is not a positive integer, or ``trusted_keys`` is malformed.
    """
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
    ):
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
    if range_factor is not None and not (_is_number(range_factor) and range_factor >= 1):
        raise ValueError(f"range_factor must be a number >= 1 or None, got {range_factor!r}")
    manifest, files = read_artifact(path, trusted_keys=trusted_keys)
    backend, engine_type = choose_engine(manifest, engine)
    input_range = _check_model_file(files[manifest["model_file"]], manifest, backend)
    runner = engine_type(engine_input(backend, manifest, files), manifest, threads=threads)
    # large batches on the engine the build measured faster there (recipe.lowering.batch_routing)
    runner = route_batches(
        runner, backend, files[manifest["model_file"]], manifest, threads=threads, requested=engine
    )
    section = stream_section(manifest, source=str(path))
    extra = {name: files[name] for name in stream_files(section)}
    model = Model(manifest, runner, backend=backend, threads=threads, files=extra)
    model._input_range, model.range_factor = input_range, range_factor
    return model


def _check_model_file(data: bytes, manifest: dict[str, Any], backend: str) -> Any:
    """The checks of ``opcheck`` (before any engine parses the file); the input range."""
    if backend in _ONNX_BACKENDS and manifest["model_file"].endswith(".onnx"):
        return check_onnx(data, manifest, backend)
    if backend == "tflite":
        check_tflite(data, manifest)
    entry = manifest["io"]["inputs"][0]  # int8 I/O (LiteRT): the manifest carries the range
    if entry["dtype"] in ("int8", "uint8") and "scale" in entry:
        low, high = (-128, 127) if entry["dtype"] == "int8" else (0, 255)
        offset = entry.get("zero_point", 0)
        return ((low - offset) * entry["scale"], (high - offset) * entry["scale"])
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value < math.inf


class Model:
    """A loaded artifact.

    ``predict`` may be called from several threads at once: the only state it keeps between
    calls is per thread (a float32 input buffer and the engine's binding of it, for up to
    ``_SLOTS`` batch sizes of at most ``_SLOT_BATCH`` windows); forecasts are new arrays.

    Attributes:
        manifest: The artifact's manifest.
        spec: The ModelSpec dict (``manifest["spec"]``).
        input_len: Window length L.
        horizon: Forecast steps H.
        features: The F input columns, in order.
        targets: The F_out forecast columns, in order.
        backend: The engine's backend key, e.g. "onnx".
        precision: The artifact's precision, e.g. "int8".
        threads: The engine's intra-op threads (None: 1); step models of streams use as many.
    """

    def __init__(
        self,
        manifest: dict[str, Any],
        engine: Engine,
        *,
        backend: str,
        threads: int | None = None,
        files: dict[str, bytes] | None = None,
    ) -> None:
        spec = manifest["spec"]
        self.threads = threads
        self._files = dict(files or {})
        self.manifest = manifest
        self.spec = spec
        self.input_len: int = spec["input_len"]
        self.horizon: int = spec["horizon"]
        self.features: list[str] = list(spec["features"])
        self.targets: list[str] = list(spec["targets"])
        self.backend = backend
        self.precision: str = manifest["precision"]
        self._engine = engine
        self._input_range: tuple[float, float] | None = None  # set by load() from the model
        self.range_factor: float | None = None
        self._policy = dict(spec["imputation"])
        mean = np.array(spec["scaler"]["mean"], dtype=np.float64)
        std = np.array(spec["scaler"]["std"], dtype=np.float64)
        index = [self.features.index(name) for name in self.targets]
        # per input dtype: (mean, 1 / std); float32 windows are scaled in float32, others in float64
        self._scalers = {
            dt: (_frozen(mean, dt), _frozen(1.0 / std, dt)) for dt in (np.float32, np.float64)
        }
        self._out_mean = _frozen(mean[index], np.float32)
        self._out_std = _frozen(std[index], np.float32)
        self._floor = forecast_floor(spec)  # checked once here, not on every forecast
        self._sensor = sensor_features(spec)
        self._out_shape = (self.horizon, len(self.targets))
        self._in_shape = (self.input_len, len(self.features))
        self._floor32 = None if self._floor is None else _frozen(self._floor, np.float32)
        # unscaling of a whole forecast [H * F_out] at once: no broadcasting over H
        floor = None if self._floor is None else np.tile(self._floor, self.horizon)
        self._flat = tuple(
            None if v is None else _frozen(v, np.float32)
            for v in (np.tile(std[index], self.horizon), np.tile(mean[index], self.horizon), floor)
        )
        # predict's fast path: plain float windows [L, F] / [B, L, F] (no layout, no lead channels)
        self._plain = not spec.get("layout") and not spec.get("future")
        self._window_size = self.input_len * len(self.features)
        self._local = threading.local()  # per thread: buffers and engine bindings per batch size
        self._bounds_key: tuple[Any, Any] | None = None

    @property
    def engine(self) -> Engine:
        """The engine running the model file. Engines that can fall back (tensorrt) say what
        actually ran in ``ran_on`` and why in ``fallback_reason``."""
        return self._engine

    def predict(self, window: Any, *, times: Any = None, future: Any = None) -> np.ndarray:
        """Forecast from raw sensor values.

        Args:
            window: Raw values [L, F] or [B, L, F] (numpy array or nested lists, any real dtype);
                NaN, or a masked value of a numpy masked array, marks a missing reading, filled
                per the artifact's imputation policy. Not modified. Large batches run in chunks
                of about 1 Mi values, so memory stays bounded. Flags (bools, "true"/"false")
                read as 1/0; a DataFrame's feature columns are picked by name.
            times: For a model with calendar inputs (``spec.future``): the window's timestamps,
                [L] or [B, L] (UTC; datetime64, ISO strings or datetimes).
            future: For a model with known-future columns: ``{column: next H values}``, [H] or
                [B, H] each (see ``edgecomp_runtime.calendar``).

        Returns:
            float32 forecasts in raw units: [H, F_out] for a [L, F] window, else [B, H, F_out].

        Raises:
            InputDtypeError: The dtype is not a real number type (bool, complex, str, object...).
            InputShapeError: The shape is not [L, F] or [B, L, F] with B >= 1.
            InputError: The window holds infinities, values beyond float32 once scaled, or (int8
                input) values far outside the calibrated range (``range_factor``).
            MissingValueError: A column misses more values than the policy allows.
            ModelOutputError: The model gave a non-finite forecast for an acceptable window.
        """
        with np.errstate(over="ignore", invalid="ignore"):  # overflow -> inf: refused, no warning
            return self._predict(window, times, future)

    def _predict(self, window: Any, times: Any, future: Any) -> np.ndarray:
        fast = self._fast_input(window)
        if fast and (y := self._fast(window)) is not None:
            return y
        array = _as_real_array(as_numeric(window, self._sensor))
        if not fast and self._fast_input(array) and (y := self._fast(array)) is not None:
            return y  # lists, flags, DataFrames read as float arrays
        spec = self.spec
        if spec.get("layout"):
            array = flatten_nodes(array, spec["layout"], self.input_len, leads=lead_count(spec))
        if spec.get("future"):
            array = add_future(array, spec, times, future)  # known-future inputs
        batched = self._check_shape(array)
        x = array if batched else array[None]
        step = max(1, _CHUNK_ELEMENTS // self._window_size)
        if len(x) <= step:  # one chunk: the engine's output array is returned as it is
            y = self._predict_chunk(x, 0)
            return y if batched else y[0]
        out = np.empty((len(x), self.horizon, len(self.targets)), dtype=np.float32)
        for start in range(0, len(x), step):  # bounded memory for any batch size
            out[start : start + step] = self._predict_chunk(x[start : start + step], start)
        return out if batched else out[0]

    def _fast_input(self, window: Any) -> bool:
        """True for a plain float32 / float64 array (no mask) of a model without layout or lead
        channels: ``_fast`` may take it."""
        return self._plain and type(window) is np.ndarray and window.dtype in _FAST_DTYPES

    def _fast(self, window: np.ndarray) -> np.ndarray | None:
        """``predict`` of a float32 / float64 array in one chunk, with as few numpy passes as it
        takes; None (the general path then decides) for any other shape, or a window that needs
        imputation or a closer look (NaN, infinities, out of range)."""
        batched = window.ndim == 3
        x = window if batched else window[None]
        b = x.shape[0]
        if x.shape[1:] != self._in_shape or not 1 <= b <= _CHUNK_ELEMENTS // self._window_size:
            return None
        z, slot = self._slot(b)
        if x.dtype == np.float32:  # (x - mean) * (1 / std) in float32, as scale_window
            mean, inv_std = self._scalers[np.float32]
            np.subtract(x, mean, out=z)
            np.multiply(z, inv_std, out=z)
        else:  # in float64, rounded to float32 once
            mean, inv_std = self._scalers[np.float64]
            np.multiply(x - mean, inv_std, out=z, casting="same_kind")
        if not self._inside(z):
            return None
        y = self._engine_output(z, slot)
        std, mean, floor = self._flat
        out = np.multiply(y.reshape(b, std.size), std)  # a new array: y may be a reused buffer
        np.add(out, mean, out=out)
        if floor is not None:
            np.maximum(out, floor, out=out)
        if not finite(out):
            self._refuse_output(z)
        out = out.reshape(b, *self._out_shape)
        return out if batched else out[0]

    def _slot(self, b: int) -> tuple[np.ndarray, list[Any] | None]:
        """A float32 input buffer for batch size ``b``: this thread's own, kept with its engine
        binding in a slot ``[buffer, bound run or None]``, up to ``_SLOT_BATCH`` windows; else a
        new one (slot None)."""
        if b > _SLOT_BATCH:
            return np.empty((b, *self._in_shape), dtype=np.float32), None
        slots = getattr(self._local, "slots", None)
        if slots is None:
            slots = self._local.slots = {}
        slot = slots.get(b)
        if slot is None:
            if len(slots) >= _SLOTS:
                slots.clear()
            slot = slots[b] = [np.empty((b, *self._in_shape), dtype=np.float32), None]
        return slot[0], slot

    def _engine_output(self, z: np.ndarray, slot: list[Any] | None) -> np.ndarray:
        """The engine's scaled forecast for ``z``; through the slot's engine binding when the
        engine has one (set up after the first call checked the output shape)."""
        if slot is not None and slot[1] is not None:
            return slot[1]()
        y = self._run(z)
        bind = getattr(self._engine, "bind", None)
        if slot is not None and bind is not None:
            slot[1] = bind(z, y.shape)
        return y

    def _refuse_output(self, z: np.ndarray) -> None:
        raise ModelOutputError(
            f"{self.manifest['model_file']}: the model's forecast is not finite for a finite "
            f"window within float32 range (largest |scaled input| {np.abs(z).max():.3g}); "
            "the model file, not the window, is at fault"
        )

    def _predict_chunk(self, raw: np.ndarray, first: int) -> np.ndarray:
        dtype = np.float32 if raw.dtype.kind == "f" and raw.itemsize <= 4 else np.float64
        if np.ma.isMaskedArray(raw):  # a masked value is a missing reading
            raw = np.ma.filled(raw.astype(dtype), np.nan)
        x = np.asarray(raw, dtype=dtype)
        z = self.scale_window(x)
        if not self._inside(z):  # NaN and infinities fail it too
            if not np.isfinite(x).all():  # the rare path: NaN to impute, or infinities to refuse
                self._refuse_infinities(x, first)
                x = impute_window(x, self._policy, features=self.features, first_row=first)
                z = self.scale_window(x.astype(dtype, copy=False))
            self._check_range(z, first)
        y = self._run(z)
        self.unscale_forecast(y, copy=False)  # the engine's output array is ours
        if not finite(y):
            self._refuse_output(z)
        return y

    def _inside(self, z: np.ndarray) -> bool:
        """Fast check that ``_check_range`` and a NaN check would pass (False: look closer)."""
        low, high = self._bounds()
        if high == _FLOAT32_MAX:  # finite float32 is in range: a finite sum says all are
            return math.isfinite(_sum(z, axis=None))  # (an overflow: look closer)
        return bool(_min(z, axis=None) >= low and _max(z, axis=None) <= high)  # NaN fails

    def _bounds(self) -> tuple[float, float]:
        """The accepted scaled range: float32's, or the int8 input's widened by range_factor."""
        key = (self._input_range, self.range_factor)
        cached = self._bounds_key
        if cached is not None and cached[0] == key:
            return cached[1]
        bounds = self._compute_bounds()
        self._bounds_key = (key, bounds)
        return bounds

    def _compute_bounds(self) -> tuple[float, float]:
        if self._input_range is None or self.range_factor is None:
            return -_FLOAT32_MAX, _FLOAT32_MAX
        center = (self._input_range[0] + self._input_range[1]) / 2
        half = (self._input_range[1] - self._input_range[0]) / 2 * self.range_factor
        return center - half, center + half

    def _check_range(self, z: np.ndarray, first: int) -> None:
        """Refuse scaled inputs beyond float32, or far outside the input quantizer's range."""
        low, high = self._bounds()
        outside = ~((z >= low) & (z <= high))  # also catches inf after scaling
        if not outside.any():
            return
        row, step, col = (int(i) for i in np.argwhere(outside)[0])
        why = (
            "is out of float32 range after scaling"
            if self._input_range is None or self.range_factor is None
            else f"lies more than {self.range_factor:g}x beyond the int8 input's calibrated range "
            f"(scaled {z[row, step, col]:.3g}, range [{self._input_range[0]:.3g}, "
            f"{self._input_range[1]:.3g}]; see load(range_factor=))"
        )
        raise InputError(
            f"window: the value at batch row {first + row}, step {step}, feature "
            f"'{self.features[col]}' {why}"
        )

    def run_scaled(self, x: np.ndarray) -> np.ndarray:
        """Run already-scaled windows [B, L, F]; returns scaled float32 [B, H, F_out].

        No imputation, scaling or NaN checks: this is the bare model, for parity checks.
        """
        array = _as_real_array(x)
        if array.ndim != 3:
            raise InputShapeError(
                f"run_scaled: expected [batch, {self.input_len}, {len(self.features)}], "
                f"got {list(array.shape)}"
            )
        self._check_shape(array)
        ready = array.dtype == np.float32 and array.flags.c_contiguous
        if len(array) > _SLOT_BATCH or (ready and array.nbytes > _COPY_BYTES):
            return self._run(np.ascontiguousarray(array, dtype=np.float32))  # no copy when ready
        z, slot = self._slot(len(array))  # the engine binding predict uses, when it has one
        np.copyto(z, array, casting="unsafe")  # as astype(float32)
        return self._engine_output(z, slot).copy()  # the caller's: not the reused output buffer

    def stream(
        self,
        *,
        every: int = 1,
        mode: str = "auto",
        period_s: float | None = None,
        resume: str | Path | None = None,
        max_ahead_s: float | None = None,
    ) -> Stream:
        """Start (or resume) a stream: push one reading at a time, get forecasts as they come.

        A model with known-future inputs (``spec.future``) streams too: the stream builds its
        calendar channels from the slot times, and declared columns come with each reading
        (``push(t, values, future={column: next H values})``; such a model streams windowed).

        Args:
            every: Emit a forecast after every ``every``-th new sampling slot.
            mode: ``"auto"`` (the step model when the manifest allows it, else windowed),
                ``"incremental"`` (the step model, or StreamError) or ``"windowed"`` (``predict``
                on the window for each forecast).
            period_s: Sampling period in seconds; defaults to the artifact's ``spec.period_s``.
            resume: A state file written by ``Stream.save``: continue from it.
            max_ahead_s: Refuse readings more than this many seconds ahead of the gateway's
                clock (None: twice the period, at least 300 s; ``math.inf``: no check).

        Returns:
            The Stream (see ``edgecomp_runtime.stream``).

        Raises:
            StreamError: Bad arguments, no step model for ``mode="incremental"`` (or a model
                with declared known-future columns), no sampling period, or a state file saved
                for another artifact.
            StateFileError: ``resume`` is missing or not a readable state file.
        """
        stream = Stream(self, every=every, mode=mode, period_s=period_s, max_ahead_s=max_ahead_s)
        if resume is not None:
            stream._restore(resume)
        return stream

    def file(self, name: str) -> bytes:
        """The bytes of an extra artifact file kept at load (the step model)."""
        if name not in self._files:
            raise ArtifactError(f"file '{name}' was not kept from the artifact")
        return self._files[name]

    def scale_window(self, window: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
        """Scale raw values [..., F] as ``predict`` does: ``(x - mean) / std`` in float32 for a
        float32 window, else in float64, rounded to float32.

        Args:
            window: Raw values (float32 or float64).
            out: A float32 array of the window's shape to write into (else a new one).

        Returns:
            The scaled float32 values (``out`` when given).
        """
        mean, inv_std = self._scalers[np.float32 if window.dtype == np.float32 else np.float64]
        with np.errstate(over="ignore", invalid="ignore"):  # beyond float32: inf, refused later
            scaled = window - mean
            scaled *= inv_std
            if out is None:
                return scaled.astype(np.float32, copy=False)
            out[...] = scaled
        return out

    def unscale_forecast(self, y: np.ndarray, *, copy: bool = True) -> np.ndarray:
        """Scaled float32 forecasts [..., F_out] -> raw units, as ``predict`` does (in place
        when ``copy`` is False)."""
        if copy:
            y = y.astype(np.float32)
        std, mean, floor = self._flat
        if y.shape[-2:] == self._out_shape and y.flags.c_contiguous:
            flat = y.reshape(-1, std.size)  # a view
        else:
            flat, std, mean, floor = y, self._out_std, self._out_mean, self._floor32
        flat *= std
        flat += mean
        if floor is not None:  # counts stay >= 0 (spec.output_floor)
            np.maximum(flat, floor, out=flat)
        return y

    def info(self) -> dict[str, Any]:
        """A short JSON-ready summary: target, precision, shapes, features, files and sizes."""
        files = {entry["name"]: entry["size"] for entry in self.manifest["files"]}
        return {
            "format_version": self.manifest["format_version"],
            "target": self.manifest["target"]["name"],
            "backend": self.backend,
            "precision": self.precision,
            "input_len": self.input_len,
            "horizon": self.horizon,
            "features": self.features,
            "targets": self.targets,
            "model_file": self.manifest["model_file"],
            "files": files,
            "size_bytes": sum(files.values()),
            "producer": self.manifest["producer"],
        }

    def __repr__(self) -> str:
        return (
            f"Model(target={self.manifest['target']['name']!r}, precision={self.precision!r}, "
            f"L={self.input_len}, H={self.horizon}, F={len(self.features)}, "
            f"F_out={len(self.targets)})"
        )

    def _check_shape(self, array: np.ndarray) -> bool:
        """True for [B, L, F], False for [L, F]; InputShapeError for anything else."""
        expected = (self.input_len, len(self.features))
        if array.shape == expected:
            return False
        if array.ndim == 3 and array.shape[1:] == expected and array.shape[0] >= 1:
            return True
        raise InputShapeError(
            f"window: expected shape [{expected[0]}, {expected[1]}] or "
            f"[batch, {expected[0]}, {expected[1]}] (L={expected[0]} steps, "
            f"F={expected[1]} features), got {list(array.shape)}"
        )

    def _refuse_infinities(self, x: np.ndarray, first: int = 0) -> None:
        infinite = np.isinf(x)
        if infinite.any():
            row, step, col = (int(i) for i in np.argwhere(infinite)[0])
            raise InputError(
                f"window: infinite value at batch row {first + row}, step {step}, feature "
                f"'{self.features[col]}' (column {col}); use NaN for a missing reading"
            )

    def _run(self, x: np.ndarray) -> np.ndarray:
        y = self._engine.run(x)
        expected = (x.shape[0], self.horizon, len(self.targets))
        if y.shape != expected:
            raise ArtifactError(
                f"{self.manifest['model_file']}: the model returned shape {list(y.shape)}, "
                f"the manifest promises {list(expected)}"
            )
        return y


_sum, _min, _max = np.add.reduce, np.minimum.reduce, np.maximum.reduce


def _as_real_array(window: Any) -> np.ndarray:
    if isinstance(window, np.ndarray):
        array = window
    else:
        try:
            array = np.asarray(window)
        except (ValueError, TypeError) as exc:
            raise InputShapeError(f"window: not a rectangular array ({exc})") from None
    if array.dtype.kind not in _REAL_KINDS:
        raise InputDtypeError(
            f"window: dtype {array.dtype} is not a real number type; pass floats or integers "
            "(NaN marks a missing reading)"
        )
    return array


def _frozen(values: Any, dtype: type = np.float64) -> np.ndarray:
    array = np.array(values, dtype=dtype)
    array.flags.writeable = False
    return array
