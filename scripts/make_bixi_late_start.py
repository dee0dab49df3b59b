"""Make tests/data/bixi_late_start.csv from the shared BIXI bike-share files (pyBKTR, MIT).

Daily departures of 14 Montréal stations, 2019-04-15 .. 10-27: the 8 first stations with under 5 %
missing days, and the 6 first that open 21-52 days late (their leading days are empty), plus the
day's mean temperature and a True/False holiday flag. Wide layout: date, one column per station
("st_<id>"), mean_temp_c, holiday. Run: .venv/bin/python scripts/make_bixi_late_start.py
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def main() -> int:
    departures = pd.read_csv(SHARED / "bixi_station_departures.csv").set_index("location")
    values = departures.to_numpy()
    first = np.argmax(~np.isnan(values), axis=1)
    after = np.array([np.isnan(row[f:]).mean() for row, f in zip(values, first, strict=True)])
    steady = np.flatnonzero((first == 0) & (np.isnan(values).mean(axis=1) < 0.05))[:8]
    late = np.flatnonzero((first >= 20) & (after < 0.1))[:6]
    picked = departures.iloc[np.concatenate([steady, late])].T
    picked.columns = [f"st_{name.split(' - ')[0]}" for name in picked.columns]
    weather = pd.read_csv(SHARED / "bixi_temporal_features.csv").set_index("time")
    table = picked.join(weather[["mean_temp_c", "holiday"]])
    table["holiday"] = table["holiday"].astype(bool)
    table.index.name = "date"
    out = ROOT / "tests" / "data" / "bixi_late_start.csv"
    table.to_csv(out, float_format="%g")
    print(f"wrote {out}: {table.shape[0]} days x {table.shape[1]} columns")
    return 0


if __name__ == "__main__":
    sys.exit(main())
