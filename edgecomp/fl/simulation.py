"""Run a federated training on Flower's simulation engine (Ray): one virtual SuperNode per site."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from edgecomp.fl.config import FLConfig, FLError

__all__ = ["simulate"]


def _backend_config(num_cpus: int, client_cpus: float) -> dict[str, Any]:
    return {
        "client_resources": {"num_cpus": client_cpus, "num_gpus": 0.0},
        "init_args": {
            "num_cpus": num_cpus,
            "num_gpus": 0,
            "include_dashboard": False,
            "object_store_memory": 128 * 1024**2,  # weights only; Ray's default claims GBs
            "logging_level": "warning",
        },
    }


def simulate(config: FLConfig, *, num_cpus: int = 2, client_cpus: float = 1.0) -> dict[str, Any]:
    """Train across ``config.sites`` with Flower's simulation engine; Ray is shut down after.

    Args:
        config: The run; one virtual client per entry of ``config.sites``.
        num_cpus: CPUs Ray may use (each client process uses one torch thread).
        client_cpus: CPUs reserved per client, so at most ``num_cpus / client_cpus`` run at once.

    Returns:
        The ``fl.json`` summary the server wrote beside the checkpoint in ``config.out``.

    Raises:
        FLError: No sites, a site file that does not exist, or a run that ended without
            writing the global model (the Flower log above says why).
    """
    from flwr.simulation import run_simulation

    from edgecomp.fl.client import make_client_app
    from edgecomp.fl.server import FL_FILE, make_server_app, read_summary

    if not config.sites:
        raise FLError("FLConfig.sites is empty: a simulation needs one data file per client")
    missing = [s for s in config.sites if not Path(s).is_file()]
    if missing:
        raise FLError(f"site data file(s) not found: {missing}")
    os.environ["FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION"] = "1"
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # CPU only: no GPU env
    config = dataclasses.replace(config, min_nodes=len(config.sites))
    (Path(config.out) / FL_FILE).unlink(missing_ok=True)  # a stale one must not pass for this run's
    run_simulation(
        make_server_app(config),
        make_client_app(tuple(str(Path(s).resolve()) for s in config.sites)),
        num_supernodes=len(config.sites),
        backend_config=_backend_config(num_cpus, client_cpus),
    )
    return read_summary(config.out)
