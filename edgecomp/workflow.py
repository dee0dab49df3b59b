"""The CLI's jobs as library calls: train and evaluate a checkpoint, build from a source file."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from edgecomp._io import atomic_write_text
from edgecomp.data import DataConfig, Dataset, config_from_spec, prepare
from edgecomp.data.prep import warn_if_other_source
from edgecomp.data.summary import display_steps
from edgecomp.dataflags import read_overrides
from edgecomp.frontend import load_model, reference_predict, source_kind
from edgecomp.metrics import horizon_metrics, observed_targets, scored_note
from edgecomp.pipeline import BuildConfig, BuildResult, baseline_metrics
from edgecomp.spec import Model, ModelSpec

__all__ = [
    "TrainOutcome",
    "build_artifact",
    "build_recipe",
    "dataset_for",
    "evaluate",
    "ingest",
    "train_checkpoint",
]


@dataclass
class TrainOutcome:
    """A trained checkpoint and its evaluation on the test split."""

    path: Path
    model: Model
    evaluation: dict[str, Any]

    def table(self) -> Table:
        return evaluation_table(
            self.evaluation, title=f"{self.model.spec.arch} on test split (MAE)"
        )


def train_checkpoint(
    data: str | Path, data_config: DataConfig, train_config, out_dir: Path, *, console=None
) -> TrainOutcome:
    """Prepare ``data``, train ``train_config.arch``, evaluate on test, write a checkpoint folder.

    The folder holds model.safetensors, spec.json, train.json, eval.json and tb/ (TensorBoard).
    """
    import torch

    from edgecomp.checkpoint import save_checkpoint
    from edgecomp.models import build_model, complete_spec, resolve_hparams
    from edgecomp.train import baseline_warnings, epoch_printer, train_module, training_warnings

    dataset = prepare(data, data_config)
    # every hyperparameter is written out, so a later change of a default cannot change the model
    hparams = resolve_hparams(train_config.arch, train_config.hparams)
    spec = ModelSpec(arch=train_config.arch, hparams=hparams, **dataset.spec_fields())
    spec = complete_spec(spec)  # a graph model gains its node layout and graph
    torch.manual_seed(train_config.seed)  # seeded initial weights: same seed, same model
    module = build_model(spec)

    on_epoch = None
    if console is not None:
        on_epoch = epoch_printer(lambda s: console.print(s, highlight=False), train_config.epochs)
    from edgecomp.tblog import log_final

    result = train_module(
        module,
        dataset.train,
        dataset.val,
        train_config,
        log_dir=out_dir / "tb",
        on_epoch=on_epoch,
        val_error=val_error(dataset),
    )
    model = Model(module=result.module, spec=spec, source=str(data))
    save_checkpoint(model, out_dir, history=result.history, train_config=train_config)
    evaluation = evaluate(model, dataset)
    evaluation["train"] = {
        "best_epoch": result.best_epoch,
        "best_val_loss": result.best_val_loss,
        "seconds": result.seconds,
        "epochs_run": len(result.history),
        "stop_reason": result.stop_reason,
    }
    evaluation["warnings"] = training_warnings(result) + baseline_warnings(evaluation)
    log_final(out_dir / "tb", {"test": evaluation, "val": evaluate(model, dataset, "val")})
    atomic_write_text(out_dir / "eval.json", json.dumps(evaluation, indent=2))
    return TrainOutcome(out_dir, model, evaluation)


def evaluate(model: Model, dataset: Dataset, split: str = "test") -> dict[str, Any]:
    """Per-horizon MAE/RMSE/MAPE in raw units of the model and the naive baselines on ``split``,
    on observed values only (imputed truth is never scored)."""
    windows = dataset.split(split)
    pred = dataset.unscale_targets(reference_predict(model, windows.x))
    observed = observed_targets(dataset, split)
    return {
        "split": split,
        "n_windows": len(windows),
        "left_out": dataset.left_out.get(split, {}).get("windows", 0),
        "model": horizon_metrics(dataset.raw_targets(split), pred, observed=observed),
        "baselines": baseline_metrics(dataset, split),
    }


def evaluation_table(evaluation: dict[str, Any], *, title: str) -> Table:
    """A rich table: one row per forecaster (model, baselines), one column per horizon step."""
    rows = {"model": evaluation["model"], **evaluation["baselines"]}
    steps = display_steps(len(evaluation["model"]["mae"]))  # long horizons: h1, h2, h4, ..., H
    table = Table(title=title, caption=scored_note(evaluation["model"]))
    table.add_column("forecaster")
    for h in steps:
        table.add_column(f"h{h}", justify="right")
    table.add_column("mean", justify="right")
    for name, metrics in rows.items():
        mae = metrics["mae"]
        kept = [v for v in mae if v is not None]
        mean = f"{np.mean(kept):.4g}" if kept else "n/a"
        table.add_row(name, *(_cell(mae[h - 1]) for h in steps), mean)
    return table


def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def dataset_for(spec: ModelSpec, data: str | Path) -> Dataset:
    """Window ``data`` the way ``spec`` says, scaled with the spec's own scaler statistics."""
    dataset = prepare(data, config_from_spec(spec.to_dict()))
    warn_if_other_source(dataset, spec.to_dict())  # build, analyze, tune: scored on other data?
    return dataset.with_scaler(np.asarray(spec.scaler["mean"]), np.asarray(spec.scaler["std"]))


