"""The CLI through click's CliRunner: each command on real data, and errors as one line."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgecomp.cli import main
from edgecomp.manifest import read_manifest


@pytest.fixture
def runner():
    return CliRunner()


def build(runner, checkpoint, data, out, *flags):
    """`edgecomp build CHECKPOINT --data DATA -o OUT FLAGS...` through the CliRunner."""
    return runner.invoke(
        main, ["build", str(checkpoint), "--data", str(data), "-o", str(out), *flags]
    )


def test_targets_lists_profiles(runner):
    result = runner.invoke(main, ["targets"])
    assert result.exit_code == 0, result.output
    assert "x86-64-avx2" in result.output and "onnx" in result.output


def test_data_reports_period_and_gaps(runner, traffic_path):
    result = runner.invoke(
        main,
        [
            "data",
            str(traffic_path),
            "--id-col",
            "detector",
            "--value-col",
            "total",
            "-L",
            "16",
            "-H",
            "4",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["period_s"] == 900


@pytest.mark.target
def test_build_inspect_bench(runner, traffic_checkpoints, traffic_path, tmp_path):
    # setup
    artifact = tmp_path / "tcn.edgepkg"
    # execute
    built = build(runner, traffic_checkpoints["tcn"], traffic_path, artifact, "-p", "int8")
    inspected = runner.invoke(main, ["inspect", str(artifact)])
    benched = runner.invoke(
        main,
        [
            "bench",
            str(artifact),
            "--data",
            str(traffic_path),
            "--min-iters",
            "3",
            "--min-seconds",
            "0",
            "--no-memory",
            "--out-dir",
            str(tmp_path / "bench"),
        ],
    )
    # assert
    assert built.exit_code == 0, built.output
    assert artifact.exists()
    assert inspected.exit_code == 0, inspected.output
    assert "int8" in inspected.output and "Conv" in inspected.output
    assert benched.exit_code == 0, benched.output
    report = json.loads((tmp_path / "bench" / "report.json").read_text())
    assert report[0]["artifact"]["precision"] == "int8"


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["-t", "vax-11"], ["unknown target 'vax-11'", "x86-64-avx2"]),
        (["-p", "int3"], ["'int3'", "fp32"]),
    ],
)
def test_build_refusals_are_one_line_and_write_nothing(
    runner, traffic_checkpoints, traffic_path, tmp_path, flags, expected
):
    # execute
    result = build(runner, traffic_checkpoints["lstm"], traffic_path, tmp_path / "a", *flags)
    # assert
    assert result.exit_code == 2
    assert all(text in result.output for text in expected), result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "a").exists()


def test_inspect_refuses_a_corrupt_artifact(runner, tmp_path):
    bad = tmp_path / "bad.edgepkg"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    result = runner.invoke(main, ["inspect", str(bad)])
    assert result.exit_code == 2
    assert "bad.edgepkg" in result.output


def test_train_writes_a_checkpoint(runner, traffic_path, tmp_path):
    out = tmp_path / "ckpt"
    result = runner.invoke(
        main,
        [
            "train",
            str(traffic_path),
            "--id-col",
            "detector",
            "--value-col",
            "total",
            "--arch",
            "gru",
            "-L",
            "8",
            "-H",
            "2",
            "--hparam",
            "hidden=4",
            "--hparam",
            "layers=1",
            "--epochs",
            "1",
            "--out-dir",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert {"model.safetensors", "spec.json", "eval.json"} <= {p.name for p in out.iterdir()}
    assert list((out / "tb").glob("events.out.tfevents.*"))
    evaluation = json.loads((out / "eval.json").read_text())
    assert len(evaluation["model"]["mae"]) == 2 and "last_value" in evaluation["baselines"]


@pytest.mark.target
def test_build_option_overrides_the_profile(runner, traffic_checkpoints, traffic_path, tmp_path):
    # setup
    artifact = tmp_path / "tcn.edgepkg"
    # execute
    result = build(
        runner,
        traffic_checkpoints["tcn"],
        traffic_path,
        artifact,
        "--option",
        'keep_float=["output"]',
    )
    # assert
    assert result.exit_code == 0, result.output
    manifest = read_manifest(artifact)
    head = next(layer for layer in manifest["layers"] if layer["name"] == "head")
    assert head["precision"] == "fp32" and "keep_float" in head["reason"]
    assert manifest["recipe"]["lowering"]["build"]["options"] == {"keep_float": ["output"]}


def test_build_option_must_be_key_value(runner, traffic_checkpoints, traffic_path, tmp_path):
    result = build(
        runner, traffic_checkpoints["tcn"], traffic_path, tmp_path / "a", "--option", "per_channel"
    )
    assert result.exit_code == 2
    assert "KEY=VALUE" in result.output


def test_data_spike_threshold_removes_the_weather_spike(runner):
    weather = (
        Path(__file__).resolve().parents[1]
        / "examples/data/nyc_airports_weather_2013_hourly.csv.gz"
    )
    args = ["data", str(weather), "--id-col", "origin", "-L", "24", "-H", "6", "--json"]
    args += ["--exclude", "wind_gust"]  # 77-83 % missing: no validation window would be left
    plain = json.loads(runner.invoke(main, args).output)
    removed = json.loads(runner.invoke(main, [*args, "--spike-threshold", "20"]).output)
    assert any("EWR_wind_speed" in note for note in plain["notes"])
    assert not any(plain["spikes"].values())
    assert removed["spikes"]["EWR_wind_speed"] == 1
