"""FLConfig: one federated run (sites, data, local training, strategy, rounds, update codec).

It travels to Flower as a flat run config of scalars (``to_run_config``), so the same settings
drive the simulation engine and a SuperLink deployment (written into the app's pyproject.toml).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

from edgecomp.data import DataConfig
from edgecomp.train import TrainConfig

__all__ = ["STRATEGIES", "UPDATE_CODECS", "FLConfig", "FLError"]

STRATEGIES = ("fedavg", "fedprox")
UPDATE_CODECS = ("fp32", "int8")


class FLError(ValueError):
    """A federated run is misconfigured or ended without a model; the message says why."""


@dataclass(frozen=True)
class FLConfig:
    """A federated training run.

    Attributes:
        data: How every site windows its own file (same features and targets at every site).
        train: Model and local training; ``train.epochs`` is the local epochs per round.
        sites: Data files, one per simulated client (a SuperNode's ``data-path`` overrides it).
        rounds: Federated rounds.
        strategy: "fedavg", or "fedprox" (proximal term ``mu/2 ||w - w_global||^2`` locally).
        proximal_mu: FedProx ``mu`` (> 0 with "fedprox", 0 with "fedavg").
        fraction_train: Fraction of the connected clients that train each round.
        fraction_evaluate: Fraction of the connected clients that validate each round.
        min_nodes: Clients the server waits for, and the least it samples per round.
        updates: Client-to-server update codec: "fp32" weights or "int8" quantized deltas.
        out: Checkpoint folder the server writes the final global model to.
        timeout: Seconds the server waits for the clients' replies of one round.
    """

    data: DataConfig
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=1))
    sites: tuple[str, ...] = ()
    rounds: int = 3
    strategy: str = "fedavg"
    proximal_mu: float = 0.0
    fraction_train: float = 1.0
    fraction_evaluate: float = 1.0
    min_nodes: int = 2
    updates: str = "fp32"
    out: str = "fl-out"
    timeout: float = 600.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "sites", tuple(self.sites))
        for name, ok, expected in self._checks():
            if not ok:
                raise ValueError(f"FLConfig.{name} must be {expected}, got {getattr(self, name)!r}")

    def _checks(self) -> list[tuple[str, bool, str]]:
        def fraction(v: Any) -> bool:
            return _is_number(v) and 0 < v <= 1

        mu_ok = _is_number(self.proximal_mu) and (
            self.proximal_mu > 0 if self.strategy == "fedprox" else self.proximal_mu == 0
        )
        return [
            ("data", isinstance(self.data, DataConfig), "a DataConfig"),
            ("train", isinstance(self.train, TrainConfig), "a TrainConfig"),
            ("sites", all(isinstance(s, str) and s for s in self.sites), "a list of paths"),
            ("rounds", _is_int(self.rounds) and self.rounds >= 1, "an integer >= 1"),
            ("strategy", self.strategy in STRATEGIES, f"one of {list(STRATEGIES)}"),
            ("proximal_mu", mu_ok, "> 0 with strategy 'fedprox' and 0 with 'fedavg'"),
            ("fraction_train", fraction(self.fraction_train), "a number in (0, 1]"),
            ("fraction_evaluate", fraction(self.fraction_evaluate), "a number in (0, 1]"),
            ("min_nodes", _is_int(self.min_nodes) and self.min_nodes >= 1, "an integer >= 1"),
            ("updates", self.updates in UPDATE_CODECS, f"one of {list(UPDATE_CODECS)}"),
            ("out", isinstance(self.out, str) and bool(self.out), "a folder path"),
            ("timeout", _is_number(self.timeout) and self.timeout > 0, "a positive number"),
        ]

    def to_run_config(self) -> dict[str, str | int | float]:
        """A flat ``{key: scalar}``: Flower's run config (pyproject ``[tool.flwr.app.config]``)."""
        out: dict[str, str | int | float] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("data", "train"):
                value = json.dumps(value.to_dict(), sort_keys=True)
            elif f.name == "sites":
                value = json.dumps(list(value))
            out[f.name.replace("_", "-")] = value
        return out

    @classmethod
    def from_run_config(cls, run_config: dict[str, Any]) -> FLConfig:
        """Rebuild from ``to_run_config()`` output (e.g. a Flower ``context.run_config``).

        Raises:
            ValueError: A missing key, JSON that does not parse, or an invalid value (named).
        """
        kwargs = {}
        for f in dataclasses.fields(cls):
            key = f.name.replace("_", "-")
            if key not in run_config:
                raise ValueError(f"federated run config: missing key '{key}'")
            kwargs[f.name] = run_config[key]
        try:
            kwargs["data"] = DataConfig.from_dict(json.loads(kwargs["data"]), source="data")
            kwargs["train"] = TrainConfig.from_dict(json.loads(kwargs["train"]))
            kwargs["sites"] = tuple(json.loads(kwargs["sites"]))
        except (json.JSONDecodeError, TypeError) as exc:
            raise ValueError(f"federated run config: {exc}") from None
        return cls(**kwargs)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