def build_artifact(
    source: str,
    data: str | Path,
    config: BuildConfig,
    out: str | Path,
    *,
    weights: str | None = None,
    spec_path: str | None = None,
    input_len: int | None = None,
    horizon: int | None = None,
    sign_key: Any = None,
    budget: Any = None,
) -> BuildResult:
    """Ingest ``source`` (any front-end kind), window ``data`` per its spec, and build.

    ``sign_key`` (an ed25519 private key, see ``pipeline.build``) signs the artifact; ``budget``
    (``edgecomp.budget.Budget``) is the error budget the build keeps (None: unchecked).
    """
    model, dataset = ingest(
        source, data, weights=weights, spec_path=spec_path, input_len=input_len, horizon=horizon
    )
    from edgecomp.ladder import build_within_budget  # the build's stages plus the gate

    return build_within_budget(model, dataset, config, out, sign_key=sign_key, budget=budget)


def ingest(
    source: str,
    data: str | Path,
    *,
    weights: str | None = None,
    spec_path: str | None = None,
    input_len: int | None = None,
    horizon: int | None = None,
) -> tuple[Model, Dataset]:
    """Load ``source`` (any front-end kind) and window ``data`` the way its spec says."""
    spec, dataset = None, None
    if source_kind(source) != "checkpoint":
        spec, dataset = _external_spec(data, spec_path, input_len, horizon)
    model = load_model(source, weights=weights, spec=spec)
    return model, dataset or dataset_for(model.spec, data)


def build_recipe(
    model: Model,
    dataset: Dataset,
    recipe: Any,
    out: str | Path,
    *,
    sign_key: Any = None,
    save_model: str | Path | None = None,
    log: Any = None,
    budget: Any = None,
) -> list[BuildResult]:
    """Apply ``recipe``'s passes to ``model``, then build one artifact per lowering.

    With one lowering ``out`` is the artifact path; with several it is a folder receiving
    ``<name>.edgepkg`` per lowering. Each manifest's ``recipe.passes`` holds the pass records
    (config and measurements). ``save_model`` also writes the transformed model as a checkpoint.
    ``log`` (a callable) receives one line per pass. ``budget`` (``edgecomp.budget.Budget``)
    is the error budget each lowering keeps (the gate stage; None: unchecked).
    """
    from edgecomp.checkpoint import save_checkpoint
    from edgecomp.ladder import gate_stage
    from edgecomp.pipeline import STAGES, BuildContext, Stage, run_stages, with_stage

    gate = Stage("gate", gate_stage)  # edgecomp.ladder keeps ``budget`` after verify

    configs = recipe.build_configs()  # fail on a bad lowering before any pass runs
    # the passes stage once (measured on the recipe's split and windows), then the rest per lowering
    first = replace(configs[0][1], calibration_windows=recipe.calibration_windows)
    ctx = BuildContext(model, dataset, first, passes=recipe.make_passes(), log=log)
    run_stages(ctx, until="passes", skip=("resolve",))
    if save_model is not None:
        save_checkpoint(ctx.model, save_model)
    out = Path(out)
    paths = [out] if len(configs) == 1 else [out / f"{stem}.edgepkg" for stem, _ in configs]
    results = []
    for path, (_, config) in zip(paths, configs, strict=True):
        built = BuildContext(
            ctx.model, dataset, config, out=path, sign_key=sign_key, records=ctx.records
        )
        built.budget, built.log = budget, log
        run_stages(built, with_stage(STAGES, after="verify", stage=gate), skip=("passes",))
        results.append(BuildResult(built.path, built.manifest))
    return results


def _external_spec(data, spec_path, input_len, horizon) -> tuple[ModelSpec, Dataset | None]:
    """The spec of a non-checkpoint source, and the dataset when the spec was derived from it."""
    if spec_path is not None:
        return ModelSpec.load(spec_path), None
    if input_len is None or horizon is None:
        raise ValueError(
            "a model without a spec JSON needs --input-len and --horizon "
            "(features and scaling then come from --data's training split)"
        )
    dataset = prepare(data, DataConfig(input_len=input_len, horizon=horizon, **read_overrides()))
    return ModelSpec(arch="external", **dataset.spec_fields()), dataset


def val_error(dataset: Any, split: str = "val") -> Callable[[Any], list[float | None]]:
    """A ``train_module(val_error=...)`` function: per-step MAE of a module on ``split`` of
    ``dataset`` (``edgecomp.data.Dataset``) in raw target units, observed values only."""
    from edgecomp.train import predict

    windows, truth = dataset.split(split), dataset.raw_targets(split)
    observed = observed_targets(dataset, split)

    def error(module: Any) -> list[float | None]:
        pred = dataset.unscale_targets(predict(module, windows.x))
        return horizon_metrics(truth, pred, observed=observed)["mae"]

    return error
