"""A business-day artifact (weekdays only: finance) cannot stream: the stream places readings on
calendar-day slots, so a Friday-to-Monday step would count the weekend as two missing readings
and forecast from a window unlike any the model was trained on. It is refused by name."""

from __future__ import annotations

import numpy as np
import pytest

import edgecomp_runtime as ecr
from edgecomp_runtime.stream import StreamError


@pytest.mark.parametrize("period_s", [None, 86_400.0])
def test_a_business_day_artifact_refuses_to_stream(make_artifact, period_s):
    # setup
    model = ecr.load(make_artifact(manifest={"spec.data": {"grid": "business-day"}}))
    # execute / assert
    with pytest.raises(StreamError, match="business-day grid"):
        model.stream(period_s=period_s)


def test_a_business_day_artifact_still_predicts(make_artifact, toy):
    # setup
    model = ecr.load(make_artifact(manifest={"spec.data": {"grid": "business-day"}}))
    window = toy.window(seed=2)
    # execute
    got = model.predict(window)
    # assert
    np.testing.assert_allclose(got, toy.reference(window[None])[0], rtol=1e-4, atol=1e-3)


def test_a_calendar_day_artifact_streams(make_artifact):
    # setup
    model = ecr.load(make_artifact(manifest={"spec.data": {"grid": "calendar"}}))
    # execute
    stream = model.stream()
    # assert
    assert stream.period_s == 900.0
