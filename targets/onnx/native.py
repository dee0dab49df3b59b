"""The x86 target's ``native`` lowering: an LSTM/GRU forecaster for the runtime's native engine.

``edgecomp_runtime.native`` runs a stacked LSTM/GRU with a Linear head (and the residual on the
last observed targets) in one C kernel, with int8 weights (one scale per output row) and int8
activations quantized per step, without ONNX Runtime's per-op overhead. This lowering writes the
forecaster's weights as its ``.native`` file (``edgecomp_runtime.native.pack`` quantizes them) next
to the default lowering's ONNX model file, which stays the model file: ONNX Runtime runs it where
the native kernel was not built (``recipe.lowering.equivalent_engines``, recorded by
``candidates.py`` only where that file passed parity on ONNX Runtime).

It applies to edgecomp's LSTM and GRU forecasters (``edgecomp.models``: one-direction,
batch-first, with biases, no projection; pruned hidden sizes included) at fp32 and int8, whose
ONNX graph reads the window [batch, L, F] and writes the forecast [batch, H, n_targets]: the native
engine reads exactly what the ONNX file reads. At int8 each recurrent layer and the head are int8
unless option ``keep_float`` keeps them float (names, ``input`` / ``output``, as for the default
lowering; the ladder's mixed rung sets it), and the weights are those of the model the request
carries (fine-tuned or QAT-tuned included). Where the packed file would miss the candidates'
parity limit, layer 0's input projection and then whole layers go float (``_fit``), recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from torch import nn

    from edgecomp.targets.base import Lowered, Request

__all__ = [
    "ENGINE",
    "NATIVE_FILE",
    "applies",
    "available",
    "layer_plan",
    "native_lowering",
    "unavailable_reason",
]

ENGINE = "native"  # the runtime's engine key (edgecomp_runtime.engines.ENGINES)
NATIVE_FILE = "model.native"
RECURRENT_OPS = ("LSTM", "GRU")
METHOD = (
    "native engine (edgecomp_runtime.native): int8 weights with one scale per output row, "
    "activations quantized per step and row at run time; gates in float32"
)


def applies(module_type: type, precision: str) -> bool:
    """Whether the lowering applies to a forecaster class at ``precision``: an edgecomp LSTM/GRU
    forecaster at fp32 or int8 (``candidates.applicable_lowerings`` asks)."""
    from edgecomp.models import _RecurrentForecaster

    return issubclass(module_type, _RecurrentForecaster) and precision in ("fp32", "int8")


def available() -> bool:
    """Whether the native engine runs on this host (``candidates.applicable_lowerings`` asks)."""
    return not unavailable_reason()


def unavailable_reason() -> str:
    """Why the native engine cannot run on this host, or "" when it can."""
    from edgecomp_runtime.engines import get_engine
    from edgecomp_runtime.errors import EngineUnavailableError

    try:
        from edgecomp_runtime import native
    except ImportError as exc:
        return f"this edgecomp-runtime has no native kernel ({exc})"
    if not native.available():
        return native.unavailable_reason() or "the native kernel was not built on this host"
    try:
        get_engine(ENGINE)
    except EngineUnavailableError as exc:
        return str(exc)
    return ""


def native_lowering(request: Request, fp32: Lowered, default: Lowered) -> Lowered | None:
    """The native lowering at the request's precision, for ``candidates.py``: the default
    lowering's artifact (its ONNX model file, io and layer records, each with the precision the
    native engine computes it in) plus the ``.native`` file; None where it does not apply.

    Args:
        request: The emit request: model, precision, options (``keep_float``).
        fp32: The default lowering at fp32; its ``ir`` is the exported graph (layer names).
        default: The default lowering at the request's precision (its model file ships).

    Returns:
        A ``targets.base.Lowered`` with ``extra_files`` {``NATIVE_FILE``: bytes} and
        ``lowering.engine_files`` {"native": ``NATIVE_FILE``}, or None.

    Raises:
        ValueError: ``edgecomp_runtime.native.pack`` refused the weights (naming the layer).
    """
    from edgecomp_runtime import native

    module, spec = request.model.module, request.model.spec
    precision = str(request.precision)
    rnn = _rnn(module) if applies(type(module), precision) else None
    if rnn is None or not _same_io(default.io, spec, module):
        return None
    names = _layer_names(fp32.ir, module)
    _check_finite(module, names)
    reasons = _reasons(request, fp32.ir, module)
    pack = _packer(module, spec)
    plan, window, fit = _fit(request, default, pack, layer_plan(request, fp32.ir, module))
    reasons |= {names[i]: fit["reason"] for i in fit.get("kept_float", ())}
    if window and plan[0] == "int8":  # the rest of layer 0 int8
        reasons[names[0]] = f"input projection {fit['reason'].replace('kept', 'computed in')}"
    data = pack(plan, window)
    header = native.describe(data)
    lowering = {
        **default.lowering,
        "engine_files": {ENGINE: NATIVE_FILE},
        "native": {
            "file": NATIVE_FILE,
            "bytes": len(data),
            "cell": header.get("cell"),
            "layers": dict(zip(names, plan, strict=True)),
            "input_projection": window or plan[0],  # layer 0's: the window's features -> gates
            "method": METHOD if "int8" in plan else "float32",
            "format_version": header.get("version"),
            **(
                {"parity_fit": {**fit, "kept_float": [names[i] for i in fit["kept_float"]]}}
                if fit
                else {}
            ),
        },
    }
    return replace(
        default,
        layers=_records(default.layers, names, plan, reasons),
        lowering=lowering,
        extra_files={**default.extra_files, NATIVE_FILE: data},
    )


def _check_finite(module: nn.Module, names: list[str]) -> None:
    """Refuse non-finite weights naming the manifest's layer (pack would name its own index)."""
    rnn = module.rnn
    owners = [(names[k], f"{p}_l{k}") for k in range(rnn.num_layers) for p in _RNN_PARAMS]
    owners += [(names[-1], "weight"), (names[-1], "bias")]
    for layer, param in owners:
        tensor = getattr(module.head if layer == names[-1] else rnn, param)
        if not np.isfinite(_array(tensor)).all():
            raise ValueError(f"native: layer {layer} ({param}) holds NaN or infinite weights")


