"""Timestamps with the offsets loggers write (strftime's ``%z``: ``+0100``; a trailing ``Z``)
mean the same on every supported Python: on 3.10, ``fromisoformat`` refused ``+0100``, so a
stream reading or ``predict(times=...)`` that 3.11 took was an InputError there."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

import edgecomp_runtime as ecr
from edgecomp_runtime.calendar import from_iso
from edgecomp_runtime.errors import InputError

UTC_0600 = datetime(2024, 1, 5, 6, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "text",
    ["2024-01-05T07:00:00+0100", "2024-01-05 07:00+0100", "2024-01-05T01:00:00-0500",
     "2024-01-05T06:00:00Z", "2024-01-05T06:00:00z", " 2024-01-05T06:00:00.000+00:00 "],
)  # fmt: skip
def test_offsets_read_as_the_same_instant(text):
    assert from_iso(text) == UTC_0600


@pytest.mark.parametrize("text", ["2024-01-05 07:00 EST", "05/01/2024 07:00", "", "Z"])
def test_other_text_is_not_iso(text):
    with pytest.raises(ValueError):
        from_iso(text)


def test_a_stream_reading_with_a_compact_offset_lands_on_its_slot(make_artifact, toy):
    # setup
    stream = ecr.load(make_artifact()).stream()
    rows = toy.window()
    start = UTC_0600.timestamp()
    for i, row in enumerate(rows[:-1]):
        stream.push(start + 900.0 * i, row)
    # execute: the last slot, 07:15 UTC, as 08:15 at +0100
    out = stream.push("2024-01-05T08:15:00+0100", rows[-1])
    # assert
    assert out is not None
    np.testing.assert_allclose(out, toy.reference(rows[None])[0], rtol=1e-4, atol=1e-3)


def test_a_stream_refuses_a_zone_name_naming_the_timestamp(make_artifact, toy):
    stream = ecr.load(make_artifact()).stream()
    with pytest.raises(InputError, match="timestamp '2024-01-05 07:00 EST' is not ISO 8601"):
        stream.push("2024-01-05 07:00 EST", toy.window()[0])
