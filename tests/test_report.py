"""edgecomp.report: comparison report (JSON schema, Markdown, offline HTML), Pareto, regressions."""

from __future__ import annotations

import base64
import copy
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from edgecomp import exits
from edgecomp.bench.runner import engine_info, latency_stats, recipe_summary
from edgecomp.cli import main
from edgecomp.report import (
    ReportError,
    Rules,
    build_report,
    compare_runs,
    load_bench_json,
    load_inputs,
    pareto_front,
    remeasure_flagged,
    render_markdown,
    report_schema,
    write_full_report,
)

jsonschema = pytest.importorskip("jsonschema", reason="the schema test needs jsonschema (dev)")

PNG = b"\x89PNG\r\n\x1a\n"
HOST = {
    "cpu": {"model": "Test CPU", "logical_cores": 2, "physical_cores": 2, "isa": {"avx2": True}},
    "os": {"system": "Linux", "release": "6", "machine": "x86_64"},
    "python": {"version": "3.11.7"},
    "versions": {"numpy": "2.0", "onnxruntime": "1.32.0"},
    "threads": {"requested": 1, "affinity": 2, "env": {}},
}


def _latency(p50: float, spread: float) -> dict:
    """Stats whose quantiles rise linearly around p50: relative IQR == spread."""
    q = [p50 * (1 + spread * (i - 50) / 50) for i in range(101)]
    return {"p50_ms": p50, "p90_ms": q[90], "p99_ms": q[99], "iters": 100, "quantiles_ms": q}


def _bench(name, precision, p50_b1, mae, *, size=100_000, spread=0.04, rss=70.0) -> dict:
    """A hand-built edgecomp-bench dict with the fields the report reads."""
    ref = [m / 1.01 for m in mae] if precision == "int8" else list(mae)
    return {
        "schema": "edgecomp-bench",
        "schema_version": 1,
        "host": HOST,
        "engine": {"backend": "onnx", "engine": "onnxruntime 1.32.0", "native": True, "note": ""},
        "artifact": {
            "name": name,
            "path": f"/nonexistent/{name}.edgepkg",
            "target": "x86-64-avx2",
            "backend": "onnx",
            "precision": precision,
            "arch": "tcn",
            "file_size": size,
            "model_file_size": size + 10_000,
            "recipe": {"summary": f"{precision}: test recipe"},
        },
        "latency": {"b1": _latency(p50_b1, spread), "b64": _latency(40 * p50_b1, spread)},
        "throughput": {"b1": 1e3 / p50_b1, "b64": 64e3 / (40 * p50_b1)},
        "memory": {"peak_rss_mb": rss},
        "accuracy": {
            "split": "test",
            "n_windows": 320,
            "artifact": {"mae": list(mae)},
            "reference": {"mae": ref},
            "delta_mae_pct": [100 * (m - r) / r for m, r in zip(mae, ref, strict=True)],
        },
    }


@pytest.fixture
def run() -> list[dict]:
    """Three artifacts: fast+worse, slow+better (both on the front), and one dominated."""
    return [
        _bench("tcn-int8", "int8", 0.05, [4.1, 4.5, 5.0]),
        _bench("gru-fp32", "fp32", 0.13, [4.0, 4.3, 4.6]),
        _bench("lstm-fp32", "fp32", 0.14, [4.2, 4.6, 5.1], size=250_000),
    ]


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[Path, dict]:
    """One full report on disk (with a baseline), shared by the file-format tests."""
    new = [
        _bench("tcn-int8", "int8", 0.05, [4.1, 4.5, 5.0]),
        _bench("gru-fp32", "fp32", 0.13, [4.0, 4.3, 4.6]),
    ]
    new[1]["accuracy"] = None  # an artifact benched without --data
    old = copy.deepcopy(new)
    old[0]["latency"]["b1"] = _latency(0.025, 0.04)  # tcn-int8 got 2x slower at batch 1
    out = tmp_path_factory.mktemp("report")
    paths = write_full_report(new, out, title="test <report>", baseline=old)
    return out, paths


