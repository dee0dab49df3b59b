"""Federated training (edgecomp.fl): scaling statistics, int8 updates, FedProx, simulation."""

from __future__ import annotations

import json
import tomllib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edgecomp.data import DataConfig, prepare
from edgecomp.fl import stats
from edgecomp.fl.compress import decode_update, encode_update, max_roundtrip_error
from edgecomp.fl.config import FLConfig, FLError
from edgecomp.fl.sites import split_by_site
from edgecomp.train import TrainConfig

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
VARIABLES = ("temp", "dewp", "humid", "wind_dir", "wind_speed", "precip", "pressure", "visib")
DATA = DataConfig(input_len=12, horizon=3, features=VARIABLES, targets=("temp",))


@pytest.fixture(scope="module")
def sites(tmp_path_factory) -> dict:
    """The three NYC airports as three sites, 20 days each (real hourly weather)."""
    source = ROOT / "examples" / "data" / "nyc_airports_weather_2013_hourly.csv.gz"
    return split_by_site(source, "origin", tmp_path_factory.mktemp("sites"), max_rows=24 * 20)


def test_split_by_site_keeps_each_sites_rows_only(sites):
    # setup / execute: the fixture split the file
    import pandas as pd

    frames = {s: pd.read_csv(p) for s, p in sites.items()}
    # assert
    assert list(sites) == ["EWR", "JFK", "LGA"]
    for frame in frames.values():
        assert "origin" not in frame.columns and len(frame) == 24 * 20
    assert frames["EWR"]["temp"].tolist() != frames["JFK"]["temp"].tolist()


def test_split_by_site_refuses_unknown_site(sites, tmp_path):
    with pytest.raises(ValueError, match=r"unknown site\(s\) \['XYZ'\]"):
        split_by_site(sites["EWR"], "temp", tmp_path, sites=("XYZ",))


def test_global_scaling_equals_pooled_statistics(sites):
    # setup: each site's imputed training rows, as its client sees them
    rows = []
    for path in sites.values():
        ds = prepare(path, DATA)
        rows.append(ds.values[slice(*ds.bounds["train"])])
    # execute: only per-feature totals leave a site
    mean, std = stats.pooled_scaler([stats.site_moments(r) for r in rows])
    # assert: the statistics of the pooled rows, not of any one site
    pooled = np.concatenate(rows)
    np.testing.assert_allclose(mean, pooled.mean(axis=0), rtol=1e-13, atol=0)
    np.testing.assert_allclose(std, pooled.std(axis=0), rtol=1e-12, atol=0)
    assert not np.allclose(mean, rows[0].mean(axis=0), rtol=1e-3)


def test_global_scaling_keeps_digits_when_the_mean_dwarfs_the_spread():
    # setup: values of 1e7 varying by ~50 at two sites
    rng = np.random.default_rng(0)
    a, b = 1e7 + rng.normal(0, 50, (500, 1)), 1e7 + 3 + rng.normal(0, 100, (300, 1))
    # execute
    _, std = stats.pooled_scaler([stats.site_moments(a), stats.site_moments(b)])
    # assert: one-pass sums of squares (E[x^2] - E[x]^2) would be off by ~1e-6 here
    np.testing.assert_allclose(std, np.concatenate([a, b]).std(axis=0), rtol=1e-10)


def test_site_statistics_refuse_missing_values_and_mismatched_sites():
    with pytest.raises(ValueError, match="missing or infinite"):
        stats.site_moments(np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match="different shapes"):
        stats.pooled_scaler(
            [stats.site_moments(np.ones((3, 2))), stats.site_moments(np.ones((3, 3)))]
        )


def test_sites_with_different_features_are_refused(sites):
    from edgecomp.fl.client import site_spec_fields
    from edgecomp.fl.server import merge_site_fields

    # setup: two sites windowing different columns
    same = site_spec_fields(prepare(sites["EWR"], DATA))
    other = site_spec_fields(prepare(sites["JFK"], replace(DATA, features=("temp", "dewp"))))
    # execute / assert
    merged = merge_site_fields([same, site_spec_fields(prepare(sites["JFK"], DATA))])
    assert merged["data"]["sites"] == ["EWR.csv.gz", "JFK.csv.gz"]
    with pytest.raises(FLError, match="sites differ in 'features'"):
        merge_site_fields([same, other])


