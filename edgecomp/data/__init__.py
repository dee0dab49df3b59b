"""edgecomp.data: read sensor tables, impute, scale, window and split them by time.

``load_table`` reads CSV / CSV.gz / Parquet (wide or long) onto a regular grid; ``prepare`` turns
that into a ``Dataset`` of train / val / test ``Windows`` plus the fields a ``ModelSpec`` needs.
"""

from edgecomp.data.config import DataConfig, config_from_spec
from edgecomp.data.io import DataError, TableReport, load_table
from edgecomp.data.prep import Dataset, fill_missing, prepare
from edgecomp.data.windows import Windows

__all__ = [
    "DataConfig",
    "DataError",
    "Dataset",
    "TableReport",
    "Windows",
    "config_from_spec",
    "fill_missing",
    "load_table",
    "prepare",
]
