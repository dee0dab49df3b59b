"""The Montréal BIXI bike-share files (pyBKTR) as one table edgecomp reads, plus coordinates.

The departures file holds one row per station and one column per day; edgecomp reads time in rows,
so ``daily_table`` writes a wide CSV: ``time``, one column per kept station (daily departures),
then the day's weather and calendar (humidity, max_temp_f, mean_temp_c, total_precip_mm, holiday,
and weekend: 1 on Saturdays and Sundays, from the date), which a graph model reads as global
inputs shared by every station. ``coordinates`` writes the kept
stations' latitude and longitude (node id, lat, lon), the input of ``edgecomp.graph``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

DATA = Path(__file__).parent / "data"
DEPARTURES = DATA / "bixi_station_departures.csv"
LOCATIONS = DATA / "bixi_spatial_locations.csv"
WEATHER = DATA / "bixi_temporal_features.csv"
WEATHER_COLUMNS = ["humidity", "max_temp_f", "mean_temp_c", "total_precip_mm", "holiday", "weekend"]


def stations(
    max_missing: float,
    limit: int | None = None,
    split: tuple[float, ...] | None = (0.6, 0.2, 0.2),
) -> list[str]:
    """Stations missing at most ``max_missing`` of their days and with a value in every part of
    ``split`` (else nothing can impute them there; None: no such condition, for data prepared
    with ``sparse_columns="fill"``), busiest first, at most ``limit``."""
    departures = pd.read_csv(DEPARTURES, index_col=0)
    kept = departures[departures.isna().mean(axis=1) <= max_missing]
    if split is not None:
        edges = (len(departures.columns) * pd.Series(split).cumsum()).round().astype(int).tolist()
        parts = zip([0, *edges[:-1]], edges, strict=True)
        seen = pd.concat([kept.iloc[:, a:b].notna().any(axis=1) for a, b in parts], axis=1)
        kept = kept[seen.all(axis=1)]
    order = kept.sum(axis=1).sort_values(ascending=False, kind="stable").index
    return list(order[:limit] if limit else order)


def daily_table(out: Path, names: list[str]) -> Path:
    """Write ``out`` (wide CSV: time, the stations ``names`` in that order, weather); returns it."""
    departures = pd.read_csv(DEPARTURES, index_col=0).loc[names].T
    departures.index.name = "time"
    weather = pd.read_csv(WEATHER, index_col="time")[WEATHER_COLUMNS[:-1]]
    weather["weekend"] = (pd.to_datetime(weather.index).day_of_week >= 5).astype(float)
    table = departures.join(weather, how="left")
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out)
    return out


def coordinates(out: Path, names: list[str]) -> Path:
    """Write ``out`` (CSV: node, lat, lon) for the stations ``names``; returns it."""
    locations = pd.read_csv(LOCATIONS, index_col="location").loc[names]
    frame = pd.DataFrame(
        {"node": names, "lat": locations["latitude"].values, "lon": locations["longitude"].values}
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False)
    return out