def test_report_json_validates_against_schema(written):
    # setup
    _, paths = written
    doc = json.loads(paths["json"].read_text())
    validator = jsonschema.Draft202012Validator(
        report_schema(), format_checker=jsonschema.FormatChecker()
    )
    # execute
    errors = list(validator.iter_errors(doc))
    # assert
    assert errors == []
    assert (doc["schema"], doc["schema_version"]) == ("edgecomp-report", 1)
    assert doc["regression"]["regressed"] == ["tcn-int8|x86-64-avx2|int8"]
    assert set(doc["plots"].values()) == {p.name for k, p in paths.items() if p.suffix == ".png"}


def test_schema_rejects_a_report_missing_a_field(written):
    # setup
    doc = json.loads(written[1]["json"].read_text())
    del doc["rows"][0]["pareto"]
    # execute / assert
    with pytest.raises(jsonschema.ValidationError, match="pareto"):
        jsonschema.validate(doc, report_schema())


def test_html_is_self_contained(written):
    # setup
    _, paths = written
    page = paths["html"].read_text()
    # assert: nothing outside the file is referenced; every image is an inline PNG
    for needle in ("http://", "https://", "//cdn", "<script", "<link", "@import", "url("):
        assert needle not in page, needle
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == 4
    for src in sources:
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix)
        assert base64.b64decode(src.removeprefix(prefix)).startswith(PNG)
    assert "<title>test &lt;report&gt;</title>" in page  # text is escaped
    assert 'class="regressed"' in page


def test_markdown_images_are_pngs_beside_it(written):
    # setup
    out, paths = written
    md = paths["md"].read_text()
    # execute
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    # assert
    assert len(images) == 4
    for name in images:
        assert (out / name).read_bytes().startswith(PNG)
    assert "| tcn-int8 | x86-64-avx2 | int8 | int8: test recipe |" in md
    assert "REGRESSED: tcn-int8|x86-64-avx2|int8" in md
    assert "## Host" in md and "Test CPU" in md and "avx2" in md


def test_pareto_front_keeps_only_undominated_points():
    # setup: b dominates d; a and b trade off; c equals a (neither dominates the other)
    points = {"a": (1.0, 5.0), "b": (2.0, 4.0), "c": (1.0, 5.0), "d": (3.0, 4.0)}
    # execute / assert
    assert pareto_front(points) == ["a", "b", "c"]


def test_rows_mark_pareto_and_summary_figures(run):
    # setup: lstm-fp32 is slower and worse than gru-fp32; a fourth artifact has no accuracy
    run.append(_bench("tcn-fp32", "fp32", 0.07, [4.1, 4.4, 4.9]))
    run[-1]["accuracy"] = None
    # execute
    report = build_report(run)
    rows = {r["name"]: r for r in report["rows"]}
    # assert
    assert report["pareto"]["front"] == ["tcn-int8|x86-64-avx2|int8", "gru-fp32|x86-64-avx2|fp32"]
    assert [rows[n]["pareto"] for n in rows] == [True, True, False, None]
    assert rows["gru-fp32"]["mae_mean"] == pytest.approx(4.3)
    assert rows["tcn-int8"]["delta_mae_pct_worst"] == pytest.approx(1.0)
    assert rows["lstm-fp32"]["batch_n"] == "b64" and rows["lstm-fp32"]["host"] == 0
    assert len(report["hosts"]) == 1 and report["regression"] is None


def test_planted_regression_is_flagged(run):
    # setup: latency doubled, size +20 %, MAE +5 % at one step
    new = copy.deepcopy(run)
    new[0]["latency"]["b1"] = _latency(0.10, 0.04)
    new[1]["artifact"]["file_size"] = 120_000
    new[2]["accuracy"]["artifact"]["mae"][2] *= 1.05
    # execute
    result = compare_runs(new, run)
    # assert
    assert result["passed"] is False
    assert [v["status"] for v in result["verdicts"]] == ["regressed"] * 3
    flagged = [
        [c["metric"] for c in v["checks"] if c["status"] == "regressed"] for v in result["verdicts"]
    ]
    assert flagged == [["latency.b1.p50_ms"], ["file_size"], ["mae.h3"]]


def test_unchanged_run_passes(run):
    # execute
    result = compare_runs(copy.deepcopy(run), run)
    # assert
    assert result["passed"] is True and result["regressed"] == []
    assert {v["status"] for v in result["verdicts"]} == {"unchanged"}


