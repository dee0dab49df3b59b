"""`edgecomp tune`: search compression recipes under error, latency, size and memory limits.

``tune`` (in ``edgecomp.tune.run``) measures each recipe of the search space on validation windows
and through the runtime on this host, keeps every trial in an optuna study, and writes the results,
the Pareto front, the chosen recipe and its artifact. The names below load on first use, so
importing this package (the CLI does, for `edgecomp tune --help`) loads neither torch nor pandas.
"""

from __future__ import annotations

import importlib
from typing import Any

_API = {
    "Constraints": "edgecomp.tune.evaluate",
    "TuneError": "edgecomp.tune.evaluate",
    "SpaceError": "edgecomp.tune.space",
    "default_space": "edgecomp.tune.space",
    "load_space": "edgecomp.tune.space",
    "OBJECTIVES": "edgecomp.tune.study",
    "STRATEGIES": "edgecomp.tune.study",
    "TuneConfig": "edgecomp.tune.study",
    "TuneResult": "edgecomp.tune.run",
    "pareto_markdown": "edgecomp.tune.run",
    "tune": "edgecomp.tune.run",
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'edgecomp.tune' has no attribute '{name}'")
