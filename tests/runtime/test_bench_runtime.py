"""edgecomp-runtime bench: torch-free measurement on the device, its JSON, device description."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import edgecomp_runtime as ecr
from edgecomp_runtime.__main__ import main
from edgecomp_runtime.bench import BenchConfig, BenchError, bench, step_errors
from edgecomp_runtime.device import (
    board_model,
    cpu_info,
    describe,
    jetson_info,
    memory_mb,
    normalize_arch,
)

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
QUICK = BenchConfig(batch_sizes=(1, 4), min_iters=5, min_seconds=0.0, warmup=1)
ARM_CPUINFO = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimddp
CPU implementer\t: 0x41
CPU part\t: 0xd0b

processor\t: 1
Features\t: fp asimd asimddp
CPU part\t: 0xd0b
"""


@pytest.fixture(scope="module")
def traffic_bench() -> list[dict]:
    """The fixture TCN int8 measured with the fixture data (one fresh process)."""
    return bench([FIXTURES / "tcn-int8.edgepkg"], data=FIXTURES / "traffic-tail.csv", config=QUICK)


def _toy_csv(path: Path, toy, rows: np.ndarray, *, times: list[str] | None = None) -> Path:
    header = (["timestamp"] if times else []) + list(toy.features)
    lines = [",".join(header)]
    for i, row in enumerate(rows):
        cells = ["" if np.isnan(v) else f"{v:.6f}" for v in row]
        lines.append(",".join(([times[i]] if times else []) + cells))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_bench_reports_every_section(traffic_bench):
    # setup
    (result,) = traffic_bench
    # assert
    assert result["schema"] == "edgecomp-bench" and result["schema_version"] == 1
    assert set(result["latency"]) == {"b1", "b4"}
    for stats in result["latency"].values():
        assert 0 < stats["p50_ms"] <= stats["p90_ms"] <= stats["p99_ms"]
        assert stats["iters"] >= 5
    assert result["throughput"]["b4"] > 0
    assert result["engine"]["engine"].startswith("onnxruntime ")
    assert result["engine"]["fallback"] is None
    assert result["artifact"]["name"] == "tcn-int8"
    assert result["artifact"]["file_size"] == (FIXTURES / "tcn-int8.edgepkg").stat().st_size
    assert result["device"]["name"] == "local"
    assert result["import_ms"] > 0 and result["cold_load_ms"] > 0 and result["load_ms"] > 0


def test_memory_is_measured_in_order(traffic_bench):
    memory = traffic_bench[0]["memory"]
    assert memory["rss_after_import_mb"] <= memory["rss_after_load_mb"] <= memory["peak_rss_mb"]
    assert memory["artifact_rss_mb"] == pytest.approx(
        memory["peak_rss_mb"] - memory["rss_after_import_mb"], abs=0.5
    )


def test_per_step_error_on_the_data_file(traffic_bench):
    # setup: the same windows scored here, in this process
    from edgecomp_runtime.tabular import read_csv

    model = ecr.load(FIXTURES / "tcn-int8.edgepkg")
    values, _ = read_csv(FIXTURES / "traffic-tail.csv", model.features)
    span = model.input_len + model.horizon
    starts = range(len(values) - span + 1)
    windows = np.stack([values[s : s + model.input_len] for s in starts])
    index = [model.features.index(t) for t in model.targets]
    truth = np.stack([values[s + model.input_len : s + span][:, index] for s in starts])
    # execute
    expected = step_errors(truth, model.predict(windows))
    accuracy = traffic_bench[0]["accuracy"]
    # assert
    assert accuracy["n_windows"] == len(windows) == 160 - span + 1
    np.testing.assert_allclose(accuracy["artifact"]["mae"], expected["mae"], rtol=1e-9)
    assert len(accuracy["artifact"]["mae"]) == model.horizon


def test_step_errors_leave_missing_truth_out():
    truth = np.array([[[1.0], [np.nan]], [[3.0], [5.0]]])
    pred = np.array([[[2.0], [9.0]], [[1.0], [4.0]]])
    out = step_errors(truth, pred)
    assert out["mae"] == [1.5, 1.0]
    assert out["scored"] == [2, 1] and out["n_scored"] == 3 and out["n_missing"] == 1
    assert out["unscored"] == {}


def test_windows_across_a_time_gap_are_skipped(tmp_path, toy, make_artifact):
    # setup: 12 rows, one period (900 s) apart except a missing row after row 7
    rows = toy.window(batch=2, seed=2).reshape(-1, len(toy.features))
    seconds = [i * 900 + (900 if i >= 8 else 0) for i in range(len(rows))]
    stamps = [f"2025-01-01T{s // 3600:02d}:{s % 3600 // 60:02d}:00Z" for s in seconds]
    data = _toy_csv(tmp_path / "gap.csv", toy, rows, times=stamps)
    # execute
    (result,) = bench([make_artifact()], data=data, config=QUICK)
    # assert: span 8 -> 5 starts, of which those covering rows 7..8 are skipped
    accuracy = result["accuracy"]
    assert accuracy["n_windows"] + accuracy["n_skipped_gaps"] == len(rows) - 8 + 1
    assert accuracy["n_windows"] == 1 and accuracy["n_skipped_gaps"] == 4