def test_noise_within_the_measured_spread_passes(run):
    # setup: +8 % latency (spread 4 %: limit max(10 %, 3 x 4 %) = 12 %), +100 B, +0.5 MB RSS
    new = copy.deepcopy(run)
    for bench in new:
        bench["latency"] = {
            k: _latency(v["p50_ms"] * 1.08, 0.04) for k, v in bench["latency"].items()
        }
        bench["artifact"]["file_size"] += 100
        bench["memory"]["peak_rss_mb"] += 0.5
    # execute
    result = compare_runs(new, run)
    # assert
    assert result["passed"] is True


@pytest.mark.parametrize(
    ("spread", "growth", "status"),
    [
        (0.04, 1.15, "regressed"),  # limit 12 %
        (0.08, 1.15, "ok"),  # limit 24 %: a wider spread tolerates more
        (0.01, 1.09, "ok"),  # limit: the 10 % floor
        (0.40, 1.60, "regressed"),  # 3 x 40 % = 120 %, capped at 50 %
    ],
)
def test_latency_limit_follows_spread_with_floor_and_cap(run, spread, growth, status):
    # setup
    old = [copy.deepcopy(run[0])]
    old[0]["latency"]["b1"] = _latency(0.05, spread)
    new = copy.deepcopy(old)
    new[0]["latency"]["b1"] = _latency(0.05 * growth, spread)
    # execute
    check = compare_runs(new, old)["verdicts"][0]["checks"][0]
    # assert
    assert (check["metric"], check["status"]) == ("latency.b1.p50_ms", status)


def test_rules_can_be_widened(run):
    # setup: +40 % at batch 1 fails the default rules
    new = copy.deepcopy(run)
    new[0]["latency"]["b1"] = _latency(0.07, 0.04)
    # execute
    default, wide = compare_runs(new, run), compare_runs(new, run, Rules(latency_floor=0.45))
    # assert
    assert default["passed"] is False and wide["passed"] is True
    assert wide["rules"]["latency_floor"] == 0.45


def test_unmatched_artifacts_and_incomparable_errors(run):
    # setup: one artifact renamed; one scored on other windows
    new = copy.deepcopy(run)
    new[0]["artifact"]["name"] = "tcn-int8-v2"
    new[1]["accuracy"]["n_windows"] = 100
    # execute
    verdicts = compare_runs(new, run)["verdicts"]
    # assert
    assert [(v["name"], v["status"]) for v in verdicts] == [
        ("tcn-int8-v2", "new"),
        ("gru-fp32", "unchanged"),
        ("lstm-fp32", "unchanged"),
        ("tcn-int8", "missing"),
    ]
    mae = [c for c in verdicts[1]["checks"] if c["metric"] == "mae"]
    assert mae[0]["status"] == "skipped" and "320 vs 100" in mae[0]["rule"]


def test_remeasure_keeps_the_fastest_run_per_batch_size(run, tmp_path, monkeypatch):
    import edgecomp.bench

    # setup: tcn-int8 measured 2x slow once (a burst of load); measured again it is fine
    artifact = tmp_path / "tcn-int8.edgepkg"
    artifact.write_bytes(b"")
    new = copy.deepcopy(run)
    new[0]["artifact"]["path"] = str(artifact)
    new[0]["latency"]["b1"] = _latency(0.10, 0.04)
    calls = []

    def fake_bench(path, **kw):
        calls.append((path, kw["memory"]))
        return copy.deepcopy(run[0])

    monkeypatch.setattr(edgecomp.bench, "bench_artifact", fake_bench)
    # execute
    merged = remeasure_flagged(new, run, retries=2, data="x.csv")
    # assert
    assert calls == [(str(artifact), False)]  # once: no longer flagged afterwards
    assert merged[0]["latency_runs"] == 2
    assert merged[0]["latency"]["b1"]["p50_ms"] == 0.05
    assert compare_runs(merged, run)["passed"] is True
    assert merged[1:] == new[1:]
    assert "fastest of several runs for: tcn-int8 (2)" in render_markdown(build_report(merged))


