"""MLflow tracking of edgecomp commands, against a local SQLite store."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

mlflow = pytest.importorskip("mlflow")

from edgecomp import tracking  # noqa: E402
from edgecomp.cli import main  # noqa: E402

TRAIN = ["--id-col", "detector", "--value-col", "total", "--arch", "gru", "-L", "8", "-H", "2"]
TINY = ["--hparam", "hidden=4", "--hparam", "layers=1", "--epochs", "1"]


def _runs(uri: str):
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(tracking.EXPERIMENT)
    return client, client.search_runs([experiment.experiment_id])


def test_train_is_logged_with_params_per_step_metrics_and_the_checkpoint(
    traffic_path, tmp_path, monkeypatch
):
    # setup: run from another folder; nothing may land there
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    out = tmp_path / "ckpt"
    # execute
    result = CliRunner().invoke(
        main, ["--mlflow", uri, "train", str(traffic_path), *TRAIN, *TINY, "--out-dir", str(out)]
    )
    # assert
    assert result.exit_code == 0, result.output
    client, runs = _runs(uri)
    (run,) = runs
    assert run.info.run_name == "edgecomp train" and run.info.status == "FINISHED"
    assert run.data.params["arch"] == "gru" and run.data.params["epochs"] == "1"
    assert run.data.tags["edgecomp.command"] == "edgecomp train"
    history = client.get_metric_history(run.info.run_id, "eval.model.mae")
    assert [m.step for m in history] == [1, 2]  # one value per forecast step
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "ckpt")}
    assert "ckpt/model.safetensors" in artifacts and "ckpt/spec.json" in artifacts
    assert (tmp_path / "mlartifacts").is_dir() and list(elsewhere.iterdir()) == []


def test_nothing_is_tracked_without_a_uri(monkeypatch, tmp_path):
    monkeypatch.delenv(tracking.ENV, raising=False)
    with tracking.run("edgecomp x", {"a": 1}) as current:
        assert current is None and not tracking.active()
        tracking.log_metrics({"mae": 1.0})  # a no-op, not an error


def test_a_failed_command_is_marked_failed(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    result = CliRunner().invoke(main, ["--mlflow", uri, "inspect", str(tmp_path / "none.edgepkg")])
    assert result.exit_code == 2
    assert not tracking.active()
