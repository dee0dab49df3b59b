"""Step models: one scaled reading plus a state vector in, a forecast plus the next state out.

An artifact built with the lowering option ``stream=true`` carries a step model (``step.onnx``)
and a ``stream`` section in its manifest (FORMAT.md, "Streaming"). The step model is ONNX with
batch 1 and is run with onnxruntime whatever the artifact's backend:

    reading [1, F] float32 (scaled)  +  state [1, S] float32
        -> forecast [1, H, F_out] float32 (scaled)  +  state_next [1, S] float32

The state is zeros at the start of a stream. For a TCN it packs each causal convolution's cache of
past inputs; for an LSTM or GRU the hidden (and cell) state of every layer (every layer's h, then
every layer's c).

An LSTM or GRU step model may also come as a kernel file (``stream.kernel``: ``.npz``, no pickles):
the same cell's weights, run here with a few in-place numpy ops per layer. One step is a handful of
small GEMVs, so onnxruntime's per-call cost (feeds, output allocation, node dispatch) is most of
it; the kernel skips that. The ONNX step model still loads (and is what a runtime without kernel
support runs); the build checks that both give the same forecasts.

An LSTM or GRU artifact that runs on the native engine steps on its own ``.native`` model instead
(``native.Stepper``: the windowed kernel's math for one step, its int8 maps included), so a stream
from a zero state over L readings forecasts what ``predict`` does on those L readings.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from edgecomp_runtime.errors import ArtifactError, EdgecompRuntimeError

READING = "reading"
STATE = "state"
FORECAST = "forecast"
STATE_NEXT = "state_next"
KINDS = ("tcn-cache", "recurrent-state")
CELLS = ("lstm", "gru")
_MAX_STATE = 2**24


def stream_section(manifest: dict[str, Any], *, source: str = "manifest") -> dict[str, Any] | None:
    """The manifest's ``stream`` section, type-checked; None when the artifact has none.

    Raises:
        ArtifactError: The section is malformed (the key is named).
    """
    section = manifest.get("stream")
    if section is None:
        return None
    where = f"{source}: manifest key 'stream"

    def need(key: str, ok: Any, expected: str) -> Any:
        value = section.get(key) if isinstance(section, dict) else None
        if not ok(value):
            raise ArtifactError(f"{where}.{key}' must be {expected}, got {value!r:.60}")
        return value

    if not isinstance(section, dict):
        raise ArtifactError(f"{where}' must be an object")
    files = {entry["name"] for entry in manifest.get("files", [])}
    need("step_file", lambda v: v in files, "a file listed in 'files'")
    need("kind", lambda v: v in KINDS, f"one of {list(KINDS)}")
    need("state_size", _is_state_size, f"an integer in [1, {_MAX_STATE}]")
    for key in ("exact", "allowed"):
        need(key, lambda v: isinstance(v, bool), "true or false")
    if "fallback" in section:  # the step model's verdict where the native step is measured
        fallback = section["fallback"]
        if not (
            isinstance(fallback, dict)
            and isinstance(fallback.get("allowed"), bool)
            and isinstance(fallback.get("exact", False), bool)
        ):
            raise ArtifactError(
                f"{where}.fallback' must be an object with 'allowed' (and 'exact', if given) "
                "true or false"
            )
    if "kernel" in section:
        need("kernel", lambda v: isinstance(v, dict), "an object")
        kernel = section["kernel"]
        if kernel.get("file") not in files or kernel.get("cell") not in CELLS:
            raise ArtifactError(
                f"{where}.kernel' must name a file listed in 'files' and a cell in "
                f"{list(CELLS)}, got {kernel!r:.80}"
            )
    return section


def stream_files(section: dict[str, Any] | None) -> list[str]:
    """The artifact files a stream needs: the step model and its kernel (if any)."""
    if section is None:
        return []
    kernel = section.get("kernel")
    return [section["step_file"], *([kernel["file"]] if kernel else [])]


def step_runner(model: Any, section: dict[str, Any]) -> StepRunner:
    """The runner of a loaded artifact's step model (``model``: an ``edgecomp_runtime.Model``).

    An LSTM or GRU artifact running on the native engine steps on its own ``.native`` model (the
    windowed run's math, int8 maps included) where its state is the step model's; else the step
    model's numpy kernel, else the ONNX step model."""
    kernel = section.get("kernel")
    data = model.file(kernel["file"]) if kernel else None
    stepper = _native_stepper(model, section)
    return StepRunner(
        model.file(section["step_file"]),
        section,
        threads=model.threads,
        kernel=data if stepper is None else None,
        native=stepper,
    )


def raw_stepper(model: Any, runner: StepRunner | None) -> Any:
    """For a stream on the native stepper (``runner.native``) of a model without lead channels:
    one kernel call per raw reading to the raw forecast, scaled and unscaled as ``predict`` does
    (``native.Stepper.raw_step``); None otherwise."""
    native = getattr(runner, "native", None)
    if native is None or model.spec.get("future"):
        return None
    return native.raw_step(model._scalers[np.float64], model._flat)


def _native_stepper(model: Any, section: dict[str, Any]) -> Any:
    make = getattr(model.engine, "stepper", None)  # engines.native.NativeEngine
    if make is None or section["kind"] != "recurrent-state":
        return None
    stepper = make()
    return stepper if stepper.state_size == int(section["state_size"]) else None


def _is_state_size(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= _MAX_STATE


class StepRunner:
    """One onnxruntime session on a step model, and the stream state it carries.

    Not thread-safe: one runner per stream.
    """

    def __init__(
        self,
        model_bytes: bytes,
        section: dict[str, Any],
        *,
        threads: int | None,
        kernel: bytes | None = None,
        native: Any = None,
    ) -> None:
        self.name = section["step_file"]
        self.state_size = int(section["state_size"])
        self._session = _session(model_bytes, self.name, threads)
        names = sorted(i.name for i in self._session.get_inputs())
        if names != sorted([READING, STATE]):
            raise ArtifactError(
                f"{self.name}: step model inputs are {names}, expected {[READING, STATE]}"
            )
        self._outputs = [FORECAST, STATE_NEXT]
        self.native = native  # a native.Stepper: the artifact's .native model, stepped
        self.kernel = (
            native if native is not None else None if kernel is None else _Kernel(kernel, section)
        )
        self.reset()

    def reset(self) -> None:
        """Zero the state, as at the start of a stream."""
        self.state = np.zeros((1, self.state_size), dtype=np.float32)

    @property
    def state(self) -> np.ndarray:
        """The current state [1, S] float32 (a copy when the kernel holds it)."""
        return self._state if self.kernel is None else self.kernel.packed()

    @state.setter
    def state(self, value: np.ndarray) -> None:
        if self.kernel is None:
            self._state = value
        else:
            self.kernel.unpack(value)

    def step(self, reading: np.ndarray) -> np.ndarray:
        """Feed one scaled reading [F]; returns the scaled forecast [H, F_out]."""
        if self.kernel is not None:
            return self.kernel.step(reading)
        feeds = {READING: reading.reshape(1, -1), STATE: self.state}
        try:
            forecast, state = self._session.run(self._outputs, feeds)
        except Exception as exc:  # NOTE: onnxruntime raises its own Exception subclasses
            raise EdgecompRuntimeError(
                f"{self.name}: onnxruntime failed to run the step model ({_first_line(exc)})"
            ) from None
        if state.shape != self._state.shape:
            raise ArtifactError(
                f"{self.name}: the step model returned a state of shape {list(state.shape)}, "
                f"the manifest promises {list(self._state.shape)}"
            )
        self.state = state
        return forecast[0]

    def run(self, readings: np.ndarray) -> np.ndarray:
        """Feed scaled readings [T, F] in order from the current state; forecasts [T, H, F_out]."""
        return np.stack([self.step(row) for row in np.asarray(readings, dtype=np.float32)])


class _Kernel:
    """An LSTM or GRU step in numpy: a dozen in-place ops per layer on preallocated buffers.

    Per layer, one GEMV of ``[x, h, 1]`` (input, previous hidden state, 1 for the bias row) by
    ``w{k}`` [F_k + H + 1, 4H] gives every gate. Gates whose activation is a sigmoid have their
    columns halved at build time, so one ``tanh`` serves them: ``sigmoid(a) = 0.5 tanh(a / 2) +
    0.5``. LSTM column blocks are ``[i, f, o, g]``; GRU blocks are ``[r, z, n_x, n_h]``, the input
    and the hidden parts of the candidate kept apart because ``n = tanh(n_x + r * n_h)``.
    """

    def __init__(self, data: bytes, section: dict[str, Any]) -> None:
        self.name = section["kernel"]["file"]
        self.lstm = section["kernel"]["cell"] == "lstm"
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
                weights = {key: arrays[key] for key in arrays.files}
        except Exception as exc:  # NOTE: zipfile / numpy format errors of a corrupt file
            raise ArtifactError(f"{self.name}: not a readable .npz kernel ({exc})") from None
        self._read(weights, int(section["state_size"]))

    def _get(self, weights: dict[str, np.ndarray], key: str) -> np.ndarray:
        if key not in weights:
            raise ArtifactError(f"{self.name}: kernel array '{key}' is missing")
        return np.ascontiguousarray(weights[key], dtype=np.float32)

    def _read(self, weights: dict[str, np.ndarray], state_size: int) -> None:
        self.layers = int(self._get(weights, "layers")[0])
        self.weights = [self._get(weights, f"w{k}") for k in range(self.layers)]
        self.hidden = self.weights[0].shape[-1] // 4
        self._check()
        self.head_w, self.head_b = self._get(weights, "head_w"), self._get(weights, "head_b")
        self.shape = tuple(int(v) for v in self._get(weights, "shape"))  # (H, F_out)
        self.targets = None
        if "targets" in weights:
            self.targets = self._get(weights, "targets").astype(np.intp)
        self.residual = bool(self._get(weights, "residual")[0])
        width = self.hidden * self.layers * (2 if self.lstm else 1)
        if width != state_size or self.head_w.shape != (self.hidden, np.prod(self.shape)):
            raise ArtifactError(
                f"{self.name}: kernel of state size {width} and head {list(self.head_w.shape)} "
                f"does not match state_size {state_size} and forecast {list(self.shape)}"
            )
        size = self.hidden
        self._gates = np.empty(4 * size, np.float32)
        # per layer [x, h, 1]: h lives here (updated in place after the GEMV), as does the next
        # layer's copy of it in its x slot; the head runs on the last layer's [h, 1]
        self._inputs = [np.ones(w.shape[0], np.float32) for w in self.weights]
        self._hs = [inputs[-1 - size : -1] for inputs in self._inputs]
        self._cs = [np.zeros(size if self.lstm else 0, np.float32) for _ in self.weights]
        self._layers = [
            (w, inputs, inputs[: -1 - size], h, c)
            for w, inputs, h, c in zip(self.weights, self._inputs, self._hs, self._cs, strict=True)
        ]
        self._head_in = self._inputs[-1][-1 - size :]
        self._head_w = np.ascontiguousarray(np.vstack([self.head_w, self.head_b[None]]))
        self._scratch = np.empty(size, np.float32)
        self._residual = self._residual_index()  # the reading's target columns
        g = self._gates  # its blocks, as views made once
        self._blocks = [g[k * size : (k + 1) * size] for k in range(4)]
        self._blocks += [g[: 3 * size], g[: 2 * size]]  # LSTM's sigmoid gates, GRU's

    def _residual_index(self) -> Any:
        if self.targets is None:
            return slice(None)
        count = len(self.targets)
        return slice(0, count) if np.array_equal(self.targets, np.arange(count)) else self.targets

    def _check(self) -> None:
        for k, w in enumerate(self.weights):
            rows = None if k == 0 else 2 * self.hidden + 1
            if w.ndim != 2 or w.shape[1] != 4 * self.hidden or rows not in (None, w.shape[0]):
                raise ArtifactError(
                    f"{self.name}: layer {k} kernel array of shape {list(w.shape)}, expected "
                    f"[{'F + H + 1' if k == 0 else rows}, {4 * self.hidden}]"
                )

    def packed(self) -> np.ndarray:
        """A copy of the state as [1, S]: every layer's h, then (LSTM) every layer's c."""
        return np.concatenate([*self._hs, *self._cs])[None]

    def unpack(self, state: np.ndarray) -> None:
        """Set the state from [1, S] (as ``packed`` gives it)."""
        flat = np.asarray(state, dtype=np.float32).reshape(-1)
        for k, part in enumerate([*self._hs, *self._cs]):
            part[...] = flat[k * self.hidden : k * self.hidden + part.size]

    def step(self, reading: np.ndarray) -> np.ndarray:
        """One scaled reading [F] -> the scaled forecast [H, F_out] (a new array); the state
        advances."""
        x = reading
        cell = self._lstm if self.lstm else self._gru
        for w, inputs, x_slot, h, c in self._layers:
            x_slot[...] = x
            np.dot(inputs, w, out=self._gates)
            cell(h, c)  # h, c in place: the GEMV has read h
            x = h
        y = np.dot(self._head_in, self._head_w).reshape(self.shape)  # [h, 1]: bias included
        if self.residual:
            y += reading[self._residual]
        return y

    def _lstm(self, h: np.ndarray, c: np.ndarray) -> None:
        i, f, o, g, s, _ = self._blocks
        np.tanh(self._gates, out=self._gates)
        np.multiply(s, 0.5, out=s)  # i, f, o: sigmoid = 0.5 tanh(a / 2) + 0.5
        np.add(s, 0.5, out=s)
        np.multiply(f, c, out=c)  # c' = f * c + i * g
        np.multiply(i, g, out=self._scratch)
        np.add(c, self._scratch, out=c)
        np.tanh(c, out=h)  # h' = o * tanh(c')
        np.multiply(h, o, out=h)

    def _gru(self, h: np.ndarray, c: np.ndarray) -> None:
        r, z, n, n_h, _, rz = self._blocks  # NOTE: c is empty (a GRU has no cell)
        np.tanh(rz, out=rz)
        np.multiply(rz, 0.5, out=rz)
        np.add(rz, 0.5, out=rz)
        np.multiply(n_h, r, out=n_h)
        np.add(n, n_h, out=n)
        np.tanh(n, out=n)
        np.subtract(h, n, out=h)  # h' = n + z * (h - n)
        np.multiply(h, z, out=h)
        np.add(h, n, out=h)


def _session(model_bytes: bytes, name: str, threads: int | None) -> Any:
    from edgecomp_runtime.engines.onnxruntime import _import_onnxruntime

    ort = _import_onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(
            model_bytes, sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # NOTE: see StepRunner.step
        raise ArtifactError(
            f"{name}: onnxruntime cannot load the step model ({_first_line(exc)})"
        ) from None


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