def test_int8_update_round_trip_error_is_bounded():
    # setup: global weights and a client's weights after local training
    rng = np.random.default_rng(1)
    ref = {"w": rng.normal(size=(64, 32)).astype(np.float32), "b": np.zeros(32, np.float32)}
    local = {k: v + rng.normal(0, 0.05, v.shape).astype(np.float32) for k, v in ref.items()}
    # execute
    payload = encode_update(ref, local)
    decoded = decode_update(ref, payload)
    # assert: int8 on the wire, every weight within half a step (+ float32 rounding)
    assert payload["w"].dtype == np.int8 and payload["b"].dtype == np.int8
    bound = max_roundtrip_error(payload)
    assert 0 < bound < 0.05 / 127 * 5
    for k in ref:
        assert np.abs(decoded[k] - local[k]).max() <= bound + 1e-6
    sent = sum(v.nbytes for v in payload.values())
    assert sent < 0.3 * sum(v.nbytes for v in local.values())


def test_int8_update_refuses_mismatched_tensors():
    ref = {"w": np.zeros((2, 2), np.float32)}
    with pytest.raises(ValueError, match="'w' has shape"):
        encode_update(ref, {"w": np.zeros((2, 3), np.float32)})
    with pytest.raises(ValueError, match="missing"):
        decode_update(ref, {"v": np.zeros((2, 2), np.int8)})
    with pytest.raises(ValueError, match="one positive scale"):
        decode_update(ref, {"w": np.zeros((2, 2), np.int8)})


def test_fedprox_term_is_half_mu_times_squared_distance():
    from edgecomp.fl.client import proximal_objective

    # setup: a model at the global weights
    model = torch.nn.Linear(3, 2)
    x, y = torch.randn(5, 3), torch.randn(5, 2)
    loss_fn, mu, step = torch.nn.MSELoss(), 0.7, 0.1
    objective = proximal_objective(model, mu, loss_fn)
    with torch.no_grad():
        plain_at_global = float(loss_fn(model(x), y))
    n_params = sum(p.numel() for p in model.parameters())
    # execute: the objective there, and after moving every weight by `step`
    at_global = float(objective(model, x, y))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(step)
    moved = objective(model, x, y)
    # assert: the term is 0 at the global weights and mu/2 * ||delta||^2 away from them
    assert at_global == pytest.approx(plain_at_global, rel=1e-6)
    expected = float(loss_fn(model(x), y)) + 0.5 * mu * n_params * step**2
    assert float(moved) == pytest.approx(expected, rel=1e-5)
    # and its gradient pulls back towards the global weights: mu * delta
    moved.backward()
    grad_term = model.bias.grad - torch.autograd.grad(loss_fn(model(x), y), model.bias)[0]
    torch.testing.assert_close(grad_term, torch.full_like(model.bias, mu * step))


def test_fl_config_round_trips_through_the_run_config():
    # setup
    config = FLConfig(
        data=DATA, train=TrainConfig(hparams={"hidden": 8}), strategy="fedprox", proximal_mu=0.1
    )
    # execute
    run_config = config.to_run_config()
    # assert: Flower scalars only, and the same config back
    assert all(isinstance(v, str | int | float) for v in run_config.values())
    assert FLConfig.from_run_config(run_config) == config
    with pytest.raises(ValueError, match="proximal_mu"):
        FLConfig(data=DATA, strategy="fedprox")
    with pytest.raises(ValueError, match="missing key 'rounds'"):
        FLConfig.from_run_config({k: v for k, v in run_config.items() if k != "rounds"})


