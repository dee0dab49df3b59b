"""Forecasters: LSTM, GRU and TCN with one interface, and a registry to build them from a ModelSpec.

Every model maps scaled inputs ``x [batch, L, F]`` to scaled forecasts ``[batch, H, F_out]``. They
are written so that ``torch.onnx.export`` emits ops that ONNX Runtime quantizes per op type: native
``LSTM`` / ``GRU`` ops (``nn.LSTM`` / ``nn.GRU`` with ``batch_first=True``) and, for the TCN, plain
``Pad`` / ``Conv`` / ``Relu`` / ``Add``; every head is one ``Gemm`` on the last time step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from edgecomp.spec import ModelSpec

__all__ = [
    "MODELS",
    "ModelError",
    "GRUForecaster",
    "LSTMForecaster",
    "TCNForecaster",
    "TemporalBlock",
    "auto_dilations",
    "build_model",
    "default_hparams",
    "receptive_field",
    "register_model",
    "resolve_hparams",
]

MODELS: dict[str, type[nn.Module]] = {}


class ModelError(ValueError):
    """An architecture or hyperparameter is unknown or invalid; the message names it."""


def register_model(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: register a forecaster under ``name`` in ``MODELS``.

    The class must define ``DEFAULTS`` (hyperparameter name -> default) and accept
    ``(n_features, n_targets, input_len, horizon, **hparams)``.
    """

    def wrap(cls: type[nn.Module]) -> type[nn.Module]:
        if name in MODELS:
            raise ModelError(f"architecture '{name}' is already registered ({MODELS[name]})")
        if not isinstance(getattr(cls, "DEFAULTS", None), dict):
            raise ModelError(f"architecture '{name}': {cls.__name__} must define DEFAULTS (a dict)")
        MODELS[name] = cls
        return cls

    return wrap


def _model_class(arch: str) -> type[nn.Module]:
    if arch not in MODELS:
        raise ModelError(f"unknown architecture '{arch}'. Available: {sorted(MODELS)}")
    return MODELS[arch]


def default_hparams(arch: str) -> dict[str, Any]:
    """A copy of the default hyperparameters of ``arch``."""
    return dict(_model_class(arch).DEFAULTS)


def resolve_hparams(arch: str, hparams: dict[str, Any] | None = None) -> dict[str, Any]:
    """``hparams`` merged over the defaults of ``arch``; an unknown name raises ModelError."""
    merged = default_hparams(arch)
    unknown = sorted(set(hparams or {}) - set(merged))
    if unknown:
        raise ModelError(
            f"unknown hyperparameter(s) {unknown} for architecture '{arch}'. "
            f"Known: {sorted(merged)}"
        )
    merged.update(hparams or {})
    return merged


def build_model(spec: ModelSpec) -> nn.Module:
    """Build an untrained forecaster for ``spec`` (arch, hparams over defaults, shapes).

    Raises:
        ModelError: Unknown architecture (lists the registered ones) or hyperparameter (names it).
    """
    cls = _model_class(spec.arch)
    hparams = resolve_hparams(spec.arch, spec.hparams)
    return cls(
        n_features=spec.n_features,
        n_targets=len(spec.targets),
        input_len=spec.input_len,
        horizon=spec.horizon,
        target_index=spec.target_index,
        **hparams,
    )


