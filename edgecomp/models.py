"""Forecasters: LSTM, GRU, TCN and a graph model (stgnn), one interface, built from a ModelSpec.

Every model maps scaled inputs ``x [batch, L, F]`` to scaled forecasts ``[batch, H, F_out]``. They
are written so that ``torch.onnx.export`` emits ops that ONNX Runtime quantizes per op type: native
``LSTM`` / ``GRU`` ops (``nn.LSTM`` / ``nn.GRU`` with ``batch_first=True``) and, for the TCN, plain
``Pad`` / ``Conv`` / ``Relu`` / ``Add``; every head is one ``Gemm`` on the last time step. The
graph forecaster adds ``MatMul`` against constant [N, N] adjacencies, ``Reshape`` / ``Transpose``.
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
    "GraphForecaster",
    "GraphTemporalLayer",
    "LSTMForecaster",
    "TCNForecaster",
    "TemporalBlock",
    "auto_dilations",
    "build_model",
    "complete_spec",
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
    if getattr(cls, "NEEDS_LAYOUT", False):
        hparams["layout"] = getattr(spec, "layout", None)
    return cls(
        n_features=spec.n_features,
        n_targets=len(spec.targets),
        input_len=spec.input_len,
        horizon=spec.horizon,
        target_index=spec.target_index,
        **hparams,
    )


def complete_spec(spec: ModelSpec) -> ModelSpec:
    """``spec`` ready to build: a graph architecture gains its node layout and graph (from
    its features, data and graph hyperparameters: ``edgecomp.graph.attach_layout``).

    Raises:
        GraphError: Bad coordinates or graph settings (names the file and node).
    """
    if not getattr(_model_class(spec.arch), "NEEDS_LAYOUT", False):
        return spec
    from edgecomp.graph import attach_layout

    return attach_layout(spec)


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


def _default_layout(n_features: int) -> dict[str, Any]:
    """Every feature a node with one channel, joined by an adaptive adjacency."""
    return {
        "nodes": [f"n{i}" for i in range(n_features)],
        "channels": ["value"],
        "index": [[i] for i in range(n_features)],
        "globals": [],
        "graph": {"adjacency": "adaptive"},
    }


def _graph_supports(layout: dict[str, Any], conv: str, order: int) -> list[torch.Tensor]:
    """The fixed (distance) supports of ``layout``'s graph: rebuilt from its recorded
    coordinates, kernel width and threshold; none for an adaptive-only graph."""
    from edgecomp.graph import distance_weights, supports

    graph = layout.get("graph") or {"adjacency": "adaptive"}
    if graph.get("adjacency") == "adaptive":
        return []
    if "coordinates" not in graph:
        raise ModelError("layout.graph: a distance adjacency needs its recorded coordinates")
    weights = distance_weights(layout)
    return [torch.tensor(m, dtype=torch.float32) for m in supports(weights, conv, order)]


class GraphTemporalLayer(nn.Module):
    """Gated dilated temporal convolution, then (optionally) a graph convolution, plus residual.

    ``t = tanh(conv_f(h)) * sigmoid(conv_g(h))`` with valid (unpadded) convolutions of kernel
    ``(1, k)`` and dilation ``(1, d)`` over [batch, channels, N, L]; the graph convolution mixes
    ``[t, t S_1, ..., t S_m]`` (each ``S`` an [N, N] support, applied over the node axis by one
    MatMul) with a 1x1 convolution; the output adds the last steps of ``h``.
    """

    def __init__(self, channels: int, kernel: int, dilation: int, n_supports: int) -> None:
        super().__init__()
        self.filter = nn.Conv2d(channels, channels, (1, kernel), dilation=(1, dilation))
        self.gate = nn.Conv2d(channels, channels, (1, kernel), dilation=(1, dilation))
        self.n_supports = n_supports
        self.crop = (kernel - 1) * dilation  # steps the valid convolution drops
        self.mix = nn.Conv2d(channels * (1 + n_supports), channels, 1)

    def forward(self, h: torch.Tensor, supports: list[torch.Tensor]) -> torch.Tensor:
        t = torch.tanh(self.filter(h)) * torch.sigmoid(self.gate(h))
        if self.n_supports:
            steps = t.shape[-1]
            # [B, C * L', N] @ S^T: node mixing as a linear map over the node axis (ONNX MatMul
            # with a constant, TFLite FULLY_CONNECTED: no broadcast of S over the batch)
            over_nodes = t.transpose(2, 3).flatten(1, 2)
            spread = [F.linear(over_nodes, s) for s in supports]
            mixed = torch.cat([over_nodes, *spread], dim=1)  # blocks [t, t S_1^T, ...]
            t = mixed.unflatten(1, (-1, steps)).transpose(2, 3)
        out = self.mix(t)
        return out + h[:, :, :, self.crop :]


@register_model("stgnn")
class GraphForecaster(_Forecaster):
    """Spatio-temporal graph forecaster (Graph WaveNet style) with dense graph convolutions.

    The input [batch, L, F] is read as [batch, L, N, C] through the spec's node layout (global
    features are broadcast to every node); gated dilated temporal convolutions alternate with
    graph convolutions (diffusion or Chebyshev, order K) over a distance adjacency, an adaptive
    one learned from node embeddings (frozen into a constant in eval mode), or both. The head
    reads the last step of every node (a 1x1 convolution shared by the nodes). Only Conv, MatMul,
    Reshape/Transpose and elementwise ops: every target exports it.

    Hparams: channels (16), kernel (2), dilations (None: 1, 2, 4, ... until the receptive field
    covers L), order K (2), graph_conv ("diffusion" or "chebyshev"), graph_layers (None: a graph
    convolution after every temporal layer; g: after the last g only), embed_dim (8, adaptive
    adjacency), residual (True: forecast the change from the last value), seasonal_residual
    (None, or a period P in steps, H <= P <= L: the change from the value P steps earlier, the
    seasonal naive forecast), zero_head (False; True: the head starts at zero, so training starts
    from the residual forecast), highway (False; True: the residual base becomes a learned linear
    map from each target's L input values to its H forecasts, shared by the nodes and started at
    the residual forecast, e.g. a blend of the last weeks), node_bias (False; True: a learned
    per-node offset of the hidden channels), dropout (0.0: on the hidden channels while training);
    graph construction (read by ``edgecomp.graph.attach_layout``):
    adjacency ("auto", "distance", "adaptive", "both"), coordinates (CSV path), sigma_km,
    threshold (0.1), globals (feature names broadcast to all nodes).
    """

    NEEDS_LAYOUT: ClassVar[bool] = True
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "channels": 16,
        "kernel": 2,
        "dilations": None,
        "order": 2,
        "graph_conv": "diffusion",
        "graph_layers": None,
        "embed_dim": 8,
        "residual": True,
        "seasonal_residual": None,
        "zero_head": False,
        "highway": False,
        "node_bias": False,
        "dropout": 0.0,
        "adjacency": "auto",
        "coordinates": None,
        "sigma_km": None,
        "threshold": 0.1,
        "globals": [],
    }

    def __init__(
        self,
        n_features: int,
        n_targets: int,
        input_len: int,
        horizon: int,
        *,
        layout: dict[str, Any] | None = None,
        channels: int = 16,
        kernel: int = 2,
        dilations: list[int] | None = None,
        order: int = 2,
        graph_conv: str = "diffusion",
        graph_layers: int | None = None,
        embed_dim: int = 8,
        residual: bool = True,
        seasonal_residual: int | None = None,
        zero_head: bool = False,
        highway: bool = False,
        node_bias: bool = False,
        dropout: float = 0.0,
        target_index: list[int] | None = None,
        **graph_hparams: Any,
    ) -> None:
        shape = (n_features, n_targets, input_len, horizon)
        super().__init__(1, *shape, residual, target_index)
        unknown = sorted(
            set(graph_hparams) - {"adjacency", "coordinates", "sigma_km", "threshold", "globals"}
        )
        if unknown:
            raise ModelError(f"unknown hyperparameter(s) {unknown} for architecture 'stgnn'")
        if graph_conv not in ("diffusion", "chebyshev"):
            raise ModelError(
                f"hyperparameter 'graph_conv' must be 'diffusion' or 'chebyshev', "
                f"got {graph_conv!r}"
            )
        self.channels = _positive_int("channels", channels)
        self.seasonal = _season(seasonal_residual, input_len, horizon) if residual else None
        self._read_layout(layout or _default_layout(n_features), n_features)
        self._build_graph(
            graph_conv, _positive_int("order", order), _positive_int("embed_dim", embed_dim)
        )
        self._build_layers(kernel, dilations, graph_layers)
        self.head = _NodeHead(channels, horizon, len(self.out_channels), self.n_nodes)
        if zero_head is True:  # untrained, the model is its residual forecast (naive)
            nn.init.zeros_(self.head.proj.weight)
            nn.init.zeros_(self.head.proj.bias)
        elif zero_head is not False:
            raise ModelError(f"hyperparameter 'zero_head' must be true or false, got {zero_head!r}")
        self.drop = nn.Dropout(_fraction("dropout", dropout))
        self._build_base(_flag("highway", highway), _flag("node_bias", node_bias))

    def _build_base(self, highway: bool, node_bias: bool) -> None:
        """The learned residual base (highway) and the per-node offset, when asked for."""
        self.highway = None
        if highway:  # [.., L] -> [.., H]: one Linear over time, started at the residual forecast
            self.highway = nn.Linear(self.input_len, self.horizon)
            weight = torch.zeros(self.horizon, self.input_len)
            if self.residual:
                start = self.input_len - (self.seasonal or 1)
                for h in range(self.horizon):
                    weight[h, start + (h if self.seasonal else 0)] = 1.0
            with torch.no_grad():
                self.highway.weight.copy_(weight)
                self.highway.bias.zero_()
        self.node_bias = None
        if node_bias:
            self.node_bias = nn.Parameter(torch.zeros(1, self.channels, self.n_nodes, 1))

    def _read_layout(self, layout: dict[str, Any], n_features: int) -> None:
        from edgecomp.graph import check_layout, target_channels

        try:
            check_layout(layout, n_features)
            self.out_channels, select = target_channels(layout, self.target_index.tolist())
        except ValueError as exc:
            raise ModelError(f"stgnn: {exc}") from None
        self.n_nodes, self.n_channels = len(layout["nodes"]), len(layout["channels"])
        flat = [i for row in layout["index"] for i in row]
        self._contiguous = flat == list(range(len(flat)))
        self.register_buffer("node_index", torch.tensor(flat), persistent=False)
        self.register_buffer(
            "global_index", torch.tensor(layout["globals"], dtype=torch.long), persistent=False
        )
        self.n_globals = len(layout["globals"])
        self.register_buffer("node_ones", torch.ones(1, 1, self.n_nodes, 1), persistent=False)
        self._select = select
        if select is not None:
            self.register_buffer("select", torch.tensor(select), persistent=False)
        self.graph_kind = (layout.get("graph") or {}).get("adjacency", "adaptive")
        self.layout = layout

    def _build_graph(self, conv: str, order: int, embed_dim: int) -> None:
        fixed = _graph_supports(self.layout, conv, order)
        for i, s in enumerate(fixed):
            self.register_buffer(f"support{i}", s)
        self.n_fixed = len(fixed)
        self.order, self.graph_conv = order, conv
        self.adaptive = self.graph_kind in ("adaptive", "both")
        n_adaptive = order if self.adaptive else 0
        if self.adaptive:
            self.source_embed = nn.Parameter(torch.randn(self.n_nodes, embed_dim) * 0.1)
            self.target_embed = nn.Parameter(torch.randn(embed_dim, self.n_nodes) * 0.1)
            for k in range(n_adaptive):  # one buffer each: an initializer each in an export
                zeros = torch.zeros(self.n_nodes, self.n_nodes)
                self.register_buffer(f"frozen{k}", zeros)  # persistent: an initializer
            self.register_load_state_dict_post_hook(lambda module, _keys: module._freeze())
        self.n_supports = self.n_fixed + n_adaptive

    def _build_layers(
        self, kernel: int, dilations: list[int] | None, graph_layers: int | None
    ) -> None:
        if _positive_int("kernel", kernel) < 2:
            raise ModelError(f"hyperparameter 'kernel' must be >= 2 for stgnn, got {kernel}")
        if dilations is None:
            dilations = [1]
            while 1 + (kernel - 1) * sum(dilations) < self.input_len:
                dilations.append(dilations[-1] * 2)
        if not isinstance(dilations, list | tuple) or not dilations:
            raise ModelError(
                f"hyperparameter 'dilations' must be a non-empty list, got {dilations!r}"
            )
        self.dilations = [_positive_int("dilations", d) for d in dilations]
        self.receptive_field = 1 + (kernel - 1) * sum(self.dilations)
        n = len(self.dilations)
        g = n if graph_layers is None else _positive_int("graph_layers", graph_layers)
        if g > n:
            raise ModelError(
                f"hyperparameter 'graph_layers' must be at most {n} (the layers), got {g}"
            )
        c_in = self.n_channels + self.n_globals
        self.inp = nn.Conv2d(c_in, self.channels, 1)
        self.layers = nn.ModuleList(
            GraphTemporalLayer(self.channels, kernel, d, self.n_supports if i >= n - g else 0)
            for i, d in enumerate(self.dilations)
        )

    def _freeze(self) -> None:
        """Compute the adaptive supports into the ``frozen{k}`` buffers (eval mode reads them)."""
        with torch.no_grad():
            for k, a in enumerate(self.adaptive_supports()):
                getattr(self, f"frozen{k}").copy_(a)

    def train(self, mode: bool = True) -> GraphForecaster:
        super().train(mode)
        if getattr(self, "adaptive", False) and not mode:
            self._freeze()
        return self

    def adaptive_supports(self) -> list[torch.Tensor]:
        """Powers 1..K of the learned adjacency ``softmax(relu(E1 E2))`` (row-stochastic)."""
        a = torch.softmax(torch.relu(self.source_embed @ self.target_embed), dim=1)
        out = [a]
        for _ in range(self.order - 1):
            out.append(out[-1] @ a)
        return out

    def supports(self) -> list[torch.Tensor]:
        """Every support matrix, fixed then adaptive. In eval mode the adaptive ones come from
        the ``frozen{k}`` buffers, filled by ``eval()`` and by loading a state dict, so an export
        sees a constant adjacency (NOTE: weights changed in eval mode need ``eval()`` again)."""
        fixed = [getattr(self, f"support{i}") for i in range(self.n_fixed)]
        if not self.adaptive:
            return fixed
        if self.training:
            return fixed + self.adaptive_supports()
        return fixed + [getattr(self, f"frozen{k}") for k in range(self.order)]

    def adjacency(self) -> torch.Tensor:
        """The first-order adjacency used (fixed transition or learned), [N, N], for plots."""
        if self.n_fixed:
            return self.support0.detach()
        with torch.no_grad():
            return self.adaptive_supports()[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = self.n_nodes, self.n_channels
        nodes = x[:, :, : n * c] if self._contiguous else x[:, :, self.node_index]
        h = nodes.reshape(-1, self.input_len, n, c)
        if self.n_globals:  # to every node by a broadcast Mul (no BROADCAST_TO op for TFLite)
            shared = x[:, :, self.global_index].unsqueeze(2) * self.node_ones
            h = torch.cat([h, shared], dim=3)
        h = h.permute(0, 3, 2, 1)  # [B, C, N, L]
        if self.receptive_field > self.input_len:
            h = F.pad(h, (self.receptive_field - self.input_len, 0))
        elif self.receptive_field < self.input_len:
            h = h[:, :, :, -self.receptive_field :]
        h = self.inp(h)
        if self.node_bias is not None:
            h = h + self.node_bias
        supports = self.supports()
        for layer in self.layers:
            h = layer(self.drop(h), supports)
        y = self.head(self.drop(h[:, :, :, -1]))
        if self._select is not None:
            y = y.reshape(-1, self.horizon, n * len(self.out_channels))[:, :, self.select]
        return self._project_flat(y, x)

    def _project_flat(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        y = y.reshape(-1, self.horizon, self.n_targets)
        if self.highway is not None:  # [B, L, T] -> [B, T, L] -> [B, T, H] -> [B, H, T]
            inputs = x if self._all_features else x[:, :, self.target_index]
            return y + self.highway(inputs.transpose(1, 2)).transpose(1, 2)
        if not self.residual:
            return y
        steps = slice(-1, None)
        if self.seasonal:  # the same steps one season earlier: seasonal naive as the start
            start = self.input_len - self.seasonal
            steps = slice(start, start + self.horizon)
        previous = x[:, steps, :] if self._all_features else x[:, steps, self.target_index]
        return y + previous


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ModelError(f"hyperparameter '{name}' must be true or false, got {value!r}")
    return value


def _season(period: Any, input_len: int, horizon: int) -> int | None:
    if period is None:
        return None
    _positive_int("seasonal_residual", period)
    if not horizon <= period <= input_len:
        raise ModelError(
            f"hyperparameter 'seasonal_residual' must be between the horizon ({horizon}) and "
            f"the input length ({input_len}), got {period}"
        )
    return period


class _NodeHead(nn.Module):
    """[B, C, N] -> [B, H * N * C_out], node major per step: one 1x1 conv shared by the nodes."""

    def __init__(self, channels: int, horizon: int, out_channels: int, n_nodes: int) -> None:
        super().__init__()
        self.horizon, self.out_channels, self.n_nodes = horizon, out_channels, n_nodes
        self.proj = nn.Conv1d(channels, horizon * out_channels, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        y = self.proj(h).reshape(-1, self.horizon, self.out_channels, self.n_nodes)
        return y.transpose(2, 3).reshape(-1, self.horizon * self.n_nodes * self.out_channels)
