"""load() and Model: raw sensor windows in, forecasts in raw units out."""

from __future__ import annotations

import math
import threading
import warnings
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
_SLOT_BATCH = 64  # batches up to this size keep per-thread buffers (and an engine binding)
_SLOTS = 4  # window shapes one thread keeps buffers for
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
    backend, engine_type = choose_engine(manifest, engine, files)
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
    """The checks of ``opcheck`` (before any engine parses the file); the input range.

    An ONNX model file is checked whichever engine runs it: an engine with a file of its own
    (the native kernel) keeps the ONNX file as its recorded fallback, checked as the target's.
    """
    if manifest["model_file"].endswith(".onnx"):
        kind = backend if backend in _ONNX_BACKENDS else manifest["target"]["backend"]
        if kind in _ONNX_BACKENDS:
            return check_onnx(data, manifest, kind)
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
    ``_SLOTS`` window shapes of at most ``_SLOT_BATCH`` windows); forecasts are new arrays.

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
        self._set_range(None, None)  # load() sets the int8 input's range and range_factor
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
        # predict's fast path: plain float windows [L, F] / [B, L, F] (no layout, no lead channels),
        # scaled and unscaled by the same values tiled to [L, F] and [1, L, F] (mean, 1 / std per
        # input dtype) and [1, H, F_out]: a numpy pass over operands of one shape skips the
        # broadcasting machinery (half the cost of a pass at batch 1), a larger batch broadcasts
        # over its first axis only
        self._plain = not spec.get("layout") and not spec.get("future")
        self._tiled = {
            np.dtype(dt): tuple(
                _frozen(np.tile(v, (*lead, self.input_len, 1)), dt)
                for lead in ((), (1,))
                for v in pair
            )
            for dt, pair in self._scalers.items()
        }
        self._out_tiled = tuple(
            None if v is None else v.reshape(1, *self._out_shape) for v in self._flat
        )
        self._local = threading.local()  # per thread: buffers and engine bindings per shape

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
        if self._plain and type(window) is np.ndarray and (y := self._fast(window)) is not None:
            return y
        with np.errstate(over="ignore", invalid="ignore"):  # overflow -> inf: refused, no warning
            return self._predict(window, times, future)

    def _predict(self, window: Any, times: Any, future: Any) -> np.ndarray:
        array = _as_real_array(as_numeric(window, self._sensor))
        fast = self._plain and array is not window and type(array) is np.ndarray
        if fast and (y := self._fast(array)) is not None:
            return y  # lists, flags, DataFrames read as float arrays
        spec = self.spec
        if spec.get("layout"):
            array = flatten_nodes(array, spec["layout"], self.input_len, leads=lead_count(spec))
        if spec.get("future"):
            array = add_future(array, spec, times, future)  # known-future inputs
        batched = self._check_shape(array)
        x = array if batched else array[None]
        step = max(1, _CHUNK_ELEMENTS // (self.input_len * len(self.features)))
        if len(x) <= step:  # one chunk: the engine's output array is returned as it is
            y = self._predict_chunk(x, 0)
            return y if batched else y[0]
        out = np.empty((len(x), self.horizon, len(self.targets)), dtype=np.float32)
        for start in range(0, len(x), step):  # bounded memory for any batch size
            out[start : start + step] = self._predict_chunk(x[start : start + step], start)
        return out if batched else out[0]

    def _fast(self, window: np.ndarray) -> np.ndarray | None:
        """``predict`` of a float32 / float64 array [L, F] or [B, L, F] in one chunk, in as few
        numpy calls as it takes; None (the general path then decides) for any other dtype or
        shape, or a window that needs imputation or a closer look (NaN, infinities, out of range).
        """
        scaler = self._tiled.get(window.dtype)
        if scaler is None or window.size > _CHUNK_ELEMENTS:
            return None
        slots = getattr(self._local, "slots", None)  # this thread's, by window shape
        slot = slots.get(window.shape) if slots is not None else None
        if slot is None and (slot := self._slot(window.shape)) is None:
            return None
        if _ERRORS is None:  # no context variable to set (numpy 1.x): the public way
            with np.errstate(over="ignore", invalid="ignore"):
                return self._scaled_run(window, scaler, slot)
        token = _ERRORS.set(_QUIET)  # np.errstate(all="ignore"): overflow -> inf, refused below
        try:
            return self._scaled_run(window, scaler, slot)
        finally:
            _ERRORS.reset(token)

    def _scaled_run(
        self, window: np.ndarray, scaler: tuple[np.ndarray, ...], slot: list[Any]
    ) -> np.ndarray | None:
        """Scale ``window`` into the slot's buffer, check it, run the engine, unscale: ``_fast``."""
        view, z, run, flat = slot
        mean, inv_std = scaler[2:] if view is z else scaler[:2]  # the window's shape
        if mean.dtype is _F32:  # (x - mean) * (1 / std) in float32, as scale_window
            np.subtract(window, mean, view)
            np.multiply(view, inv_std, view)
        else:  # in float64, rounded to float32 once
            np.multiply(window - mean, inv_std, view, casting="same_kind")
        low, high = self._limits  # float32's, or the int8 input's: NaN fails either
        if flat.size <= _ARG_SIZE:  # argmin / argmax: a NaN is both, and they cost less here
            inside = flat.item(flat.argmin()) >= low and flat.item(flat.argmax()) <= high
        else:
            inside = _min(flat) >= low and _max(flat) <= high
        if not inside:  # NaN to impute, infinities or values out of range: look closer
            return None
        std, mean, floor = self._out_tiled
        out = np.multiply(run() if run is not None else self._engine_output(slot), std)  # new
        np.add(out, mean, out)
        if floor is not None:
            np.maximum(out, floor, out=out)
        if not (_seems_finite(out) or np.isfinite(out).all()):
            self._refuse_output(z)
        return out if view is z else out[0]

    def _slot(self, shape: tuple[int, ...]) -> list[Any] | None:
        """This thread's slot for windows of ``shape`` [L, F] or [B, L, F]: ``[the window's view
        of the buffer, a float32 buffer [B, L, F], the engine's binding of it or None, the buffer
        flat]``, kept for up to ``_SLOT_BATCH`` windows, else new each call; None for any other
        shape."""
        slots = getattr(self._local, "slots", None)
        if slots is None:
            slots = self._local.slots = {}
        slot = slots.get(shape)
        if slot is not None:
            return slot
        batched = len(shape) == 3 and shape[1:] == self._in_shape and shape[0] >= 1
        if not batched and shape != self._in_shape:
            return None
        z = np.empty((shape[0] if batched else 1, *self._in_shape), dtype=np.float32)
        slot = [z if batched else z[0], z, None, z.reshape(-1)]
        if len(z) <= _SLOT_BATCH:
            if len(slots) >= _SLOTS:
                slots.clear()
            slots[shape] = slot
        return slot

    def _engine_output(self, slot: list[Any]) -> np.ndarray:
        """The engine's scaled forecast for the slot's buffer; through the slot's engine binding
        when the engine has one (set up after the first call checked the output shape)."""
        if slot[2] is not None:
            return slot[2]()
        z = slot[1]
        y = self._run(z)
        bind = getattr(self._engine, "bind", None)
        if bind is not None and len(z) <= _SLOT_BATCH:
            slot[2] = bind(z, y.shape)
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
        low, high = self._limits
        if high == _FLOAT32_MAX:  # finite float32 is in range: a finite sum says all are
            return math.isfinite(_sum(z, axis=None))  # (an overflow: look closer)
        return bool(_min(z, axis=None) >= low and _max(z, axis=None) <= high)  # NaN fails

    @property
    def range_factor(self) -> float | None:
        """For a model whose input is quantized (int8): ``predict`` refuses scaled values more
        than this many times the calibrated range's half-width from its center (InputError);
        None turns the check off. Set by ``load(range_factor=)``; a change applies to the next
        call."""
        return self._range[1]

    @range_factor.setter
    def range_factor(self, value: float | None) -> None:
        self._set_range(self._range[0], value)

    @property
    def _input_range(self) -> tuple[float, float] | None:
        """The int8 input quantizer's calibrated range of scaled values (set by load), or None."""
        return self._range[0]

    @_input_range.setter
    def _input_range(self, value: tuple[float, float] | None) -> None:
        self._set_range(value, self._range[1])

    def _set_range(self, input_range: tuple[float, float] | None, factor: float | None) -> None:
        """Keep the accepted scaled range (``_limits``, one attribute: threads read it whole):
        float32's, or the int8 input's widened by ``range_factor``."""
        self._range = (input_range, factor)
        if input_range is None or factor is None:
            self._limits = (-_FLOAT32_MAX, _FLOAT32_MAX)
        else:
            center = (input_range[0] + input_range[1]) / 2
            half = (input_range[1] - input_range[0]) / 2 * factor
            self._limits = (center - half, center + half)

    def _check_range(self, z: np.ndarray, first: int) -> None:
        """Refuse scaled inputs beyond float32, or far outside the input quantizer's range."""
        low, high = self._limits
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
        slot = self._slot(array.shape)  # the engine binding predict uses, when it has one
        np.copyto(slot[1], array, casting="unsafe")  # as astype(float32)
        return self._engine_output(slot).copy()  # the caller's: not the reused output buffer

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
_F32 = np.dtype(np.float32)
_DOT_SIZE = 4096  # _seems_finite's BLAS dot takes up to this many values (one thread below 10k)
_ARG_SIZE = 1 << 15  # up to this many values, argmin + argmax check a range faster than min + max


def _seems_finite(a: np.ndarray) -> bool:
    """True when every value of the contiguous float32 array ``a`` is finite: a finite sum of
    squares (one BLAS dot, the cheapest pass for small arrays; NaN and infinities carry through)
    or, for larger ones, a minimum and a maximum within float32's range. False can also mean
    that the sum of squares overflowed: the caller then checks every value."""
    if a.size <= _DOT_SIZE:
        return math.isfinite(np.vdot(a, a))
    return bool(_min(a, None) >= -_FLOAT32_MAX and _max(a, None) <= _FLOAT32_MAX)


def _error_state() -> tuple[Any, Any]:
    """numpy's context variable holding its floating-point error state, and a value of it that
    ignores every error as ``np.errstate(all="ignore")`` does: setting it costs about a third of
    entering an errstate. (None, None) where numpy has no such variable (1.x) or its value does
    not silence an overflow: predict then enters ``np.errstate``."""
    try:  # numpy's private API (2.x); anything unexpected means the public way
        from numpy._core._ufunc_config import _extobj_contextvar, _make_extobj

        quiet = _make_extobj(all="ignore")
        token = _extobj_contextvar.set(quiet)
    except (ImportError, AttributeError, TypeError, ValueError):
        return None, None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            big = np.full(2, _FLOAT32_MAX, dtype=np.float32)
            silent = bool(np.isinf(np.multiply(big, big)).all())
    except (RuntimeWarning, FloatingPointError):
        silent = False
    finally:
        _extobj_contextvar.reset(token)
    return (_extobj_contextvar, quiet) if silent else (None, None)


_ERRORS, _QUIET = _error_state()


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
