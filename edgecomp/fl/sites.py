"""Split one long-format table into one data file per site (what each gateway would hold).

Each site's file keeps its own rows only, without the site column, so every site has the same
column names (``temp``, ``dewp``, ... at each airport) and one model can serve all of them.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from edgecomp._io import atomic_write
from edgecomp.data import DataError

__all__ = ["split_by_site"]


def _read(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path)


def split_by_site(
    path: str | Path,
    site_col: str,
    out_dir: str | Path,
    *,
    sites: tuple[str, ...] | None = None,
    max_rows: int | None = None,
) -> dict[str, Path]:
    """Write ``out_dir/<site>.csv.gz`` for each value of ``site_col`` in ``path``.

    Args:
        path: CSV, CSV.gz or Parquet table holding every site's rows.
        site_col: Column naming the site of each row (e.g. ``origin``).
        out_dir: Folder for the per-site files (created).
        sites: Sites to write, in this order; default: every site, sorted.
        max_rows: Keep only each site's first ``max_rows`` rows (as stored), for quick runs.

    Returns:
        ``{site: file}`` in site order.

    Raises:
        DataError: A missing file or column, an unknown site, or a non-positive ``max_rows``.
    """
    path, out_dir = Path(path), Path(out_dir)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    frame = _read(path)
    if site_col not in frame.columns:
        raise DataError(f"{path}: no column '{site_col}'; columns: {list(frame.columns)}")
    if max_rows is not None and max_rows < 1:
        raise DataError(f"max_rows must be >= 1, got {max_rows}")
    present = sorted(frame[site_col].dropna().astype(str).unique())
    chosen = list(sites) if sites else present
    unknown = [s for s in chosen if s not in present]
    if unknown:
        raise DataError(f"{path}: unknown site(s) {unknown} in '{site_col}'; present: {present}")
    out = {}
    for site in chosen:
        rows = frame[frame[site_col].astype(str) == site].drop(columns=[site_col])
        rows = rows.head(max_rows) if max_rows else rows
        target = out_dir / f"{site}.csv.gz"
        atomic_write(
            target, lambda tmp, rows=rows: rows.to_csv(tmp, index=False, compression="gzip")
        )
        out[site] = target
    return out
