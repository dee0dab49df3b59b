"""edgecomp.bench: measure a tiny hand-built artifact through the runtime, then report it."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

onnx = pytest.importorskip("onnx", reason="the tiny test artifact is built with onnx")
pytest.importorskip("onnxruntime", reason="the runtime's onnx engine needs onnxruntime")

from edgecomp.bench import BenchError, bench_artifact, render_markdown, write_report  # noqa: E402
from edgecomp.bench.report import print_summary  # noqa: E402
from edgecomp.bench.runner import latency_stats, measure  # noqa: E402

L, H = 8, 3
FEATURES, TARGETS = ["a", "b", "c"], ["a"]
REFERENCE_MAE = [0.5, 1.0, 2.0]  # what the manifest claims the fp32 reference scored
FAST = {"min_iters": 5, "min_seconds": 0.0, "warmup": 1}


def _persistence_onnx() -> bytes:
    """window [batch, L, F] -> forecast [batch, H, 1]: the last scaled value of "a", H times.

    Reshape to [batch, L*F], MatMul with a 0/1 matrix that picks x[L-1, 0], reshape back.
    """
    from onnx import TensorProto, helper, numpy_helper

    weight = np.zeros((L * len(FEATURES), H), dtype=np.float32)
    weight[(L - 1) * len(FEATURES), :] = 1.0
    nodes = [
        helper.make_node("Reshape", ["window", "flat_shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "weight"], ["out"]),
        helper.make_node("Reshape", ["out", "out_shape"], ["forecast"]),
    ]
    inits = [
        numpy_helper.from_array(np.array([-1, L * len(FEATURES)], np.int64), "flat_shape"),
        numpy_helper.from_array(weight, "weight"),
        numpy_helper.from_array(np.array([-1, H, len(TARGETS)], np.int64), "out_shape"),
    ]
    graph = helper.make_graph(
        nodes,
        "persistence",
        [helper.make_tensor_value_info("window", TensorProto.FLOAT, ["batch", L, len(FEATURES)])],
        [helper.make_tensor_value_info("forecast", TensorProto.FLOAT, ["batch", H, len(TARGETS)])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _manifest(model_bytes: bytes) -> dict:
    """A format-version-1 manifest (runtime/FORMAT.md) for the persistence model."""
    spec = {
        "arch": "external",
        "hparams": {},
        "input_len": L,
        "horizon": H,
        "features": FEATURES,
        "targets": TARGETS,
        "scaler": {"kind": "standard", "mean": [50.0, 0.0, 1.0], "std": [30.0, 1.0, 2.0]},
        "imputation": {"interpolate_limit": 4, "then": "ffill", "max_missing_fraction": 0.5},
        "period_s": 3600.0,
        "seasonal_period": 24,
        "data": {
            "file": "series.csv",
            "split": [0.6, 0.2, 0.2],
            "stride": 1,
            "time_col": "time",
            "layout": "wide",
            "regularize": True,
        },
    }
    return {
        "format": "edgecomp-artifact",
        "format_version": 1,
        "created": "2025-01-01T00:00:00+00:00",
        "producer": {"edgecomp": "0.1.0"},
        "target": {
            "name": "x86-64-avx2",
            "backend": "onnx",
            "arch": "x86_64",
            "toolchain": {"onnxruntime": "1.32.0"},
        },
        "precision": "fp32",
        "model_file": "model.onnx",
        "io": {
            "inputs": [{"name": "window", "shape": ["batch", L, 3], "dtype": "float32"}],
            "outputs": [{"name": "forecast", "shape": ["batch", H, 1], "dtype": "float32"}],
        },
        "spec": spec,
        "recipe": {"passes": [], "lowering": {}},
        "layers": [
            {
                "name": "MatMul_0",
                "op_type": "MatMul",
                "precision": "fp32",
                "method": "",
                "reason": "test model",
            }
        ],
        "metrics": {
            "split": "test",
            "n_windows": 14,
            "reference": {"mae": REFERENCE_MAE, "rmse": [0.6, 1.2, 2.4], "mape": [1.0, 2.0, None]},
            "artifact": {"mae": REFERENCE_MAE, "rmse": [0.6, 1.2, 2.4], "mape": [1.0, 2.0, None]},
            "parity": {"max_abs_diff": 0.0, "mean_abs_diff": 0.0},
        },
        "files": [
            {
                "name": "model.onnx",
                "sha256": hashlib.sha256(model_bytes).hexdigest(),
                "size": len(model_bytes),
            }
        ],
    }


def _write_artifact(path: Path) -> Path:
    model_bytes = _persistence_onnx()
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", json.dumps(_manifest(model_bytes)))
        zf.writestr("model.onnx", model_bytes)
    return path


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    return _write_artifact(tmp_path_factory.mktemp("art") / "tiny.edgepkg")


@pytest.fixture(scope="module")
def series_csv(tmp_path_factory) -> Path:
    """120 hourly rows, wide: "a" is a ramp (so persistence errs by exactly h+1 at step h), "b"
    has short gaps, "c" has a 6-step gap in the test rows (windows holding 5+ of it are refused)."""
    t = np.arange(120, dtype=np.float64)
    frame = pd.DataFrame(
        {
            "time": pd.date_range("2024-01-01", periods=120, freq="h"),
            "a": t,
            "b": np.sin(t / 5),
            "c": np.cos(t / 7),
        }
    )
    frame.loc[[30, 31, 100, 111], "b"] = np.nan
    frame.loc[102:107, "c"] = np.nan
    path = tmp_path_factory.mktemp("data") / "series.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def report(artifact) -> dict:
    return bench_artifact(artifact, batch_sizes=(1, 4), **FAST)


@pytest.fixture(scope="module")
def data_report(artifact, series_csv) -> dict:
    return bench_artifact(artifact, data=series_csv, batch_sizes=(1, 64), memory=False, **FAST)


def test_report_has_every_section(report):
    # assert
    for key in (
        "schema",
        "schema_version",
        "created",
        "host",
        "artifact",
        "latency",
        "engine_latency",
        "throughput",
        "preprocess_overhead",
        "memory",
        "load_ms",
        "accuracy",
    ):
        assert key in report, key
    assert report["schema"] == "edgecomp-bench" and report["schema_version"] == 1
    assert set(report["latency"]) == set(report["engine_latency"]) == {"b1", "b4"}
    assert report["accuracy"] is None and report["latency_inputs"] == "random"
    json.dumps(report, allow_nan=False)  # JSON-ready


def test_latency_percentiles_ordered_and_counts_met(report):
    for section in ("latency", "engine_latency"):
        for stats in report[section].values():
            assert 0 < stats["p50_ms"] <= stats["p90_ms"] <= stats["p99_ms"] <= stats["max_ms"]
            assert stats["min_ms"] <= stats["mean_ms"] <= stats["max_ms"]
            assert stats["iters"] >= FAST["min_iters"]
    assert report["throughput"]["b4"] == pytest.approx(4e3 / report["latency"]["b4"]["mean_ms"])


def test_artifact_sizes_match_disk(report, artifact):
    # setup
    with zipfile.ZipFile(artifact) as zf:
        model_size = len(zf.read("model.onnx"))
    info = report["artifact"]
    # assert
    assert info["file_size"] == artifact.stat().st_size
    assert info["model_file_size"] == model_size
    assert info["sha256"] == hashlib.sha256(artifact.read_bytes()).hexdigest()
    assert (info["name"], info["target"], info["backend"], info["precision"], info["arch"]) == (
        "tiny",
        "x86-64-avx2",
        "onnx",
        "fp32",
        "external",
    )


def test_memory_measured_in_fresh_torch_free_process(report):
    mem = report["memory"]
    # assert
    assert mem["torch_imported"] is False
    assert 0 < mem["baseline_rss_mb"] <= mem["rss_after_import_mb"] <= mem["peak_rss_mb"]
    assert mem["artifact_rss_mb"] == pytest.approx(mem["peak_rss_mb"] - mem["rss_after_import_mb"])
    assert mem["cold_load_ms"] > 0 and report["load_ms"] > 0


def test_host_info_lists_cpu_isa_and_versions(report):
    host = report["host"]
    # assert
    assert host["cpu"]["logical_cores"] >= 1
    assert {"avx2", "fma", "avx512_vnni", "asimd", "sse4_2"} <= set(host["cpu"]["isa"])
    assert host["versions"]["numpy"] == np.__version__
    assert host["threads"]["requested"] == 1


def test_accuracy_per_horizon_and_deltas_against_manifest(data_report):
    acc = data_report["accuracy"]
    # assert: "a" is a ramp, so persistence errs by exactly h + 1 at step h (h from 0)
    assert acc["artifact"]["mae"] == pytest.approx([1.0, 2.0, 3.0], abs=1e-4)
    assert acc["artifact"]["rmse"] == pytest.approx([1.0, 2.0, 3.0], abs=1e-4)
    assert len(acc["artifact"]["mape"]) == H
    assert acc["reference"]["mae"] == REFERENCE_MAE
    assert acc["delta_mae"] == pytest.approx([0.5, 1.0, 1.0], abs=1e-4)
    assert acc["delta_mae_pct"] == pytest.approx([100.0, 100.0, 50.0], abs=1e-2)
    assert acc["delta_mape_pct"][2] is None  # the reference MAPE is undefined at that step


def test_accuracy_counts_refused_windows(data_report):
    from edgecomp.data import config_from_spec, prepare

    # setup
    spec = _manifest(b"")["spec"]
    dataset = prepare(data_report["accuracy"]["data"], config_from_spec(spec))
    n_test = len(dataset.test)
    acc = data_report["accuracy"]
    gateway = acc["gateway"]
    # assert: windows holding 5+ of the 6 missing "c" values, which the gateway refuses, are left
    # out of the split when the data are prepared, so none is scored and none is refused here
    assert dataset.left_out["test"]["windows"] > 0
    assert (acc["n_windows"], acc["n_refused"]) == (n_test, 0)
    assert gateway["n_refused"] == 0
    assert gateway["n_windows"] + gateway["n_refused"] == n_test
    assert gateway["n_with_missing"] >= gateway["n_refused"]
    assert len(gateway["mae"]) == len(acc["artifact"]["mae"])
    assert data_report["latency_inputs"] == "data:test"
    assert data_report["memory"] is None


def test_write_report_json_and_markdown(tmp_path, report, data_report):
    # setup
    reports = [report, {**data_report, "artifact": {**data_report["artifact"], "name": "tiny-2"}}]
    # execute
    paths = write_report(reports, tmp_path / "out", title="tiny bench")
    # assert
    assert json.loads(paths["json"].read_text()) == json.loads(json.dumps(reports))
    md = paths["md"].read_text()
    assert md.startswith("# tiny bench")
    for name in ("tiny", "tiny-2"):
        assert f"| {name} | x86-64-avx2 | fp32 |" in md
    assert "### tiny-2" in md and "+100.00" in md  # per-horizon MAE table with Δ%
    assert "## Host" in md and report["host"]["cpu"]["model"] in md


def test_render_markdown_dashes_missing_numbers(report):
    # execute: report has no accuracy and no b64 batch size
    row = next(line for line in render_markdown([report]).splitlines() if "| tiny |" in line)
    # assert
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[6] == "–" and cells[9] == "–" and cells[10] == "–"


def test_print_summary_prints_one_row_per_artifact(report):
    from rich.console import Console

    # setup
    console = Console(record=True, width=200)
    # execute
    print_summary([report], console=console)
    # assert
    assert "tiny" in console.export_text()


def test_missing_artifact_is_a_clear_error(tmp_path):
    missing = tmp_path / "nope.edgepkg"
    with pytest.raises(FileNotFoundError, match=r"artifact not found: .*nope\.edgepkg"):
        bench_artifact(missing, **FAST)


def test_missing_data_file_is_a_clear_error(artifact, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data file not found: .*absent\.csv"):
        bench_artifact(artifact, data=tmp_path / "absent.csv", **FAST)


@pytest.mark.parametrize("bad", [{"batch_sizes": ()}, {"batch_sizes": (0,)}, {"min_iters": 0}])
def test_bad_arguments_are_refused(artifact, bad):
    with pytest.raises(BenchError):
        bench_artifact(artifact, **{**FAST, **bad})


def test_measure_meets_min_iters_and_stats_are_ordered():
    # execute
    ms = measure(lambda: sum(range(100)), warmup=2, min_iters=25, min_seconds=0.0)
    stats = latency_stats(ms)
    # assert
    assert ms.size == 25 and stats["iters"] == 25
    assert stats["min_ms"] <= stats["p50_ms"] <= stats["p90_ms"] <= stats["p99_ms"]


def test_unpacked_folder_artifact_sizes(artifact, tmp_path):
    # setup
    folder = tmp_path / "tiny-folder"
    with zipfile.ZipFile(artifact) as zf:
        zf.extractall(folder)
    # execute
    info = bench_artifact(folder, batch_sizes=(2,), memory=False, **FAST)["artifact"]
    # assert
    assert info["name"] == "tiny-folder"
    assert info["file_size"] == sum(p.stat().st_size for p in folder.iterdir())
    assert info["model_file_size"] == (folder / "model.onnx").stat().st_size
    assert info["sha256"] == hashlib.sha256((folder / "manifest.json").read_bytes()).hexdigest()


def test_summary_worst_horizon_is_the_largest_increase(data_report):
    from edgecomp.bench.report import summary_rows

    # setup: a large improvement at h1 must not hide the loss at h2
    acc = {**data_report["accuracy"], "delta_mae_pct": [-80.0, 10.0, None]}
    # execute
    row = summary_rows([{**data_report, "accuracy": acc}])[0]
    # assert
    assert row[-1] == "+10.00"
