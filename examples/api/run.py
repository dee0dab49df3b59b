"""The whole edgecomp flow from Python, using only `edgecomp.api` (no CLI, no notebook).

Trains a small TCN on the Oregon DOT traffic counts, compiles it for x86 in fp32 and int8 (each
verified per forecast step on the test split, int8 under the default +1 % error budget), measures
both through the runtime and writes a report. Run: .venv/bin/python examples/api/run.py [OUT]
"""

from __future__ import annotations

import sys
from pathlib import Path

from edgecomp import api
from edgecomp.budget import BudgetNotMet

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "examples" / "data" / "odot_detector_counts_15min.parquet"
LAYOUT = {"id_col": "detector", "value_cols": ("total",)}


def main(out: Path) -> None:
    dataset = api.load_data(DATA, input_len=48, horizon=8, **LAYOUT)
    print(f"{len(dataset.train)} train / {len(dataset.val)} val / {len(dataset.test)} test windows")
    checkpoint = api.train(
        DATA, out / "tcn", arch="tcn", data_options=LAYOUT, hparams={"channels": 16}, epochs=8
    )
    artifacts = [api.build(checkpoint, DATA, out / "tcn-fp32.edgepkg")]
    try:
        artifacts.append(api.build(checkpoint, DATA, out / "tcn-int8.edgepkg", precision="int8"))
    except BudgetNotMet as refused:  # nothing was written; the message says by how much
        print(f"int8 refused by the error budget: {refused}")
    benches = api.bench(artifacts, data=DATA, batch_sizes=(1,), min_iters=100, min_seconds=0.5)
    report = api.report(benches, out / "report")
    for bench in benches:
        print(bench["artifact"]["name"], f"p50 b1 {bench['latency']['b1']['p50_ms']:.3f} ms")
    print(f"report: {out / 'report' / 'report.html'} ({len(report['rows'])} rows)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "examples" / "api" / "out")