def test_flower_app_folder_is_valid_for_flwr_run(tmp_path):
    from flwr.common.config import validate_config

    from edgecomp.fl.deploy import write_app

    # execute
    app = write_app(FLConfig(data=DATA, rounds=2), tmp_path / "app")
    pyproject = tomllib.loads((app / "pyproject.toml").read_text())
    # assert: Flower accepts it and its components import
    ok, errors, _ = validate_config(pyproject, check_module=True, project_dir=app)
    assert ok, errors
    assert FLConfig.from_run_config(pyproject["tool"]["flwr"]["app"]["config"]).rounds == 2


def test_cli_refuses_fedprox_without_mu(sites, tmp_path):
    from edgecomp.cli import main

    # execute
    result = CliRunner().invoke(
        main,
        ["fl", "simulate", str(sites["EWR"]), "--strategy", "fedprox", "--out-dir", str(tmp_path)],
    )
    # assert: one line, exit code 2, nothing written
    assert result.exit_code == 2
    assert "proximal_mu must be > 0 with strategy 'fedprox'" in result.output
    assert not any(tmp_path.iterdir())


def _site_val_mae(checkpoint, path) -> tuple[float, int]:
    from edgecomp.checkpoint import load_checkpoint
    from edgecomp.workflow import dataset_for, evaluate

    model = load_checkpoint(checkpoint)
    result = evaluate(model, dataset_for(model.spec, path), split="val")
    return float(np.mean(result["model"]["mae"])), result["n_windows"]


def test_simulation_three_sites_two_rounds_fedprox_int8_then_build(sites, tmp_path):
    import ray

    from edgecomp.checkpoint import load_checkpoint
    from edgecomp.fl.simulation import simulate
    from edgecomp.pipeline import BuildConfig
    from edgecomp.workflow import build_artifact

    # setup: FedProx with int8 updates, 3 clients x 2 rounds (2 of 3 train each round, all 3
    # validate), a tiny LSTM
    config = FLConfig(
        data=DATA,
        train=TrainConfig(hparams={"hidden": 8, "layers": 1}, epochs=1, batch_size=32),
        sites=tuple(str(p) for p in sites.values()),
        rounds=2,
        strategy="fedprox",
        proximal_mu=0.01,
        fraction_train=0.67,
        updates="int8",
        out=str(tmp_path / "global"),
    )
    # execute: one Ray worker (a shared 2-core machine)
    summary = simulate(config, num_cpus=1)
    # assert: 2 clients trained per round; their int8 updates are smaller than the fp32 broadcast
    assert [r["round"] for r in summary["rounds"]] == [1, 2]
    for r in summary["rounds"]:
        assert r["clients"] == 2 and 0 < r["up_bytes"] < r["down_bytes"]
        assert len(r["evaluate"]["val-mae"]) == DATA.horizon
    assert not ray.is_initialized()
    # assert: the last round's weighted mean of the clients' validation MAE is that of the saved
    # global model, evaluated site by site with the checkpoint's (pooled) scaler
    model = load_checkpoint(config.out)
    assert sorted(model.spec.data["sites"]) == [p.name for p in sites.values()]
    per_site = [_site_val_mae(config.out, p) for p in sites.values()]
    weighted = sum(m * n for m, n in per_site) / sum(n for _, n in per_site)
    assert summary["rounds"][-1]["evaluate"]["val-mae-mean"] == pytest.approx(weighted, rel=1e-5)
    # execute / assert: `edgecomp build CHECKPOINT --data SITE` takes the folder as it is
    build = BuildConfig(target="x86-64-avx2", precision="fp32")
    result = build_artifact(config.out, sites["JFK"], build, tmp_path / "jfk.edgepkg")
    assert result.path.is_file()
    assert result.manifest["spec"]["scaler"] == model.spec.scaler


@pytest.mark.slow
def test_federated_example_runs_quick(tmp_path):
    import subprocess
    import sys

    # execute: examples/federated/run.py --quick (3 airports, 1 round, then 3 int8 builds)
    script = ROOT / "examples" / "federated" / "run.py"
    done = subprocess.run(
        [sys.executable, str(script), "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    # assert
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert sorted(summary["builds"]) == ["EWR", "JFK", "LGA"]
    assert all(Path(b["artifact"]).is_file() for b in summary["builds"].values())
    assert "| round | clients |" in (tmp_path / "summary.md").read_text()
