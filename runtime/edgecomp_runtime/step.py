"""Step models: one scaled reading plus a state vector in, a forecast plus the next state out.

An artifact built with the lowering option ``stream=true`` carries a step model (``step.onnx``)
and a ``stream`` section in its manifest (FORMAT.md, "Streaming"). The step model is ONNX with
batch 1 and is run with onnxruntime whatever the artifact's backend:

    reading [1, F] float32 (scaled)  +  state [1, S] float32
        -> forecast [1, H, F_out] float32 (scaled)  +  state_next [1, S] float32

The state is zeros at the start of a stream. For a TCN it packs each causal convolution's cache of
past inputs; for an LSTM or GRU the hidden (and cell) state of every layer.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgecomp_runtime.errors import ArtifactError, EdgecompRuntimeError

READING = "reading"
STATE = "state"
FORECAST = "forecast"
STATE_NEXT = "state_next"
KINDS = ("tcn-cache", "recurrent-state")
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
    return section


def _is_state_size(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= _MAX_STATE


class StepRunner:
    """One onnxruntime session on a step model, and the stream state it carries.

    Not thread-safe: one runner per stream.
    """

    def __init__(self, model_bytes: bytes, section: dict[str, Any], *, threads: int | None) -> None:
        self.name = section["step_file"]
        self.state_size = int(section["state_size"])
        self._session = _session(model_bytes, self.name, threads)
        names = sorted(i.name for i in self._session.get_inputs())
        if names != sorted([READING, STATE]):
            raise ArtifactError(
                f"{self.name}: step model inputs are {names}, expected {[READING, STATE]}"
            )
        self._outputs = [FORECAST, STATE_NEXT]
        self.reset()

    def reset(self) -> None:
        """Zero the state, as at the start of a stream."""
        self.state = np.zeros((1, self.state_size), dtype=np.float32)

    def step(self, reading: np.ndarray) -> np.ndarray:
        """Feed one scaled reading [F]; returns the scaled forecast [H, F_out]."""
        feeds = {READING: reading.reshape(1, -1), STATE: self.state}
        try:
            forecast, state = self._session.run(self._outputs, feeds)
        except Exception as exc:  # NOTE: onnxruntime raises its own Exception subclasses
            raise EdgecompRuntimeError(
                f"{self.name}: onnxruntime failed to run the step model ({_first_line(exc)})"
            ) from None
        if state.shape != self.state.shape:
            raise ArtifactError(
                f"{self.name}: the step model returned a state of shape {list(state.shape)}, "
                f"the manifest promises {list(self.state.shape)}"
            )
        self.state = state
        return forecast[0]

    def run(self, readings: np.ndarray) -> np.ndarray:
        """Feed scaled readings [T, F] in order from the current state; forecasts [T, H, F_out]."""
        return np.stack([self.step(row) for row in np.asarray(readings, dtype=np.float32)])


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
