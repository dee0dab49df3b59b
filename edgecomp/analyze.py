"""Per-layer sensitivity by horizon: quantize one layer at a time with the target's own scheme.

Every measurement is a real compile for the target (``pipeline.compile_artifact``) run through
the runtime's engine on validation windows; a layer's cost is the per-horizon MAE increase over
the same target's all-float artifact. Target-independent: layers stay in float through the
generic lowering option ``keep_float`` (a list of layer names) that each backend honours.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgecomp._io import atomic_write_bytes, atomic_write_text
from edgecomp.data import Dataset
from edgecomp.pipeline import BuildConfig, BuildError, compile_artifact
from edgecomp.spec import Model

__all__ = [
    "Measurement",
    "Sensitivity",
    "analyze",
    "measure",
    "heatmap_png",
    "relative_increase",
    "sensitivity_table",
]

Log = Callable[[str], None]


@dataclass(frozen=True)
class Measurement:
    """One compile measured on the analysis split.

    Attributes:
        kept_float: Layers left in float.
        kept_int8: Layers of an int4 build quantized as int8 instead (option ``keep_int8``).
        mae: Per-horizon MAE in raw units (averaged over targets).
        size_bytes: Sum of the artifact's file sizes.
        precisions: Layer name -> precision the target gave it.
        op_types: Layer name -> op type.
        stored: Layers that compute in float from weights stored quantized (e.g. an x86 GRU's
            int8 storage): keeping them float is a choice the mixed plan can make.
    """

    kept_float: list[str]
    mae: list[float]
    size_bytes: int
    precisions: dict[str, str]
    op_types: dict[str, str]
    stored: tuple[str, ...] = ()
    kept_int8: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Sensitivity:
    """What quantizing each layer alone costs, per horizon step.

    Attributes:
        target: Target profile name.
        precision: The scheme each layer was quantized with ("int4", "int8").
        split: Windows measured on.
        layers: Layer names in graph order, with their op types.
        float_mae: Per-horizon MAE of the all-float artifact (the reference).
        layer_mae: Layer -> per-horizon MAE with only that layer quantized.
        quantizable: Layers the target actually quantizes at ``precision``.
        all_mae: Per-horizon MAE with every layer quantized.
        sizes: "float", "all" and each layer -> artifact bytes.
    """

    target: str
    precision: str
    split: str
    layers: dict[str, str]
    float_mae: list[float]
    layer_mae: dict[str, list[float]]
    quantizable: list[str]
    all_mae: list[float]
    sizes: dict[str, int] = field(default_factory=dict)

    def increase(self, layer: str) -> list[float]:
        """Relative MAE increase per horizon step (0.01 = +1 %) of quantizing ``layer`` alone."""
        return relative_increase(self.layer_mae[layer], self.float_mae)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, with the relative increases."""
        return {
            **asdict(self),
            "increase": {name: self.increase(name) for name in self.layer_mae},
            "all_increase": relative_increase(self.all_mae, self.float_mae),
        }

    def write(self, path: str | Path) -> Path:
        """Write ``to_dict()`` as JSON (atomically)."""
        return atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2))


def measure(
    model: Model,
    dataset: Dataset,
    config: BuildConfig,
    kept_float: list[str],
    kept_int8: list[str] | None = None,
) -> Measurement:
    """Compile with ``kept_float`` added to the target's ``keep_float`` (and ``kept_int8`` to
    its ``keep_int8``: int4 builds) and measure it."""
    keep = [*config.options.get("keep_float", ()), *kept_float]
    options = {**config.options, "keep_float": keep}
    if kept_int8:
        options["keep_int8"] = [*config.options.get("keep_int8", ()), *kept_int8]
    manifest, files = compile_artifact(model, dataset, replace(config, options=options))
    return Measurement(
        kept_float=list(kept_float),
        kept_int8=list(kept_int8 or ()),
        mae=[float(v) for v in manifest["metrics"]["artifact"]["mae"]],
        size_bytes=sum(len(data) for data in files.values()),
        precisions={layer["name"]: layer["precision"] for layer in manifest["layers"]},
        op_types={layer["name"]: layer["op_type"] for layer in manifest["layers"]},
        stored=tuple(
            layer["name"]
            for layer in manifest["layers"]
            if str(layer.get("method") or "").endswith("-storage")
        ),
    )


