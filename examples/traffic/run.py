"""Traffic: Oregon DOT detector counts (22 detectors, 15 min) -> graph model (stgnn, adjacency
learned: no detector coordinates), LSTM/GRU/TCN -> x86 fp32 + int8.

Forecasts the next 2 hours (8 steps) of every detector from the last 12 hours (48 steps). Calendar
features (hour of day, day of week) are kept per model only where they win on validation
(calendar="auto"); the summary says which.
Run: python examples/traffic/run.py [--quick]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import parse_args, run_example  # noqa: E402
from edgecomp.data import DataConfig  # noqa: E402
from edgecomp.train import TrainConfig  # noqa: E402

if __name__ == "__main__":
    run_example(
        "traffic",
        "odot_detector_counts_15min.parquet",
        DataConfig(input_len=48, horizon=8, id_col="detector", value_cols=("total",)),
        TrainConfig(epochs=40, patience=6, lr=2e-3),
        parse_args("traffic", archs="stgnn,lstm,gru,tcn"),
        calendar="auto",
        graph=TrainConfig(
            epochs=15,
            patience=4,
            lr=2e-3,
            hparams={"channels": 8, "zero_head": True, "graph_layers": 2},
        ),
    )