def test_load_bench_json_accepts_lists_reports_and_folders(run, tmp_path, written):
    # setup
    (tmp_path / "report.json").write_text(json.dumps(run))
    # execute
    from_list = load_bench_json(tmp_path / "report.json")
    from_folder = load_bench_json(tmp_path)
    from_report = load_bench_json(written[1]["json"])
    # assert
    assert from_list == from_folder == run
    assert [b["artifact"]["name"] for b in from_report] == ["tcn-int8", "gru-fp32"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", r"bad\.json: not a readable JSON file"),
        ('[{"schema": "other"}]', r"bad\.json: entry 0 is not a bench report"),
        ('{"schema": "edgecomp-report", "schema_version": 99}', r"schema_version 99 .*upgrade"),
        ('[{"schema": "edgecomp-bench", "schema_version": 1, "artifact": {}}]', "'artifact' lacks"),
    ],
)
def test_bad_json_inputs_are_refused_naming_the_file(tmp_path, content, message):
    # setup
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    # execute / assert
    with pytest.raises(ReportError, match=message):
        load_bench_json(bad)


def test_inputs_that_are_not_reports_are_refused(tmp_path, run):
    # setup
    (tmp_path / "notes.txt").write_text("x")
    # execute / assert
    with pytest.raises(ReportError, match=r"notes\.txt: expected a \.edgepkg"):
        load_inputs([tmp_path / "notes.txt"])
    with pytest.raises(ReportError, match="appears twice"):
        build_report([run[0], copy.deepcopy(run[0])])


def test_cli_fails_on_regression_only_when_asked(run, tmp_path):
    # setup: the baseline ran 2x faster at batch 1
    (tmp_path / "new.json").write_text(json.dumps(run))
    old = copy.deepcopy(run)
    old[1]["latency"]["b1"] = _latency(0.065, 0.04)
    (tmp_path / "old.json").write_text(json.dumps(old))
    args = ["report", str(tmp_path / "new.json"), "--baseline", str(tmp_path / "old.json")]
    # execute
    failing = CliRunner().invoke(
        main, [*args, "--fail-on-regression", "--out-dir", str(tmp_path / "a")]
    )
    passing = CliRunner().invoke(
        main, ["report", str(tmp_path / "new.json"), "--out-dir", str(tmp_path)]
    )
    # assert
    assert failing.exit_code == exits.REGRESSION == 4, failing.output
    assert "REGRESSED" in failing.output and "gru-fp32: regressed" in failing.output
    assert passing.exit_code == 0, passing.output
    assert "Pareto front" in passing.output and (tmp_path / "report.html").is_file()


def test_cli_refuses_fail_on_regression_without_baseline(run, tmp_path):
    (tmp_path / "new.json").write_text(json.dumps(run))
    args = ["report", str(tmp_path / "new.json"), "--fail-on-regression"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "needs --baseline" in result.output


def test_recipe_summary_names_quantized_and_float_layers():
    # setup
    manifest = {
        "precision": "int8",
        "recipe": {"passes": [{"_type": "prune"}], "lowering": {"quantization": {"tool": "ort"}}},
        "layers": [
            {"op_type": "GRU", "precision": "fp32", "method": None},
            {"op_type": "Gemm", "precision": "int8", "method": "dynamic"},
        ],
    }
    # execute
    recipe = recipe_summary(manifest)
    # assert
    assert recipe["summary"] == "prune, int8: 1/2 layers dynamic int8; GRU fp32"
    assert recipe["quantization"]["tool"] == "ort" and recipe["float_ops"] == ["GRU"]


@pytest.mark.parametrize(
    ("target", "native", "note"),
    [
        ({"backend": "onnx", "arch": "x86_64"}, True, "own engine"),
        ({"backend": "tensorrt", "arch": "x86_64"}, False, "tensorrt artifact run on onnxruntime"),
        ({"backend": "onnx", "arch": "sparc"}, False, "sparc target measured on"),
    ],
)
def test_engine_info_says_when_figures_are_a_host_fallback(target, native, note, monkeypatch):
    pytest.importorskip("onnxruntime", reason="the onnx engine needs onnxruntime")
    import platform

    # setup
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    model = SimpleNamespace(manifest={"target": target}, backend="onnx", engine=SimpleNamespace())
    # execute
    info = engine_info(model)
    # assert
    assert info["engine"].startswith("onnxruntime ") and info["native"] is native
    assert note in info["note"]


def test_latency_stats_keep_101_quantiles():
    import numpy as np

    stats = latency_stats(np.arange(1, 1001, dtype=np.float64))
    assert len(stats["quantiles_ms"]) == 101
    assert stats["quantiles_ms"][0] == 1 and stats["quantiles_ms"][100] == 1000
    assert stats["quantiles_ms"][50] == pytest.approx(stats["p50_ms"])


def test_report_benches_a_real_artifact(tmp_path):
    pytest.importorskip("onnxruntime", reason="the runtime's onnx engine needs onnxruntime")
    from test_bench import _write_artifact

    # setup
    artifact = _write_artifact(tmp_path / "tiny.edgepkg")
    args = ["report", str(artifact), "--min-iters", "5", "--min-seconds", "0", "--no-memory"]
    # execute
    result = CliRunner().invoke(main, [*args, "--batch", "1", "--out-dir", str(tmp_path / "out")])
    # assert
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "out" / "report.json").read_text())
    jsonschema.validate(doc, report_schema())
    row = doc["rows"][0]
    assert row["recipe"] == "fp32: not quantized" and row["engine"]["native"] is True
    assert row["pareto"] is None  # no --data: no error to put it on the front
    assert len(doc["artifacts"][0]["latency"]["b1"]["quantiles_ms"]) == 101


