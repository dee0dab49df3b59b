"""A table saved as UTF-16 with a byte-order mark (Excel's "Unicode Text (*.txt)", tab-delimited,
or a CSV re-encoded so) reads as its UTF-8 twin; before, its header read as 'ÿþt i m e' and the
file was refused for a missing time column."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from edgecomp.data import load_table


def _table():
    t = pd.date_range("2024-03-01", periods=48, freq="h")
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {"time": t.strftime("%Y-%m-%d %H:%M"), "Température °C": rng.normal(size=48).round(3)}
    )


@pytest.mark.parametrize(
    ("name", "sep", "encoding"),
    [("u.txt", "\t", "utf-16"), ("u.csv", ",", "utf-16"), ("u.csv", ";", "utf-16-be"),
     ("u.csv.gz", "\t", "utf-16")],
)  # fmt: skip
def test_a_utf16_table_reads_as_its_utf8_twin(tmp_path, name, sep, encoding):
    # setup
    table = _table()
    twin = tmp_path / "twin.csv"
    table.to_csv(twin, index=False)
    text = table.to_csv(sep=sep, index=False)
    data = text.encode(encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + data
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    # execute
    frame, report = load_table(path)
    expected, _ = load_table(twin)
    # assert
    pd.testing.assert_frame_equal(frame, expected)
    assert report.columns == ["Température °C"]
