"""The Flower ClientApp: a gateway trains on its own data file; only weights and totals leave it.

Each message's ``config`` record says how to window the data (``data-config``), how to train
(``train-config``), the agreed scaler (``scaler-mean``/``scaler-std``), the update codec
(``updates``) and, under FedProx, ``proximal-mu``. The site's file is the SuperNode's
``data-path`` node config, or in a simulation ``sites[partition-id]``.

Handlers: ``query.stats`` (the site's totals for ``edgecomp.fl.stats``), ``train`` (local
epochs with ``edgecomp.train.train_module`` from the global weights) and ``evaluate`` (the global
model on the site's validation split).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import Any

import numpy as np
import torch
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MetricRecord,
    RecordDict,
)
from flwr.clientapp import ClientApp
from torch import nn

from edgecomp.data import DataConfig, Dataset, prepare
from edgecomp.fl import stats
from edgecomp.fl.compress import encode_update
from edgecomp.metrics import horizon_metrics
from edgecomp.models import build_model, resolve_hparams
from edgecomp.spec import ModelSpec
from edgecomp.train import LOSSES, Objective, TrainConfig, predict, train_module

__all__ = ["make_client_app", "proximal_objective", "site_spec_fields"]


def proximal_objective(module: nn.Module, mu: float, loss_fn: nn.Module) -> Objective:
    """FedProx's local loss: ``loss(module(x), y) + mu / 2 * ||w - w_global||^2``.

    ``w_global`` is a copy of ``module``'s parameters taken now (call it after loading the
    global weights, before training).
    """
    anchor = [p.detach().clone() for p in module.parameters()]

    def objective(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        prox = sum(((p - a) ** 2).sum() for p, a in zip(model.parameters(), anchor, strict=True))
        return loss_fn(model(x), y) + 0.5 * mu * prox

    return objective


@functools.lru_cache(maxsize=8)
def _load_site(path: str, data_json: str) -> Dataset:
    return prepare(path, DataConfig.from_dict(json.loads(data_json), source="data-config"))


def site_spec_fields(dataset: Dataset) -> dict[str, Any]:
    """What a site tells the server about its data: the spec fields, without its own scaler."""
    return {k: v for k, v in dataset.spec_fields().items() if k != "scaler"}


def _site_path(context: Context, sites: tuple[str, ...]) -> str:
    node = context.node_config
    if "data-path" in node:
        return str(node["data-path"])
    if sites and "partition-id" in node:
        return sites[int(node["partition-id"])]
    raise ValueError(
        "this SuperNode has no data file: start it with --node-config 'data-path=\"FILE\"'"
    )


def _site(msg: Message, context: Context, sites: tuple[str, ...]) -> Dataset:
    """The site's dataset; scaled with the agreed global scaler when the message carries it."""
    config = msg.content["config"]
    dataset = _load_site(_site_path(context, sites), str(config["data-config"]))
    if "scaler-mean" in config:
        dataset = dataset.with_scaler(
            np.array(config["scaler-mean"]), np.array(config["scaler-std"])
        )
    return dataset


def _global_model(msg: Message, dataset: Dataset) -> tuple[nn.Module, TrainConfig]:
    """The global model, built from the train config and loaded with the message's weights."""
    config = msg.content["config"]
    train = TrainConfig.from_dict(json.loads(str(config["train-config"])))
    spec = ModelSpec(
        arch=train.arch, hparams=resolve_hparams(train.arch, train.hparams), **dataset.spec_fields()
    )
    module = build_model(spec)
    module.load_state_dict(msg.content["arrays"].to_torch_state_dict(), strict=True)
    return module, train


def _reply(msg: Message, **records: Any) -> Message:
    return Message(RecordDict(records), reply_to=msg)


def _stats(msg: Message, context: Context, sites: tuple[str, ...]) -> Message:
    config = msg.content["config"]
    dataset = _load_site(_site_path(context, sites), str(config["data-config"]))
    part = stats.site_moments(dataset.values[slice(*dataset.bounds["train"])])
    metrics = {"count": part.count, "sums": part.sums.tolist(), "squares": part.squares.tolist()}
    site = ConfigRecord({"spec": json.dumps(site_spec_fields(dataset))})
    return _reply(msg, metrics=MetricRecord(metrics), site=site)


def _train(msg: Message, context: Context, sites: tuple[str, ...]) -> Message:
    config = msg.content["config"]
    dataset = _site(msg, context, sites)
    module, train = _global_model(msg, dataset)
    start = {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}
    # every local epoch runs (patience = epochs); the best-validation epoch's weights are sent
    train = dataclasses.replace(
        train, seed=train.seed + int(config["server-round"]), patience=train.epochs
    )
    mu = float(config.get("proximal-mu", 0.0))
    objective = proximal_objective(module, mu, LOSSES[train.loss]()) if mu > 0 else None
    result = train_module(module, dataset.train, dataset.val, train, objective=objective)
    local = {k: v.detach().numpy() for k, v in module.state_dict().items()}
    arrays = encode_update(start, local) if config["updates"] == "int8" else local
    metrics = {
        "num-examples": len(dataset.train),
        "train-loss": result.history[-1]["train_loss"],
        "val-loss": result.best_val_loss,
    }
    return _reply(msg, arrays=ArrayRecord(_as_arrays(arrays)), metrics=MetricRecord(metrics))


def _as_arrays(arrays: dict[str, np.ndarray]) -> dict[str, Array]:
    return {k: Array(np.ascontiguousarray(v)) for k, v in arrays.items()}


def _evaluate(msg: Message, context: Context, sites: tuple[str, ...]) -> Message:
    dataset = _site(msg, context, sites)
    module, train = _global_model(msg, dataset)
    pred = predict(module, dataset.val.x)
    loss = LOSSES[train.loss]()(torch.from_numpy(pred), torch.from_numpy(dataset.val.y))
    scored = horizon_metrics(  # observed values only: imputed truth is never scored
        dataset.raw_targets("val"), dataset.unscale_targets(pred), observed=dataset.val.y_observed
    )
    mae = [float("nan") if v is None else float(v) for v in scored["mae"]]  # NaN: none observed
    metrics = {
        "num-examples": len(dataset.val),
        "val-loss": float(loss),
        "val-mae": mae,
        "val-mae-mean": float(np.nanmean(mae)) if not np.isnan(mae).all() else float("nan"),
    }
    return _reply(msg, metrics=MetricRecord(metrics))


def make_client_app(sites: tuple[str, ...] = ()) -> ClientApp:
    """A ClientApp serving ``query.stats``, ``train`` and ``evaluate``.

    Args:
        sites: Data files of a simulation, indexed by the node's ``partition-id``; a SuperNode's
            ``data-path`` node config takes precedence.
    """
    app = ClientApp()
    torch.set_num_threads(1)
    app.query("stats")(functools.partial(_stats, sites=sites))
    app.train()(functools.partial(_train, sites=sites))
    app.evaluate()(functools.partial(_evaluate, sites=sites))
    return app