_RNN_PARAMS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def _packer(module: nn.Module, spec: Any) -> Callable[..., bytes]:
    """(plan, layer 0's input-projection precision or None) -> the ``.native`` file of ``module``
    with that precision per layer (then the head)."""
    from edgecomp_runtime import native

    rnn = module.rnn
    weights = _layer_weights(rnn)
    head = _array(module.head.weight), _array(module.head.bias)

    def pack(plan: list[str], window: str | None = None) -> bytes:
        return native.pack(
            "lstm" if _is_lstm(rnn) else "gru",
            weights,
            *head,
            input_len=spec.input_len,
            n_features=spec.n_features,
            target_index=[int(i) for i in module.target_index.tolist()],
            residual=bool(module.residual),
            precision=plan[0] if len(set(plan)) == 1 else plan,
            input_precision=window,
        )

    return pack


def _fit(
    request: Request, default: Lowered, pack: Callable[..., bytes], plan: list[str]
) -> tuple[list[str], str | None, dict[str, Any]]:
    """``plan`` and layer 0's input-projection precision (None: the layer's), made more precise
    while the native file errs more than the candidates' parity limit would allow
    (``PARITY_SLACK`` times the default int8 ONNX file's error on ONNX Runtime, on the same parity
    windows, as ``candidates.py`` measures): first that input projection in float (the window's
    one int8 scale per step spans every feature), then int8 layers turned float one at a time,
    the one whose float form errs least first. Returns (plan, input precision, record: {} when
    nothing changed)."""
    from edgecomp.frontend import reference_predict
    from edgecomp.targets import base

    from .candidates import PARITY_SLACK
    from .export import ort_runner

    if "int8" not in plan or not available():
        return plan, None, {}
    import onnx

    x = base.parity_windows(request.windows, request.model.spec)
    reference = reference_predict(request.model, x)
    onnx_error = _error(ort_runner(onnx.load_from_string(default.model)), x, reference)
    limit = max(base.FP32_TOLERANCE, PARITY_SLACK * onnx_error)
    error = first = _error(_engine(pack(plan)), x, reference)
    window, kept = None, []
    if error > limit and plan[0] == "int8":
        window, error = "fp32", _error(_engine(pack(plan, "fp32")), x, reference)
    while error > limit and "int8" in plan:
        tries = {
            i: _error(_engine(pack([*plan[:i], "fp32", *plan[i + 1 :]], window)), x, reference)
            for i, p in enumerate(plan)
            if p == "int8"
        }
        best = min(tries, key=tries.__getitem__)
        plan, error = [*plan[:best], "fp32", *plan[best + 1 :]], tries[best]
        kept.append(best)
    if window is None:
        return plan, None, {}
    reason = (
        f"kept float by the native lowering: with the planned layers int8 its max |error| on the "
        f"parity windows was {first:.3g}, over the limit {limit:.3g} ({PARITY_SLACK} x the "
        "default int8 ONNX file's on ONNX Runtime)"
    )
    record = {"limit": limit, "planned_max_abs_diff": first, "max_abs_diff": error}
    return (
        plan,
        window,
        {**record, "input_projection": window, "kept_float": kept, "reason": reason},
    )


