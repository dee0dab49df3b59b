"""Step models for streaming: one reading in, one forecast out, state carried between readings.

``add_stream`` (called by ``pipeline.build`` with the lowering option ``stream=true``) builds the
step model of a trained forecaster, exports it to ONNX (``step.onnx``, batch 1), runs it through
the runtime over the whole evaluation split as a gateway would, one reading at a time, and writes
what it measured into the manifest's ``stream`` section (runtime/FORMAT.md, "Streaming"):

* TCN: each causal convolution keeps a cache of its last ``(kernel - 1) * dilation`` inputs, so a
  reading costs one output step per layer. When the receptive field is at most the window length L
  this is the windowed computation exactly (checked: ``exact``); when it is longer, the windowed
  model zero-pads what the stream remembers, so the two differ and are measured like a recurrent
  model.
* LSTM / GRU: the hidden (and cell) state is carried across readings instead of re-running the
  window: a different computation, measured against the windowed artifact on the split. Their
  cells also ship as a numpy kernel (``step_kernel.npz``, ``stream.kernel``) that the runtime runs
  instead of an onnxruntime call per reading; the build checks it against the ONNX step model.

The runtime uses the step model only when the section says ``allowed``: exact, or a per-horizon
MAE (against the truth) within ``stream_error_budget`` (default 1 %) of the windowed artifact's.

An LSTM / GRU artifact on the native engine (``recipe.lowering.engine == "native"``) streams on its
``.native`` model instead (the runtime's ``native.Stepper``, int8 maps included): where the kernel
runs on the build host, the section's figures and ``allowed`` are that stepper's against the native
engine's windowed forecasts (``step_path: "native"``), and ``fallback`` holds the step model's
against the target's backend, what a gateway without the native engine streams.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from edgecomp.config import BuildError
from edgecomp.data import Dataset
from edgecomp.metrics import horizon_metrics
from edgecomp.models import TCNForecaster, _RecurrentForecaster
from edgecomp.spec import Model
from edgecomp_runtime.engines import get_engine
from edgecomp_runtime.step import FORECAST, READING, STATE, STATE_NEXT, StepRunner

__all__ = [
    "KERNEL_FILE",
    "STEP_FILE",
    "StreamBuildError",
    "add_stream",
    "export_step",
    "step_kernel",
    "step_module",
]

STEP_FILE = "step.onnx"
KERNEL_FILE = "step_kernel.npz"
KERNEL_TOLERANCE = 1e-4  # max |kernel - ONNX step model| over the split, scaled units
DEFAULT_BUDGET = 0.01  # stateful MAE may exceed the windowed artifact's by at most 1 % per step
EXACT_TOLERANCE = 1e-4  # max |step - windowed reference|, scaled units, for an exact step model
NATIVE = "native"  # recipe.lowering.engine of an artifact that steps on its .native model
STEP_MODEL = "step-model"  # stream.step_path of figures measured on step.onnx (or its kernel)


class StreamBuildError(BuildError):
    """A step model cannot be built for this model; the message says why."""


def step_module(module: nn.Module) -> tuple[nn.Module, int, str]:
    """The step model of a trained forecaster: (module, state size S, kind).

    The module maps ``reading [1, F]`` and ``state [1, S]`` to ``forecast [1, H, F_out]`` and the
    next state; it shares (does not copy) the forecaster's weights.

    Raises:
        StreamBuildError: The forecaster is not a TCN, LSTM or GRU from ``edgecomp.models``.
    """
    if isinstance(module, TCNForecaster):
        step = _TCNStep(module)
        return step, step.state_size, "tcn-cache"
    if isinstance(module, _RecurrentForecaster):
        step = _RecurrentStep(module)
        return step, step.state_size, "recurrent-state"
    raise StreamBuildError(
        f"no step model for {type(module).__name__}: streaming needs an edgecomp TCN, LSTM or GRU"
    )


class _TCNStep(nn.Module):
    """Causal convolutions fed one step at a time from per-layer caches of past inputs.

    The state packs, per convolution (two per block, in order), its last ``P = (kernel - 1) *
    dilation`` inputs, time-major (oldest first). One Gather of every past tap and one batched
    MatMul (taps padded to the longest, with zero weights) give each convolution's contribution
    from the past; the current input adds one small Gemm per
    convolution. The next state is one Gather over ``[state, new inputs]``: few ONNX nodes, since
    per-node overhead, not arithmetic, is what a single step costs.
    """

    def __init__(self, tcn: TCNForecaster) -> None:
        super().__init__()
        self.tcn = tcn
        convs = [conv for block in tcn.blocks for conv in (block.conv1, block.conv2)]
        sizes = [conv.in_channels * _span(conv) for conv in convs]
        self.state_size = sum(sizes)
        offsets = np.cumsum([0, *sizes])
        new_offsets = np.cumsum([0, *(conv.in_channels for conv in convs)])
        taps, weights, perm = [], [], []
        for conv, off, new_off in zip(convs, offsets, new_offsets, strict=False):
            t, w = _past_taps(conv, int(off))
            taps.append(t)
            weights.append(w)
            perm.append(_shift(conv, int(off), self.state_size + int(new_off)))
        # one batched MatMul for every convolution's past: taps padded to the longest, weight 0
        width = max(len(t) for t in taps)
        index = np.stack([np.pad(t, (0, width - len(t))) for t in taps])
        past = torch.stack([nn.functional.pad(w, (0, 0, 0, width - len(w))) for w in weights])
        self.register_buffer("taps", torch.from_numpy(index.reshape(-1)), persistent=False)
        self.register_buffer("past", past, persistent=False)  # [convs, width, channels]
        bias = torch.cat([conv.bias.detach() for conv in convs])
        self.register_buffer("bias", bias[None], persistent=False)
        self.register_buffer("perm", torch.from_numpy(np.concatenate(perm)), persistent=False)
        now = [conv.weight.detach()[:, :, -1].T.contiguous() for conv in convs]
        for i, w in enumerate(now):
            self.register_buffer(f"now{i}", w, persistent=False)

    def forward(self, reading: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        n, width, channels = self.past.shape
        taps = state.index_select(1, self.taps).reshape(n, 1, width)
        past = (torch.matmul(taps, self.past).reshape(1, n * channels) + self.bias).split(
            channels, 1
        )
        x, new = reading, []
        for i, block in enumerate(self.tcn.blocks):
            h = torch.relu(torch.addmm(past[2 * i], x, getattr(self, f"now{2 * i}")))
            out = torch.relu(torch.addmm(past[2 * i + 1], h, getattr(self, f"now{2 * i + 1}")))
            skip = x if isinstance(block.skip, nn.Identity) else block.skip(x[:, :, None])[:, :, 0]
            new += [x, h]
            x = torch.relu(out + skip)
        y = self.tcn._project(x, reading.unsqueeze(1))
        return y, torch.cat([state, *new], dim=1).index_select(1, self.perm)


def _span(conv: nn.Conv1d) -> int:
    """Past inputs a causal convolution needs: (kernel - 1) * dilation."""
    return (conv.kernel_size[0] - 1) * conv.dilation[0]


def _past_taps(conv: nn.Conv1d, offset: int) -> tuple[np.ndarray, torch.Tensor]:
    """State indices of a convolution's past taps, and their weights [taps, out_channels]."""
    channels, kernel, dilation, span = (
        conv.in_channels,
        conv.kernel_size[0],
        conv.dilation[0],
        _span(conv),
    )
    index, weights = [], []
    for m in range(kernel - 1):  # weight m reads time t - (kernel - 1 - m) * dilation
        slot = span - (kernel - 1 - m) * dilation  # its row in the time-major cache
        index.append(offset + slot * channels + np.arange(channels))
        weights.append(conv.weight.detach()[:, :, m].T)
    return np.concatenate(index), torch.cat(weights)


