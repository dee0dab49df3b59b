"""ModelSpec: what travels with a model from training to the gateway.

The spec says how raw sensor values become model inputs (feature order, imputation, scaling) and
how model outputs become forecasts in raw units (target order, horizon). The artifact's manifest
carries it as a plain dict under ``"spec"``; the runtime reads that dict without importing this
module.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SPEC_VERSION = 1

DEFAULT_IMPUTATION: dict[str, Any] = {
    "interpolate_limit": 4,  # linear interpolation along time fills at most this many steps per gap
    "then": "ffill",  # what remains is forward filled (leading gaps: back filled)
    "max_missing_fraction": 0.5,  # a window column missing more than this is refused by the runtime
}


class SpecError(ValueError):
    """A ModelSpec (or its JSON) is invalid; the message names the field."""


@dataclass(frozen=True)
class ModelSpec:
    """Shapes and preprocessing of a forecaster: [batch, input_len, F] -> [batch, horizon, F_out].

    Attributes:
        arch: Registered architecture name ("lstm", "gru", "tcn") or "external".
        hparams: Architecture hyperparameters (hidden size, layers, ...).
        input_len: Input window length L in steps.
        horizon: Forecast horizon H in steps.
        features: Input feature names, in model order (F).
        targets: Forecast target names, each one of ``features`` (F_out).
        scaler: ``{"kind": "standard", "mean": [F], "std": [F]}`` fitted on the training split.
        imputation: Missing-value policy, see ``DEFAULT_IMPUTATION``.
        period_s: Sampling period in seconds, or None when unknown.
        seasonal_period: Steps per day when known (for the seasonal naive baseline), else None.
        data: Where the spec came from: source file, split fractions, stride.
        layout: None, or the node layout of the features (nodes, channels, feature index of each
            (node, channel), global features, how the graph was built): ``edgecomp.graph``.
        output_floor: None, or per target the lowest forecast allowed (a number, or None for no
            bound): the runtime clamps forecasts to it (0 for counts and other non-negative
            targets, see ``edgecomp_runtime.transform``).
        future: None, or the known-future lead channels, the last K features:
            ``{"calendar": [...], "columns": [...], "lead": H, "features": [K names]}`` (see
            ``edgecomp_runtime.calendar``).
    """

    arch: str
    input_len: int
    horizon: int
    features: list[str]
    targets: list[str]
    scaler: dict[str, Any]
    hparams: dict[str, Any] = field(default_factory=dict)
    imputation: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_IMPUTATION))
    period_s: float | None = None
    seasonal_period: int | None = None
    data: dict[str, Any] = field(default_factory=dict)
    layout: dict[str, Any] | None = None
    output_floor: list[float | None] | None = None
    future: dict[str, Any] | None = None
    version: int = SPEC_VERSION

    def __post_init__(self) -> None:
        _check(isinstance(self.arch, str) and self.arch, "arch", "a non-empty string")
        for name in ("input_len", "horizon"):
            value = getattr(self, name)
            _check(
                isinstance(value, int) and not isinstance(value, bool) and value > 0,
                name,
                "a positive integer",
            )
        _check(_is_str_list(self.features) and self.features, "features", "a list of names")
        _check(len(set(self.features)) == len(self.features), "features", "unique names")
        _check(_is_str_list(self.targets) and self.targets, "targets", "a list of names")
        missing = [t for t in self.targets if t not in self.features]
        _check(not missing, "targets", f"names among the features (not found: {missing})")
        _check_scaler(self.scaler, len(self.features))
        if self.layout is not None:
            _check_layout(self.layout, len(self.features))
        floor = self.output_floor
        _check(
            floor is None or (isinstance(floor, list) and len(floor) == len(self.targets)),
            "output_floor",
            f"None or a list of {len(self.targets)} numbers or nulls (one per target)",
        )
        _check(
            floor is None or all(v is None or _is_finite(v) for v in floor),
            "output_floor",
            "finite numbers or nulls",
        )
        _check(
            self.version <= SPEC_VERSION,
            "version",
            f"at most {SPEC_VERSION} (this edgecomp reads spec versions up to {SPEC_VERSION})",
        )

    @property
    def n_features(self) -> int:
        return len(self.features)

    @property
    def target_index(self) -> list[int]:
        """Positions of the targets among the features."""
        return [self.features.index(t) for t in self.targets]

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if out["layout"] is None:  # no layout: the dict (and manifest) of a flat-feature model
            del out["layout"]
        for key in ("output_floor", "future"):  # unset: older readers see the spec unchanged
            if out[key] is None:
                del out[key]
        return out

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "spec") -> ModelSpec:
        """Build a spec from a JSON-like dict; errors name ``source`` and the field."""
        if not isinstance(data, dict):
            raise SpecError(f"{source}: expected a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        required = ("arch", "input_len", "horizon", "features", "targets", "scaler")
        absent = [k for k in required if k not in data]
        if absent:
            raise SpecError(f"{source}: missing field(s) {absent}")
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except SpecError as exc:
            raise SpecError(f"{source}: {exc}") from None
        except TypeError as exc:
            raise SpecError(f"{source}: {exc}") from None

    def save(self, path: str | Path) -> None:
        from edgecomp._io import atomic_write_text

        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> ModelSpec:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SpecError(f"{path}: cannot read spec JSON: {exc}") from None
        return cls.from_dict(data, source=str(path))


def _is_finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _check(ok: Any, name: str, expected: str) -> None:
    if not ok:
        raise SpecError(f"field '{name}' must be {expected}")


def _check_layout(layout: Any, n: int) -> None:
    from edgecomp.graph.layout import check_layout

    try:
        check_layout(layout, n)
    except ValueError as exc:
        raise SpecError(f"field 'layout': {exc}") from None


def _check_scaler(scaler: Any, n: int) -> None:
    _check(isinstance(scaler, dict), "scaler", "an object")
    _check(scaler.get("kind", "standard") == "standard", "scaler.kind", "'standard'")
    for key in ("mean", "std"):
        values = scaler.get(key)
        ok = (
            isinstance(values, list)
            and len(values) == n
            and all(isinstance(v, int | float) and math.isfinite(v) for v in values)
        )
        _check(ok, f"scaler.{key}", f"a list of {n} finite numbers")
    _check(all(s > 0 for s in scaler["std"]), "scaler.std", "positive")


@dataclass
class Model:
    """A forecaster in the compiler: an nn.Module plus its ModelSpec.

    The module maps scaled inputs [batch, input_len, F] to scaled outputs [batch, horizon, F_out].
    """

    module: Any  # torch.nn.Module; typed loosely so this module does not import torch
    spec: ModelSpec
    source: str = ""