# --- reports across devices (edgecomp-runtime bench JSONs) -------------------------------------

_DEVICE_FIXTURES = Path(__file__).resolve().parent / "runtime" / "fixtures"


@pytest.fixture(scope="module")
def device_benches() -> dict[str, list[dict]]:
    """The fixture int8 and int4 TCNs measured once by edgecomp-runtime bench, as two devices."""
    from edgecomp_runtime.bench import BenchConfig, bench

    config = BenchConfig(batch_sizes=(1, 8), min_iters=5, min_seconds=0.0, warmup=1)
    artifacts = [_DEVICE_FIXTURES / f"tcn-{p}.edgepkg" for p in ("int8", "int4")]
    measured = bench(artifacts, data=_DEVICE_FIXTURES / "traffic-tail.csv", config=config)
    return {
        name: [{**b, "device": {**b["device"], "name": name}} for b in measured]
        for name in ("pi5", "jetson")
    }


def test_report_shows_each_artifact_per_device_side_by_side(device_benches, tmp_path):
    # setup: the same two artifacts from two devices
    benches = device_benches["pi5"] + device_benches["jetson"]
    # execute
    paths = write_full_report(benches, tmp_path / "report")
    doc = json.loads(paths["json"].read_text())
    # assert: one row per (artifact, device), a side-by-side section, a plot per metric
    jsonschema.validate(doc, report_schema())
    assert sorted((r["name"], r["device"]) for r in doc["rows"]) == [
        ("tcn-int4", "jetson"),
        ("tcn-int4", "pi5"),
        ("tcn-int8", "jetson"),
        ("tcn-int8", "pi5"),
    ]
    markdown = paths["md"].read_text()
    assert "## Devices side by side" in markdown
    assert {"device_latency", "device_memory", "device_error"} <= set(doc["plots"])
    assert all((tmp_path / "report" / f"{n}.png").is_file() for n in doc["plots"])


def test_regression_gate_compares_the_same_device_only(device_benches):
    # setup: a baseline from pi5 only; the new run has pi5 and jetson, pi5 twice as slow
    slow = copy.deepcopy(device_benches["pi5"])
    for bench in slow:
        for stats in bench["latency"].values():
            stats["p50_ms"] *= 2
            stats["quantiles_ms"] = [q * 2 for q in stats["quantiles_ms"]]
    # execute
    result = compare_runs(slow + device_benches["jetson"], device_benches["pi5"])
    # assert: pi5 regressed against pi5; jetson is new, never judged against pi5's figures
    status = {v["key"].rsplit("|", 1)[1] + ":" + v["name"]: v["status"] for v in result["verdicts"]}
    assert status == {
        "pi5:tcn-int8": "regressed",
        "pi5:tcn-int4": "regressed",
        "jetson:tcn-int8": "new",
        "jetson:tcn-int4": "new",
    }


def test_a_device_bench_json_loads_as_report_input(device_benches, tmp_path):
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(device_benches["pi5"]))
    loaded = load_bench_json(path)
    assert [b["device"]["name"] for b in loaded] == ["pi5", "pi5"]
