"""edgecomp.fl: federated training across gateways with Flower, feeding the compression pipeline.

Each gateway (a Flower client) trains the forecaster on its own data file; the server agrees the
feature scaling from per-site totals (``stats``), aggregates with FedAvg or FedProx
(``strategy``), optionally receives int8-quantized updates (``compress``), and saves the global
model as an edgecomp checkpoint that ``edgecomp build`` takes. Run it on Flower's simulation
engine (``simulate``) or on a SuperLink with SuperNodes (``deploy``); ``edgecomp fl --help``.

This package imports nothing heavy until a name is used (the CLI imports ``edgecomp.fl.cli``).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "FLConfig": "edgecomp.fl.config",
    "FLError": "edgecomp.fl.config",
    "simulate": "edgecomp.fl.simulation",
    "LocalDeployment": "edgecomp.fl.deploy",
    "split_by_site": "edgecomp.fl.sites",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'edgecomp.fl' has no attribute '{name}'")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
