"""Weather: NYC airports' hourly weather (3 stations x 9 variables) -> temperature forecasts by a
graph model (stgnn: 3 nodes x 8 channels, adjacency learned) and LSTM/GRU/TCN.

Inputs are 24 series (8 variables x 3 stations) over the last 24 hours; targets are the three
stations' temperatures for the next 6 hours. Wind gust is left out: it is 77-83 % missing (ASOS
reports it only when gusts occur), beyond the imputation policy. Calendar features (hour of day,
day of week) are kept per model only where they win on validation (calendar="auto"); the summary
says which. Run: python examples/weather/run.py
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import parse_args, run_example  # noqa: E402
from edgecomp.data import DataConfig  # noqa: E402
from edgecomp.train import TrainConfig  # noqa: E402

VARIABLES = ("temp", "dewp", "humid", "wind_dir", "wind_speed", "precip", "pressure", "visib")
FEATURES = tuple(f"{s}_{v}" for s in ("EWR", "JFK", "LGA") for v in VARIABLES)

if __name__ == "__main__":
    run_example(
        "weather",
        "nyc_airports_weather_2013_hourly.csv.gz",
        DataConfig(
            input_len=24,
            horizon=6,
            id_col="origin",
            features=FEATURES,
            targets=("EWR_temp", "JFK_temp", "LGA_temp"),
        ),
        TrainConfig(epochs=30, patience=5),
        parse_args("weather", archs="stgnn,lstm,gru,tcn"),
        calendar="auto",
        graph=TrainConfig(epochs=30, patience=5, hparams={"channels": 16, "zero_head": True}),
    )