def _engine(data: bytes) -> Any:
    from edgecomp_runtime.engines.native import NativeEngine

    return NativeEngine(data, {}, threads=1)


def _error(runner: Any, x: np.ndarray, reference: np.ndarray) -> float:
    """Largest difference from ``reference``, run as the candidates' parity check runs it."""
    run = runner.run if hasattr(runner, "run") else runner
    out = np.concatenate([run(x[:1]), run(x)[1:]])
    return float(np.abs(out - reference).max())


def layer_plan(request: Request, exported: Any, module: nn.Module) -> list[str]:
    """The precision per recurrent layer, then the head ("fp32" / "int8"): int8 at int8 unless
    ``keep_float`` keeps the layer (its name, a pattern, its op type, or "input" / "output")."""
    names = _layer_names(exported, module)
    if str(request.precision) != "int8":
        return ["fp32"] * len(names)
    kept = set(_reasons(request, exported, module))
    return ["fp32" if name in kept else "int8" for name in names]


def _reasons(request: Request, exported: Any, module: nn.Module) -> dict[str, str]:
    """Layer name -> why ``keep_float`` keeps it float (int8 builds only)."""
    from .keep import kept_nodes
    from .layers import layer_names
    from .quantize import keep_float_entries

    if str(request.precision) != "int8":
        return {}
    entries = keep_float_entries(request.options.to_dict())
    kept = kept_nodes(exported, module, entries, with_edges=True)
    names = layer_names(exported, module)
    return {names[node]: why for node, why in kept.items() if node in names}


def _layer_names(exported: Any, module: nn.Module) -> list[str]:
    """The manifest's names of the recurrent layers in order, then the head's."""
    from .layers import layer_names

    names = layer_names(exported, module)
    ops = {node.name: node.op_type for node in exported.graph.node}
    recurrent = [name for node, name in names.items() if ops.get(node) in RECURRENT_OPS]
    if len(recurrent) != module.rnn.num_layers or "head" not in names.values():
        raise ValueError(
            f"native: the exported graph names {sorted(names.values())}, expected "
            f"{module.rnn.num_layers} recurrent layers and 'head'"
        )
    return [*recurrent, "head"]


def _records(
    layers: list[dict[str, Any]], names: list[str], plan: list[str], kept: dict[str, str]
) -> list[dict[str, Any]]:
    """The default lowering's layer records (they describe its ONNX model file, which the
    fallback engine runs), each recurrent layer and the head with ``native``: the precision the
    native engine computes it in, and ``native_reason`` where that is float at int8."""
    precision = dict(zip(names, plan, strict=True))
    out = []
    for record in layers:
        name = record["name"]
        if name not in precision:
            out.append(record)
            continue
        why = {"native_reason": kept[name]} if name in kept else {}
        out.append({**record, "native": precision[name], **why})
    return out


def _rnn(module: nn.Module) -> nn.RNNBase | None:
    """The forecaster's LSTM/GRU when the native kernel computes it, else None."""
    from torch import nn

    rnn = getattr(module, "rnn", None)
    if type(rnn) not in (nn.LSTM, nn.GRU):
        return None
    if rnn.bidirectional or getattr(rnn, "proj_size", 0) or not rnn.bias or not rnn.batch_first:
        return None
    return rnn


def _is_lstm(rnn: nn.RNNBase) -> bool:
    from torch import nn

    return isinstance(rnn, nn.LSTM)


def _same_io(io: dict[str, Any], spec: Any, module: nn.Module) -> bool:
    """Whether the ONNX file reads one float32 window [batch, L, F] and writes one forecast
    [batch, H, n_targets]: what the native engine reads and writes."""
    inputs, outputs = io.get("inputs", []), io.get("outputs", [])
    if len(inputs) != 1 or len(outputs) != 1:
        return False
    x, y = inputs[0], outputs[0]
    float32 = x.get("dtype") == y.get("dtype") == "float32"
    window = list(x.get("shape", []))[1:] == [spec.input_len, spec.n_features]
    forecast = list(y.get("shape", []))[1:] == [module.horizon, module.n_targets]
    return float32 and window and forecast and module.n_features == spec.n_features


def _layer_weights(rnn: nn.RNNBase) -> list[dict[str, np.ndarray]]:
    return [
        {
            key: _array(getattr(rnn, f"{name}_l{k}"))
            for key, name in (
                ("w_ih", "weight_ih"),
                ("w_hh", "weight_hh"),
                ("b_ih", "bias_ih"),
                ("b_hh", "bias_hh"),
            )
        }
        for k in range(rnn.num_layers)
    ]


def _array(tensor: Any) -> np.ndarray:
    return tensor.detach().cpu().float().numpy().copy()
