"""The Flower ServerApp: agree the scaling, run FedAvg/FedProx, save an edgecomp checkpoint.

1. Wait for ``min_nodes`` clients; ask each for its training-row totals (see
   ``edgecomp.fl.stats``) and its data description; refuse sites whose features, targets,
   window or period differ.
2. Build the model from ``FLConfig.train`` (seeded), run the strategy for ``rounds``.
3. Write the global model with ``edgecomp.checkpoint.save_checkpoint`` (``edgecomp build`` takes
   the folder as it is) plus ``fl.json``: per-round weighted client metrics, bytes per round, the
   sites' row counts and the agreed scaler.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid, ServerApp

from edgecomp._io import atomic_write_text
from edgecomp.checkpoint import save_checkpoint
from edgecomp.fl import stats
from edgecomp.fl.config import FLConfig, FLError
from edgecomp.fl.strategy import error_reason, make_strategy
from edgecomp.models import build_model, resolve_hparams
from edgecomp.spec import Model, ModelSpec

__all__ = [
    "FL_FILE",
    "agree_scaler",
    "make_server_app",
    "merge_site_fields",
    "read_summary",
    "run_server",
]

FL_FILE = "fl.json"
_SAME_AT_EVERY_SITE = ("input_len", "horizon", "features", "targets", "period_s")


def _wait_for_nodes(grid: Grid, count: int, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while len(nodes := sorted(grid.get_node_ids())) < count:
        if time.monotonic() > deadline:
            raise FLError(f"{len(nodes)} of {count} clients connected after {timeout:g} s")
        time.sleep(0.5)
    return nodes


def _ask(grid: Grid, nodes: list[int], config: dict[str, Any], timeout: float) -> list[RecordDict]:
    """Send a ``query.stats`` to every node; every reply must be there, errors are named."""
    messages = [
        Message(RecordDict({"config": ConfigRecord(config)}), node, f"{MessageType.QUERY}.stats")
        for node in nodes
    ]
    replies = list(grid.send_and_receive(messages, timeout=timeout))
    failed = [r for r in replies if r.has_error()]
    if failed or len(replies) != len(nodes):
        reasons = "; ".join(error_reason(r) for r in failed)
        raise FLError(
            f"scaling statistics: {len(replies) - len(failed)} of {len(nodes)} clients "
            f"answered ({reasons or 'timed out'})"
        )
    return [r.content for r in replies]


def merge_site_fields(fields: list[dict[str, Any]]) -> dict[str, Any]:
    """The spec fields (scaler aside) of a model for every site, from each site's own.

    Raises:
        FLError: Sites differ in features, targets, window, horizon or sampling period.
    """
    for key in _SAME_AT_EVERY_SITE:
        values = [f.get(key) for f in fields]
        if any(v != values[0] for v in values):
            raise FLError(f"sites differ in '{key}': {values}; every site needs the same")
    common = dict(fields[0])
    common["data"] = {**common["data"], "file": f"federated: {len(fields)} sites"}
    common["data"]["sites"] = [f["data"]["file"] for f in fields]
    common["data"].pop("sha256", None)
    return common


def agree_scaler(grid: Grid, config: FLConfig) -> tuple[dict[str, Any], list[int]]:
    """The global spec fields (scaler included) and each site's training row count."""
    nodes = _wait_for_nodes(grid, config.min_nodes, config.timeout)
    replies = _ask(grid, nodes, {"data-config": json.dumps(config.data.to_dict())}, config.timeout)
    parts = [
        stats.SiteMoments(
            count=int(r["metrics"]["count"]),
            sums=np.asarray(r["metrics"]["sums"]),
            squares=np.asarray(r["metrics"]["squares"]),
        )
        for r in replies
    ]
    mean, std = stats.pooled_scaler(parts)
    fields = merge_site_fields([json.loads(str(r["site"]["spec"])) for r in replies])
    fields["scaler"] = {"kind": "standard", "mean": mean.tolist(), "std": std.tolist()}
    return fields, [p.count for p in parts]


def _history(result: Any, traffic: dict[int, dict[str, int]]) -> list[dict[str, Any]]:
    rounds = []
    for r in sorted(traffic):
        train = dict(result.train_metrics_clientapp.get(r, {}))
        evaluate = dict(result.evaluate_metrics_clientapp.get(r, {}))
        rounds.append({"round": r, **traffic[r], "train": train, "evaluate": evaluate})
    return rounds


def run_server(grid: Grid, config: FLConfig) -> Path:
    """Run a whole federated training on ``grid``; returns the checkpoint folder written."""
    fields, counts = agree_scaler(grid, config)
    hparams = resolve_hparams(config.train.arch, config.train.hparams)
    spec = ModelSpec(arch=config.train.arch, hparams=hparams, **fields)
    torch.manual_seed(config.train.seed)
    module = build_model(spec)
    client_config = {
        "data-config": json.dumps(config.data.to_dict()),
        "train-config": json.dumps(config.train.to_dict()),
        "updates": config.updates,
        "scaler-mean": fields["scaler"]["mean"],
        "scaler-std": fields["scaler"]["std"],
    }
    strategy = make_strategy(config)
    result = strategy.start(
        grid,
        ArrayRecord(module.state_dict()),
        num_rounds=config.rounds,
        timeout=config.timeout,
        train_config=ConfigRecord(client_config),
        evaluate_config=ConfigRecord(client_config),
    )
    module.load_state_dict(result.arrays.to_torch_state_dict(), strict=True)
    module.eval()
    return _save(module, spec, config, _history(result, strategy.traffic), counts)


def _save(module, spec: ModelSpec, config: FLConfig, rounds: list, counts: list[int]) -> Path:
    out = Path(config.out)
    history = [
        {
            "epoch": r["round"],
            "train_loss": r["train"].get("train-loss", float("nan")),
            "val_loss": r["evaluate"].get("val-loss", float("nan")),
        }
        for r in rounds
    ]
    model = Model(module, spec, source="federated")
    save_checkpoint(model, out, history=history, train_config=config.train)
    summary = {"config": config.to_run_config(), "site_train_rows": counts, "rounds": rounds}
    atomic_write_text(out / FL_FILE, json.dumps(summary, indent=2))
    return out


def make_server_app(config: FLConfig | None = None) -> ServerApp:
    """A ServerApp running ``run_server``; without ``config`` it reads the Flower run config."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Any) -> None:
        run_server(grid, config or FLConfig.from_run_config(context.run_config))

    return app


def read_summary(out_dir: str | Path) -> dict[str, Any]:
    """The ``fl.json`` a finished run wrote to ``out_dir``.

    Raises:
        FLError: There is none: the run failed (its log says why).
    """
    path = Path(out_dir) / FL_FILE
    if not path.is_file():
        raise FLError(f"the federated run wrote no {path}; see the Flower log for the reason")
    return json.loads(path.read_text())
