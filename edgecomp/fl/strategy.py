"""FedAvg and FedProx (Flower's) with bytes counted per round and int8 updates decoded.

Flower's strategies average whatever ArrayRecord a client sends. Here the server also counts the
bytes it sends and receives per round (``ArrayRecord.count_bytes``: array payloads with their
NumPy headers, plus key names) and, with int8 updates, rebuilds each client's weights from the
global weights of that round before averaging. A round in which no client could train is an
error naming the clients' failures, not a silently unchanged model.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg, FedProx

from edgecomp.fl.compress import decode_update
from edgecomp.fl.config import FLError

__all__ = ["EdgeFedAvg", "EdgeFedProx", "error_reason", "make_strategy"]


def error_reason(reply: Message) -> str:
    """The client's own error message out of a Flower error reply, on one line."""
    text = reply.error.reason.strip()
    _, found, tail = text.rpartition("Message: ")
    return " ".join((tail if found else text).rstrip("'>)").split())


def _numpy(record: ArrayRecord) -> dict[str, Any]:
    return {k: v.numpy() for k, v in record.items()}


class _EdgeStrategy:
    """Mixin over a Flower FedAvg-family strategy (listed first in the bases)."""

    def __init__(self, *args: Any, updates: str = "fp32", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.updates = updates
        self.traffic: dict[int, dict[str, int]] = {}
        self._sent: dict[str, Any] = {}

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        messages = list(super().configure_train(server_round, arrays, config, grid))
        self._sent = _numpy(arrays)
        self.traffic[server_round] = {
            "clients": len(messages),
            "down_bytes": arrays.count_bytes() * len(messages),
            "up_bytes": 0,
        }
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        valid = [m for m in replies if not m.has_error()]
        if not valid:
            reasons = "; ".join(error_reason(m) for m in replies) or "no reply"
            raise FLError(f"round {server_round}: no client trained ({reasons})")
        self.traffic[server_round]["up_bytes"] = sum(
            m.content[self.arrayrecord_key].count_bytes() for m in valid
        )
        if self.updates == "int8":
            for m in valid:
                weights = decode_update(self._sent, _numpy(m.content[self.arrayrecord_key]))
                m.content[self.arrayrecord_key] = ArrayRecord(
                    {k: Array(v) for k, v in weights.items()}
                )
        return super().aggregate_train(server_round, replies)


class EdgeFedAvg(_EdgeStrategy, FedAvg):
    """Flower's FedAvg, counting bytes per round, accepting int8 updates."""


class EdgeFedProx(_EdgeStrategy, FedProx):
    """Flower's FedProx (sends ``proximal-mu``), counting bytes, accepting int8 updates."""


def make_strategy(config: Any) -> EdgeFedAvg | EdgeFedProx:
    """The strategy an ``FLConfig`` asks for."""
    kwargs = {
        "fraction_train": config.fraction_train,
        "fraction_evaluate": config.fraction_evaluate,
        "min_train_nodes": 1,  # the fractions decide; at least one client per round
        "min_evaluate_nodes": 1,
        "min_available_nodes": config.min_nodes,
        "updates": config.updates,
    }
    if config.strategy == "fedprox":
        return EdgeFedProx(proximal_mu=config.proximal_mu, **kwargs)
    return EdgeFedAvg(**kwargs)