def analyze(
    model: Model,
    dataset: Dataset,
    *,
    target: str = "x86-64-avx2",
    precision: str = "int4",
    split: str = "val",
    options: dict[str, Any] | None = None,
    calibration_windows: int = 256,
    log: Log | None = None,
) -> Sensitivity:
    """Quantize each layer alone at ``precision`` for ``target``; measure per-horizon MAE.

    Raises:
        BuildError, TargetError: The target cannot build the model, or ``precision`` is "fp32".
    """
    if precision == "fp32":
        raise BuildError("sensitivity analysis needs a quantized precision (int8, int4), not fp32")
    _check_keeps_layers(BuildConfig(target=target, precision=precision, options=options or {}))
    base = BuildConfig(
        target=target,
        precision=precision,
        calibration_windows=calibration_windows,
        eval_split=split,
        options=dict(options or {}),
    )
    say = log or (lambda _: None)
    everything = measure(model, dataset, base, [])  # first: a target refusing ``precision``
    floats = {k: v for k, v in base.options.items() if k != "keep_int8"}  # int4 builds only
    reference = measure(model, dataset, replace(base, precision="fp32", options=floats), [])
    # the quantized build's layer names: a target may merge float layers in its records (the
    # ARM loop records one fp32 "rnn" but quantized "rnn[0]", "rnn[1..3]")
    names = list(everything.precisions)
    layer_mae, sizes = {}, {"float": reference.size_bytes, "all": everything.size_bytes}
    quantizable = [n for n in names if everything.precisions[n] != "fp32" or n in everything.stored]
    for name in quantizable:
        alone = measure(model, dataset, base, [n for n in names if n != name])
        layer_mae[name], sizes[name] = alone.mae, alone.size_bytes
        worst = max(relative_increase(alone.mae, reference.mae))
        say(f"{name}: quantized alone, worst horizon {worst * 100:+.2f} % MAE")
    return Sensitivity(
        target=target,
        precision=precision,
        split=split,
        layers=everything.op_types,
        float_mae=reference.mae,
        layer_mae=layer_mae,
        quantizable=quantizable,
        all_mae=everything.mae,
        sizes=sizes,
    )


def _check_keeps_layers(config: BuildConfig) -> None:
    """The request is valid for the target, whose backend must keep single layers in float."""
    from edgecomp.config import resolve_target
    from edgecomp.targets import TARGETS, get_target

    profile, target, _ = resolve_target(config)
    if not target.capabilities.keeps_layers:
        able = [name for name in TARGETS if get_target(name).capabilities.keeps_layers]
        raise BuildError(
            f"target '{profile.name}' (backend '{profile.backend}') cannot keep single layers in "
            f"float, which per-layer sensitivity needs. Backends that can: {able}"
        )


def sensitivity_table(sens: Sensitivity | dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Columns and rows (layer x horizon, % MAE increase) for Markdown, HTML or rich."""
    data = sens.to_dict() if isinstance(sens, Sensitivity) else sens
    horizon = len(data["float_mae"])
    columns = ["layer", "op", *(f"h{h + 1}" for h in range(horizon)), "worst"]
    rows = []
    for name, op in data["layers"].items():
        if name not in data["increase"]:
            rows.append([name, op, *(["not quantized"] + [""] * horizon)])
            continue
        values = data["increase"][name]
        rows.append(
            [name, op, *(f"{v * 100:+.2f} %" for v in values), f"{max(values) * 100:+.2f} %"]
        )
    all_values = data["all_increase"]
    rows.append(
        [
            "(all layers)",
            "",
            *(f"{v * 100:+.2f} %" for v in all_values),
            f"{max(all_values) * 100:+.2f} %",
        ]
    )
    return columns, rows


def heatmap_png(sens: Sensitivity | dict[str, Any], path: str | Path | None = None) -> bytes:
    """A layer x horizon heat map of the relative MAE increase, as PNG bytes (also written to
    ``path`` when given)."""
    import matplotlib

    matplotlib.use("Agg")
    import io

    import matplotlib.pyplot as plt

    data = sens.to_dict() if isinstance(sens, Sensitivity) else sens
    names = list(data["increase"])
    grid = np.array([data["increase"][n] for n in names]) * 100 if names else np.zeros((0, 1))
    fig, ax = plt.subplots(figsize=(1.2 + 0.6 * grid.shape[1], 1.0 + 0.35 * max(len(names), 1)))
    image = ax.imshow(grid, cmap="Reds", aspect="auto", vmin=0)
    ax.set_xticks(range(grid.shape[1]), [f"h{h + 1}" for h in range(grid.shape[1])])
    ax.set_yticks(range(len(names)), names)
    ax.set_title(f"{data['precision']} per layer: MAE increase on {data['split']} (%)")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    if path is not None:
        atomic_write_bytes(Path(path), buffer.getvalue())
    return buffer.getvalue()


def relative_increase(values: list[float], reference: list[float]) -> list[float]:
    return [float(v / r - 1) if r > 0 else 0.0 for v, r in zip(values, reference, strict=True)]