def test_cli_writes_the_json_report_reads(tmp_path, make_artifact, capsys):
    # setup
    out = tmp_path / "bench.json"
    args = ["bench", str(make_artifact()), "--batch-sizes", "1,2", "--min-iters", "3"]
    # execute
    code = main([*args, "--min-seconds", "0", "--device-name", "pi5", "-o", str(out)])
    # assert
    assert code == 0
    results = json.loads(out.read_text())
    assert [r["device"]["name"] for r in results] == ["pi5"]
    assert json.loads(capsys.readouterr().out)["artifacts"][0]["device"] == "pi5"


def test_bench_json_matches_the_report_schema(traffic_bench):
    jsonschema = pytest.importorskip("jsonschema", reason="schema validation needs jsonschema")
    schema = json.loads((ROOT / "edgecomp" / "report" / "schema.json").read_text())
    bench_schema = {**schema["$defs"]["bench"], "$defs": schema["$defs"]}
    jsonschema.validate(traffic_bench[0], bench_schema)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--batch-sizes", "1,x"], "--batch-sizes: expected integers like 1,64, got '1,x'"),
        (["--batch-sizes", "0"], "batch sizes must be positive integers, got (0,)"),
        (["--threads", "0"], "threads must be a positive integer, got 0"),
    ],
)
def test_bad_flags_fail_in_one_line(tmp_path, make_artifact, capsys, argv, message):
    out = tmp_path / "bench.json"
    code = main(["bench", str(make_artifact()), *argv, "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1
    assert not out.exists()


def test_missing_artifact_or_data_fails_before_measuring(tmp_path, make_artifact):
    with pytest.raises(BenchError, match="nope.edgepkg: no such file or folder"):
        bench([tmp_path / "nope.edgepkg"], config=QUICK)
    with pytest.raises(BenchError, match="absent.csv: no such file or folder"):
        bench([make_artifact()], data=tmp_path / "absent.csv", config=QUICK)


def test_data_without_a_feature_column_names_file_and_column(tmp_path, make_artifact, capsys):
    # setup
    data = tmp_path / "wrong.csv"
    data.write_text("timestamp,a,b\n2025-01-01T00:00:00Z,1,2\n")
    out = tmp_path / "bench.json"
    # execute
    code = main(["bench", str(make_artifact()), "--data", str(data), "-o", str(out)])
    # assert: one line, the file and the column, nothing written
    err = capsys.readouterr().err.strip()
    assert code == 2 and "wrong.csv" in err and "['c']" in err and "\n" not in err
    assert not out.exists()


def test_a_corrupt_artifact_fails_in_one_line_naming_it(tmp_path):
    bad = tmp_path / "bad.edgepkg"
    bad.write_bytes(b"not a zip")
    with pytest.raises(BenchError, match=r"bad.edgepkg: ArtifactError: .*bad.edgepkg") as info:
        bench([bad], config=QUICK)
    assert "\n" not in str(info.value)


def test_describe_this_device():
    device = describe(name="here", threads=2)
    assert device["name"] == "here"
    assert device["arch"] == normalize_arch(device["os"]["machine"])
    assert device["cpu"]["logical_cores"] >= 1
    assert device["threads"]["requested"] == 2
    assert device["versions"]["numpy"] == np.__version__


def test_arm_cpuinfo_gives_the_core_and_its_features(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(ARM_CPUINFO)
    cpu = cpu_info(path)
    assert cpu["model"] == "Cortex-A76"
    assert cpu["isa"]["asimddp"] and cpu["isa"]["asimd"] and not cpu["isa"]["avx2"]


def test_board_model_from_the_device_tree(tmp_path):
    model = tmp_path / "model"
    model.write_bytes(b"Raspberry Pi 5 Model B Rev 1.0\x00")
    assert board_model((tmp_path / "absent", model)) == "Raspberry Pi 5 Model B Rev 1.0"
    assert board_model((tmp_path / "absent",)) is None


def test_jetson_l4t_release(tmp_path):
    release = tmp_path / "nv_tegra_release"
    release.write_text(
        "# R36 (release), REVISION: 3.0, GCID: 36191598, BOARD: generic, EABI: aarch64, "
        "DATE: Mon May  6 17:34:21 UTC 2024\n"
    )
    assert jetson_info(release)["l4t"] == "36.3.0"
    assert jetson_info(tmp_path / "absent") is None


def test_memory_total_from_meminfo(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:        8049920 kB\nMemFree:  1 kB\n")
    assert memory_mb(meminfo) == 7861.2
    assert memory_mb(tmp_path / "absent") is None