def _positive_int(name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ModelError(f"hyperparameter '{name}' must be a positive integer, got {value!r}")
    return value


def _fraction(name: str, value: Any) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value < 1:
        raise ModelError(f"hyperparameter '{name}' must be a number in [0, 1), got {value!r}")
    return float(value)


class _Forecaster(nn.Module):
    """Shape bookkeeping and the head: Linear(width -> H * F_out), reshaped to [B, H, F_out].

    With ``residual`` (the default) the head forecasts the change from the last observed value
    of each target: ``y = head(h) + x[:, -1, targets]``. Persistence is then the starting point
    instead of something the network must learn, which is what short horizons need.
    """

    def __init__(
        self,
        width: int,
        n_features: int,
        n_targets: int,
        input_len: int,
        horizon: int,
        residual: bool,
        target_index: list[int] | None,
    ) -> None:
        super().__init__()
        self.n_features = _positive_int("n_features", n_features)
        self.n_targets = _positive_int("n_targets", n_targets)
        self.input_len = _positive_int("input_len", input_len)
        self.horizon = _positive_int("horizon", horizon)
        self.head = nn.Linear(width, horizon * n_targets)
        if not isinstance(residual, bool):
            raise ModelError(f"hyperparameter 'residual' must be true or false, got {residual!r}")
        self.residual = residual
        index = list(range(n_targets)) if target_index is None else list(target_index)
        if len(index) != n_targets or not all(0 <= i < n_features for i in index):
            raise ModelError(f"target_index {index} must hold {n_targets} feature positions")
        self._all_features = index == list(range(n_features))
        self.register_buffer("target_index", torch.tensor(index), persistent=False)

    def _project(self, last: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        y = self.head(last).reshape(-1, self.horizon, self.n_targets)
        if not self.residual:
            return y
        previous = x[:, -1:, :] if self._all_features else x[:, -1:, self.target_index]
        return y + previous


class _RecurrentForecaster(_Forecaster):
    rnn_type: ClassVar[type[nn.RNNBase]]
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "hidden": 64,
        "layers": 2,
        "dropout": 0.0,
        "residual": True,
    }

    def __init__(
        self,
        n_features: int,
        n_targets: int,
        input_len: int,
        horizon: int,
        *,
        hidden: int = 64,
        layers: int = 2,
        dropout: float = 0.0,
        residual: bool = True,
        target_index: list[int] | None = None,
    ) -> None:
        shape = (n_features, n_targets, input_len, horizon)
        super().__init__(_positive_int("hidden", hidden), *shape, residual, target_index)
        self.rnn = self.rnn_type(
            n_features,
            hidden,
            num_layers=_positive_int("layers", layers),
            dropout=_fraction("dropout", dropout),
            batch_first=True,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self._project(out[:, -1], x)


@register_model("lstm")
class LSTMForecaster(_RecurrentForecaster):
    """Stacked LSTM; the head reads the last step's hidden state.

    Hparams: hidden (64), layers (2), dropout (0.0, between layers), residual (True).
    """

    rnn_type = nn.LSTM


@register_model("gru")
class GRUForecaster(_RecurrentForecaster):
    """Stacked GRU; the head reads the last step's hidden state.

    Hparams: hidden (64), layers (2), dropout (0.0, between layers), residual (True).
    """

    rnn_type = nn.GRU


class TemporalBlock(nn.Module):
    """Two causal dilated convolutions with ReLU, plus a residual (1x1 conv when widths differ).

    Padding is on the left only, so output step t depends on input steps <= t.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, dilation: int) -> None:
        super().__init__()
        self.pad = (kernel - 1) * dilation
        self.conv1 = nn.Conv1d(c_in, c_out, kernel, dilation=dilation)
        self.conv2 = nn.Conv1d(c_out, c_out, kernel, dilation=dilation)
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv1(F.pad(x, (self.pad, 0))))
        h = torch.relu(self.conv2(F.pad(h, (self.pad, 0))))
        return torch.relu(h + self.skip(x))


def auto_dilations(input_len: int, kernel: int) -> list[int]:
    """Dilations 1, 2, 4, ... until the receptive field of the blocks covers ``input_len``."""
    dilations = [1]
    while receptive_field(kernel, dilations) < input_len:
        dilations.append(dilations[-1] * 2)
    return dilations


def receptive_field(kernel: int, dilations: list[int]) -> int:
    """Input steps seen by the last output step: 1 + 2 (kernel - 1) sum(dilations)."""
    return 1 + 2 * (kernel - 1) * sum(dilations)


@register_model("tcn")
class TCNForecaster(_Forecaster):
    """Causal dilated 1-D conv stack (residual blocks); the head reads the last time step.

    Hparams: channels (32), kernel (3), dilations (None: 1, 2, 4, ... until the receptive field
    covers L), residual (True).
    """

    DEFAULTS: ClassVar[dict[str, Any]] = {
        "channels": 32,
        "kernel": 3,
        "dilations": None,
        "residual": True,
    }

    def __init__(
        self,
        n_features: int,
        n_targets: int,
        input_len: int,
        horizon: int,
        *,
        channels: int = 32,
        kernel: int = 3,
        dilations: list[int] | None = None,
        residual: bool = True,
        target_index: list[int] | None = None,
    ) -> None:
        shape = (n_features, n_targets, input_len, horizon)
        super().__init__(_positive_int("channels", channels), *shape, residual, target_index)
        if _positive_int("kernel", kernel) < 2:
            raise ModelError(f"hyperparameter 'kernel' must be >= 2 for a TCN, got {kernel}")
        if dilations is None:
            dilations = auto_dilations(input_len, kernel)
        if not isinstance(dilations, list | tuple) or not dilations:
            raise ModelError(
                f"hyperparameter 'dilations' must be a non-empty list, got {dilations!r}"
            )
        self.dilations = [_positive_int("dilations", d) for d in dilations]
        self.receptive_field = receptive_field(kernel, self.dilations)
        widths = [n_features] + [channels] * len(self.dilations)
        self.blocks = nn.Sequential(
            *(
                TemporalBlock(widths[i], widths[i + 1], kernel, d)
                for i, d in enumerate(self.dilations)
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(x.transpose(1, 2))
        return self._project(h[:, :, -1], x)