def _shift(conv: nn.Conv1d, offset: int, new_at: int) -> np.ndarray:
    """Where each entry of the next cache comes from in [state, new inputs]: shift by one step."""
    channels, span = conv.in_channels, _span(conv)
    older = offset + channels + np.arange((span - 1) * channels)
    return np.concatenate([older, new_at + np.arange(channels)])


class _RecurrentStep(nn.Module):
    """An LSTM or GRU advanced one reading, its hidden (and cell) states packed in one vector."""

    def __init__(self, model: _RecurrentForecaster) -> None:
        super().__init__()
        self.model = model
        self.lstm = isinstance(model.rnn, nn.LSTM)
        self.shape = (model.rnn.num_layers, 1, model.rnn.hidden_size)
        self.size = self.shape[0] * self.shape[2]
        self.state_size = self.size * (2 if self.lstm else 1)

    def forward(self, reading: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = reading.unsqueeze(1)  # [1, 1, F]
        h = state[:, : self.size].reshape(self.shape)
        if self.lstm:
            c = state[:, self.size :].reshape(self.shape)
            out, (h, c) = self.model.rnn(x, (h, c))
            packed = torch.cat([h.reshape(1, -1), c.reshape(1, -1)], dim=1)
        else:
            out, h = self.model.rnn(x, h)
            packed = h.reshape(1, -1)
        return self.model._project(out[:, -1], x), packed


def export_step(step: nn.Module, n_features: int, state_size: int) -> bytes:
    """Export a step model to ONNX bytes (batch 1, opset 17), checked by the ONNX checker."""
    import onnx
    import onnxsim

    example = (torch.zeros(1, n_features), torch.zeros(1, state_size))
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # legacy-exporter deprecation, RNN batch-size notes
        _export(step, example, buffer)
    proto, ok = onnxsim.simplify(onnx.load_from_string(buffer.getvalue()))
    if not ok:
        raise StreamBuildError("onnxsim could not check the simplified step model")
    onnx.checker.check_model(proto, full_check=True)
    return proto.SerializeToString()


def _export(step: nn.Module, example: tuple, buffer: io.BytesIO) -> None:
    try:
        torch.onnx.export(
            step.eval(),
            example,
            buffer,
            dynamo=False,
            opset_version=17,
            input_names=[READING, STATE],
            output_names=[FORECAST, STATE_NEXT],
        )
    except Exception as exc:  # any exporter failure becomes one line naming the step model
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        raise StreamBuildError(f"cannot export the step model to ONNX: {lines[0]}") from exc


def add_stream(
    model: Model,
    dataset: Dataset,
    manifest: dict[str, Any],
    files: dict[str, bytes],
    *,
    options: dict[str, Any],
    split: str = "test",
) -> None:
    """Build, export and measure the step model; add ``step.onnx`` and ``manifest["stream"]``.

    Args:
        model: The forecaster the artifact was built from (an edgecomp TCN, LSTM or GRU).
        dataset: Its data; the step model streams through ``split``'s segment.
        manifest: The artifact's manifest (with ``model_file``); completed in place.
        files: The artifact's files; ``step.onnx`` is added.
        options: Lowering options; ``stream_error_budget`` (fraction, default 0.01) is read.
        split: The split streamed through and measured.

    Raises:
        StreamBuildError: No step model for this forecaster, a bad budget, a split too short to
            fill one window, or an exact step model that does not match the windowed one.
    """
    budget = _budget(options.get("stream_error_budget", DEFAULT_BUDGET))
    step, state_size, kind = step_module(model.module)
    step_bytes = export_step(step, model.spec.n_features, state_size)
    section = {"step_file": STEP_FILE, "kind": kind, "state_size": state_size}
    section.update(_structure(model.module))
    kernel = step_kernel(model.module)
    if kernel is not None:
        section["kernel"] = {"file": KERNEL_FILE, "cell": kernel[0]}
    kernel_bytes = None if kernel is None else kernel[1]
    runner = StepRunner(step_bytes, _runner_section(section), threads=1, kernel=kernel_bytes)
    windowed = get_engine(manifest["target"]["backend"])(
        files[manifest["model_file"]], manifest, threads=1
    )
    measured = _measure(runner, windowed, model, dataset, split, budget)
    native = _native_engine(manifest, files, state_size)
    if native is None:
        section.update(measured, step_path=STEP_MODEL)
    else:  # the gateway steps on the .native model: its figures gate; the step model's fall back
        on_native = StepRunner(step_bytes, _runner_section(section), threads=1, native=native[1])
        section.update(_measure(on_native, native[0], model, dataset, split, budget))
        section.update(step_path=NATIVE, fallback=_fallback(measured))
    files[STEP_FILE] = step_bytes
    if kernel is not None:
        _check_kernel(step_bytes, section, runner, model, dataset, split)
        files[KERNEL_FILE] = kernel[1]
    manifest["stream"] = section


def step_kernel(module: nn.Module) -> tuple[str, bytes] | None:
    """(cell, ``.npz`` bytes) of the runtime's numpy step kernel; None for a TCN.

    Layout (runtime/edgecomp_runtime/step.py, ``_Kernel``): per layer ``w{k}`` [F_k + H + 1, 4H]
    multiplying ``[x, h, 1]``; column blocks LSTM ``[i, f, o, g]``, GRU ``[r, z, n_x, n_h]``;
    sigmoid columns halved so one tanh serves every gate; then the head and its residual targets.
    """
    from edgecomp.targets.onnx.recurrent import cell_weights

    if not isinstance(module, _RecurrentForecaster):
        return None
    lstm, layers = cell_weights(module.rnn)
    arrays = {f"w{k}": _kernel_matrix(layer, lstm) for k, layer in enumerate(layers)}
    with torch.no_grad():
        arrays["head_w"] = module.head.weight.T.float().numpy().copy()
        arrays["head_b"] = module.head.bias.float().numpy().copy()
    arrays["shape"] = np.array([module.horizon, module.n_targets])
    arrays["layers"] = np.array([len(layers)])
    arrays["residual"] = np.array([int(module.residual)])
    if not module._all_features:
        arrays["targets"] = module.target_index.numpy().astype(np.int64)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return ("lstm" if lstm else "gru"), buffer.getvalue()


def _kernel_matrix(layer: Any, lstm: bool) -> np.ndarray:
    """[W_x; W_h; b] with gate columns as the kernel reads them, sigmoid columns halved."""
    hidden = layer.w_h.shape[0]
    if lstm:  # cell_weights: [i, f, o, g], every bias in b_x
        matrix = np.concatenate([layer.w_x, layer.w_h, layer.b_x[None]])
    else:  # cell_weights: [r, z, n]; b_x holds b_r, b_z (both), b_in; b_h holds b_hn
        n_in, two = layer.w_x.shape[0], 2 * hidden
        matrix = np.zeros((n_in + hidden + 1, 4 * hidden), np.float32)
        matrix[:n_in, : 3 * hidden] = layer.w_x
        matrix[n_in:-1, :two] = layer.w_h[:, :two]
        matrix[n_in:-1, 3 * hidden :] = layer.w_h[:, two:]
        matrix[-1, : 3 * hidden] = layer.b_x
        matrix[-1, 3 * hidden :] = layer.b_h[two:]
    sigmoid = np.ones(4 * hidden, np.float32)
    sigmoid[: (3 if lstm else 2) * hidden] = 0.5  # sigmoid(a) = 0.5 tanh(a / 2) + 0.5
    return (matrix * sigmoid).astype(np.float32)


def _check_kernel(step_bytes, section, runner, model, dataset, split) -> None:
    """The kernel's forecasts over the split equal the ONNX step model's (or the build fails)."""
    (start, end), spec = dataset.bounds[split], model.spec
    mean, std = np.asarray(spec.scaler["mean"]), np.asarray(spec.scaler["std"])
    readings = ((dataset.values[start:end] - mean) / std).astype(np.float32)
    onnx_runner = StepRunner(step_bytes, section, threads=1)
    runner.reset()
    diff = float(np.abs(runner.run(readings) - onnx_runner.run(readings)).max())
    if not diff <= KERNEL_TOLERANCE:
        raise StreamBuildError(
            f"the step kernel differs from the ONNX step model by {diff:.3g} (scaled units) on "
            f"the {split} split, above {KERNEL_TOLERANCE}"
        )
    section["kernel"]["max_abs_diff"] = diff


def _budget(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 10:
        raise StreamBuildError(
            f"lowering option 'stream_error_budget' must be a fraction in [0, 10), got {value!r}"
        )
    return float(value)


def _structure(module: nn.Module) -> dict[str, Any]:
    """Whether the step model is the windowed computation exactly, and why (or why not)."""
    if not isinstance(module, TCNForecaster):
        return {
            "exact": False,
            "reason": "the hidden state is carried across readings instead of re-running the "
            "window: a different computation, measured on the split",
        }
    field, window = module.receptive_field, module.input_len
    if field <= window:
        return {
            "exact": True,
            "receptive_field": field,
            "reason": f"receptive field {field} <= window {window}: per-layer caches give the "
            "windowed forecast",
        }
    return {
        "exact": False,
        "receptive_field": field,
        "reason": f"receptive field {field} > window {window}: the windowed model zero-pads "
        "what the stream remembers, so the two differ; measured on the split",
    }


def _runner_section(section: dict[str, Any]) -> dict[str, Any]:
    """A stream section as ``StepRunner`` reads it before the verdict (not allowed, not exact)."""
    return {**section, "exact": False, "allowed": False}


def _native_engine(
    manifest: dict[str, Any], files: dict[str, bytes], state_size: int
) -> tuple[Any, Any] | None:
    """(windowed engine, stepper) of the artifact's native engine, as ``Model.stream()`` steps
    on it (runtime step.py, ``_native_stepper``); None where the build recorded another engine,
    the kernel is not built on this host, or the ``.native`` state is not the step model's."""
    from edgecomp_runtime import native
    from edgecomp_runtime.engines import engine_input

    lowering = manifest.get("recipe", {}).get("lowering", {})
    if lowering.get("engine") != NATIVE or not native.available():
        return None
    engine = get_engine(NATIVE)(engine_input(NATIVE, manifest, files), manifest, threads=1)
    stepper = engine.stepper()
    return (engine, stepper) if stepper.state_size == state_size else None


def _fallback(measured: dict[str, Any]) -> dict[str, Any]:
    """The step model's figures, for a gateway whose runtime does not step on the native engine
    (kernel not built there, or int8 layers on a CPU without a fast int8 path)."""
    return {
        "step_path": STEP_MODEL,
        "note": "the fp32 step model (step.onnx, or its numpy kernel) against the windowed model "
        "on the target's backend: what a gateway streams where the native engine does not run. "
        "The section's own 'allowed' is the native step's; this 'allowed' is the step model's "
        "verdict on these figures",
        **measured,
    }


def _measure(
    runner: StepRunner,
    engine: Any,
    model: Model,
    dataset: Dataset,
    split: str,
    budget: float,
) -> dict[str, Any]:
    """Stream the split's segment reading by reading on ``runner``; compare with the windowed
    forecasts of ``engine`` (an ``edgecomp_runtime`` engine instance)."""
    windows, (start, end) = dataset.split(split), dataset.bounds[split]
    if len(windows) == 0:
        raise StreamBuildError(f"the {split} split has no window to measure the step model on")
    spec = model.spec
    mean, std = np.asarray(spec.scaler["mean"]), np.asarray(spec.scaler["std"])
    readings = ((dataset.values[start:end] - mean) / std).astype(np.float32)
    streamed = runner.run(readings)[windows.starts - start + spec.input_len - 1]
    windowed = np.concatenate(
        [engine.run(windows.x[i : i + 256]) for i in range(0, len(windows), 256)]
    )
    return _verdict(model, dataset, split, streamed, windowed, budget)


def _verdict(model, dataset, split, streamed, windowed, budget) -> dict[str, Any]:
    from edgecomp.frontend import reference_predict

    truth, observed = dataset.raw_targets(split), dataset.split(split).y_observed
    stream_metrics = horizon_metrics(truth, dataset.unscale_targets(streamed), observed=observed)
    windowed_metrics = horizon_metrics(truth, dataset.unscale_targets(windowed), observed=observed)
    deviation = np.abs(dataset.unscale_targets(streamed) - dataset.unscale_targets(windowed))
    parity = float(np.abs(streamed - reference_predict(model, dataset.split(split).x)).max())
    exact = _structure(model.module)["exact"]
    if exact and parity > EXACT_TOLERANCE:
        raise StreamBuildError(
            f"the exact step model differs from the windowed reference by {parity:.3g} "
            f"(scaled units) on the {split} split, above {EXACT_TOLERANCE}"
        )
    pairs = [  # steps without an observed value (None) are not scored
        (s, w)
        for s, w in zip(stream_metrics["mae"], windowed_metrics["mae"], strict=True)
        if s is not None and w is not None
    ]
    worst = max((s / w - 1 for s, w in pairs if w > 0), default=0.0)
    within = all(s <= w * (1 + budget) for s, w in pairs)
    return {
        "error_budget": budget,
        "worst_increase": worst,
        "within_budget": within,
        "allowed": exact or within,
        "metrics": {
            "split": split,
            "n_windows": len(truth),
            "stream": stream_metrics,
            "windowed": windowed_metrics,
            "deviation_mae": deviation.mean(axis=(0, 2)).tolist(),
            "reference_max_abs_diff": parity,
        },
    }
