"""`--json`: every command that prints results writes one JSON document to stdout and nothing
else there (logs, tables and progress go to stderr). Each command runs for real on a tiny model
trained here on the real traffic data (docs/cli/json.md lists the documents)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgecomp.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--id-col", "detector", "--value-col", "total", "-L", "8", "-H", "2"]
TRAIN = ["--arch", "tcn", "--hparam", "channels=4", "--epochs", "1", "--calendar", "off"]
FAST_BENCH = ["--batch", "1", "--min-iters", "3", "--min-seconds", "0", "--no-memory"]


def run_json(*args: str) -> tuple[object, str]:
    """Invoke `edgecomp ARGS --json`; the parsed stdout and the stderr text."""
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.stderr + result.stdout
    return json.loads(result.stdout), result.stderr


@pytest.fixture(scope="module")
def trained(tmp_path_factory, traffic_path):
    """`edgecomp train --json`: its document, and the checkpoint it names."""
    out = tmp_path_factory.mktemp("json") / "ckpt"
    document, stderr = run_json("train", str(traffic_path), *TINY, *TRAIN, "--out-dir", str(out))
    return document, stderr


@pytest.fixture(scope="module")
def built(trained, traffic_path, tmp_path_factory):
    artifact = tmp_path_factory.mktemp("json") / "tcn.edgepkg"
    document, _ = run_json(
        "build", trained[0]["checkpoint"], "--data", str(traffic_path), "-p", "int8",
        "-o", str(artifact),
    )  # fmt: skip
    return document


def test_targets_json_lists_every_profile():
    document, _ = run_json("targets")
    names = {row["name"] for row in document}
    assert {"x86-64-avx2", "arm64-gateway", "null-reference"} <= names
    assert all(isinstance(row["available"], bool) for row in document)


def test_data_json_summary(traffic_path):
    document, _ = run_json("data", str(traffic_path), *TINY)
    assert document["period_s"] == 900
    assert document["suggested"]


def test_train_json_names_the_checkpoint_and_its_errors(trained):
    document, stderr = trained
    assert document["arch"] == "tcn"
    assert len(document["evaluation"]["model"]["mae"]) == 2
    assert "epoch 1/1" in stderr  # the training log went to stderr


def test_build_json_reports_each_artifact(built):
    (artifact,) = built["artifacts"]
    assert artifact["precision"] == "int8" and artifact["target"] == "x86-64-avx2"
    assert artifact["size_bytes"] > 0 and len(artifact["mae"]["artifact"]) == 2
    assert artifact["n_scored"] > 0


def test_inspect_json_is_the_manifest(built):
    document, _ = run_json("inspect", built["artifacts"][0]["path"])
    assert document["format"] == "edgecomp-artifact" and document["precision"] == "int8"


def test_bench_and_report_json(built, traffic_path, tmp_path):
    path = built["artifacts"][0]["path"]
    bench, _ = run_json(
        "bench", path, "--data", str(traffic_path), *FAST_BENCH, "--out-dir", str(tmp_path / "b")
    )
    report, _ = run_json("report", str(tmp_path / "b" / "report.json"), "--out-dir", str(tmp_path))
    assert bench[0]["artifact"]["precision"] == "int8" and "b1" in bench[0]["latency"]
    assert report == json.loads((tmp_path / "report.json").read_text())


def test_report_json_still_printed_when_a_regression_exits_4(built, traffic_path, tmp_path):
    # setup: a baseline 1000x faster than anything measurable
    path = built["artifacts"][0]["path"]
    run_json("bench", path, *FAST_BENCH, "--out-dir", str(tmp_path / "b"))
    bench = json.loads((tmp_path / "b" / "report.json").read_text())
    for stats in bench[0]["latency"].values():
        stats.update({k: v / 1000 for k, v in stats.items() if k.endswith("_ms") and k[0] == "p"})
        stats["quantiles_ms"] = [v / 1000 for v in stats["quantiles_ms"]]
    (tmp_path / "old.json").write_text(json.dumps(bench))
    # execute
    result = CliRunner().invoke(
        main,
        ["report", str(tmp_path / "b" / "report.json"), "--baseline", str(tmp_path / "old.json"),
         "--confirm", "0", "--fail-on-regression", "--out-dir", str(tmp_path / "r"), "--json"],
    )  # fmt: skip
    # assert
    assert result.exit_code == 4, result.stderr
    assert json.loads(result.stdout)["regression"]["passed"] is False


def test_analyze_json(trained, traffic_path, tmp_path):
    document, _ = run_json(
        "analyze", trained[0]["checkpoint"], "--data", str(traffic_path), "-p", "int8",
        "--calibration-windows", "16", "--out-dir", str(tmp_path),
    )  # fmt: skip
    assert document["plan"] is None and document["layers"]["layers"]


def test_tune_json(trained, traffic_path, tmp_path):
    document, _ = run_json(
        "tune", trained[0]["checkpoint"], "--data", str(traffic_path), "--trials", "1",
        "--sampler", "random", "--no-students", "--no-build", "--no-error-limit",
        "--out-dir", str(tmp_path),
    )  # fmt: skip
    assert document["chosen"]["trial"] == 0
    assert document["results"] == json.loads((tmp_path / "results.json").read_text())


def test_keygen_and_credentials_json(tmp_path):
    key, _ = run_json("keygen", str(tmp_path / "k"))
    made, _ = run_json("fl", "credentials", "--out-dir", str(tmp_path / "c"), "--nodes", "1")
    assert len(key["key_id"]) > 8 and (tmp_path / "k.pub").is_file()
    assert made["nodes"][0]["public"].endswith(".pub")


def test_fl_split_json(tmp_path):
    source = ROOT / "examples" / "data" / "nyc_airports_weather_2013_hourly.csv.gz"
    document, _ = run_json(
        "fl", "split", str(source), "--site-col", "origin", "--max-rows", "24",
        "--out-dir", str(tmp_path),
    )  # fmt: skip
    assert set(document) == {"EWR", "JFK", "LGA"}


def test_fl_simulate_json(tmp_path):
    # setup: two airports' first five days, as two gateways
    source = ROOT / "examples" / "data" / "nyc_airports_weather_2013_hourly.csv.gz"
    sites, _ = run_json(
        "fl", "split", str(source), "--site-col", "origin", "--site", "EWR", "--site", "JFK",
        "--max-rows", "120", "--out-dir", str(tmp_path / "sites"),
    )  # fmt: skip
    # execute
    document, _ = run_json(
        "fl", "simulate", *sites.values(), "-L", "6", "-H", "2", "--features", "temp,dewp",
        "--targets", "temp", "--rounds", "1", "--hparam", "hidden=4", "--hparam", "layers=1",
        "--num-cpus", "1", "--out-dir", str(tmp_path / "global"),
    )  # fmt: skip
    # assert
    assert document["checkpoint"] == str(tmp_path / "global")
    assert [r["clients"] for r in document["rounds"]] == [2]


def test_errors_go_to_stderr_with_nothing_on_stdout(tmp_path):
    result = CliRunner().invoke(main, ["inspect", str(tmp_path / "none.edgepkg"), "--json"])
    assert result.exit_code == 2
    assert result.stdout == "" and "none.edgepkg" in result.stderr


def test_every_json_command_is_documented():
    import click

    text = (ROOT / "docs" / "cli" / "json.md").read_text()

    def walk(group, path):
        for name in group.list_commands(click.Context(group)):
            command = group.get_command(click.Context(group), name)
            if isinstance(command, click.Group):
                yield from walk(command, [*path, name])
            elif any("--json" in getattr(p, "opts", ()) for p in command.params):
                yield " ".join([*path, name])

    documented = list(walk(main, ["edgecomp"]))
    assert len(documented) >= 14
    missing = [c for c in documented if f"`{c}`" not in text]
    assert not missing, missing
