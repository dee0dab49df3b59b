"""10,000 generated payloads (valid, malformed, extreme) through a running gateway on a real
Mosquitto: after each batch a valid reading still gives its forecast, unchanged, and /health
stays ok.

Hypothesis draws one seed per batch of 250 payloads and the payloads are made from it in plain
Python (fast, and a failure reports the seed that reproduces its batch). Every reading the
generator makes is either refused (bad JSON, shape, value or timestamp, too far ahead of the
clock) or older than the gateway's window, so the probe readings alone decide the forecasts.
"""

from __future__ import annotations

import json
import math
import random
import time

import numpy as np
import pytest

pytest.importorskip("hypothesis", reason="property tests need hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from test_serve import PERIOD, Server, mqtt  # noqa: E402, F401 (skips without paho / mosquitto)

import edgecomp_runtime as ecr  # noqa: E402
from helpers.broker import MosquittoBroker, find_mosquitto  # noqa: E402

pytestmark = pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is not installed")
BATCHES = 40
PER_BATCH = 250  # 10,000 payloads in all
T0 = time.time() - 30 * 86400  # probes start a month ago, one period apart


def hostile(rng: random.Random, features: tuple[str, ...]) -> bytes:
    """One payload: bad JSON, a bad reading, an extreme value or time, or a stale valid one."""
    kind = rng.randrange(7)
    if kind == 0:
        return rng.choice(
            [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))), b"{", b"[" * 5000,
             "\u2603 snow".encode(), b"", b"x" * (1 << 20 | 1) if rng.random() < 0.01 else b"]"]
        )  # fmt: skip
    if kind == 1:
        return json.dumps(rng.choice([1, "s", None, True, [], {}, [1, [2]], {"t": 1}])).encode()
    if kind == 2:
        return json.dumps([reading(rng, features) for _ in range(rng.randrange(1, 5))]).encode()
    return json.dumps(reading(rng, features)).encode()


def reading(rng: random.Random, features: tuple[str, ...]) -> dict:
    now = time.time()
    stamp = rng.choice(
        [T0 - rng.uniform(PERIOD * 20, 1e8), now * 1e3, now * 1e6, now * 1e9, now + 1e5, 1e308,
         10 ** rng.randrange(20, 400), -(10**400), "yesterday", "9999-12-31T00:00:00Z", None,
         True, [now], {"t": now}, T0 - PERIOD * 10]
    )  # fmt: skip
    values = {name: value(rng) for name in features if rng.random() < 0.9}
    if rng.random() < 0.1:
        values[rng.choice(["zz", "", "a" * 300])] = 1.0
    if rng.random() < 0.1:
        values = rng.choice([[1.0, 2.0], "1,2,3", 7, None, [[1.0]] * len(features)])
    return {"t": stamp, "values": values}


def value(rng: random.Random):
    return rng.choice(
        [rng.uniform(-1e3, 1e3), None, math.nan, 10 ** rng.randrange(30, 500), -1e300,
         float(np.finfo(np.float32).max) * 2, "7", True, [1.0], {"v": 1}, 0]
    )  # fmt: skip


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, toy, toy_model_bytes, write_artifact):
    path = write_artifact(
        tmp_path_factory.mktemp("fuzz") / "toy.edgepkg",
        toy.manifest(toy_model_bytes),
        {"model.onnx": toy_model_bytes},
    )
    with MosquittoBroker() as broker:
        server = Server(path, broker)
        probe = Probe(server, ecr.load(path), toy)
        for _ in range(toy.input_len):
            probe.send()
        yield probe
        server.stop()


class Probe:
    """Valid readings one period apart and the forecasts one stream gives for them alone."""

    def __init__(self, server: Server, model, toy) -> None:
        self.server, self.toy = server, toy
        self.expected = model.stream(max_ahead_s=math.inf)
        self.rows = toy.window(batch=BATCHES + 2, seed=50).reshape(-1, len(toy.features))
        self.slot = 0

    def send(self) -> tuple[float, np.ndarray | None]:
        t, row = T0 + self.slot * PERIOD, self.rows[self.slot]
        self.slot += 1
        self.server.publish({"t": t, "values": row.tolist()})
        return t, self.expected.push(t, row)


def test_generated_payloads_never_stop_or_change_the_forecasts(gateway, toy):
    # execute: BATCHES batches, each followed by one valid reading checked in batch()
    run_batches(gateway, toy)
    code, health = gateway.server.get("/health")
    # assert: every payload reached the gateway, and it still says ok
    counters = health["counters"]
    assert code == 200 and counters["messages"] >= BATCHES * PER_BATCH
    assert sum(counters["rejected"].values()) > BATCHES * PER_BATCH / 2
    assert health["stream"]["too_late"] > 0 and counters["forecasts"] == BATCHES + 1


def run_batches(gateway: Probe, toy) -> None:
    @settings(
        max_examples=BATCHES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(seed=st.integers(0, 2**64 - 1))
    def batch(seed: int) -> None:
        rng = random.Random(seed)
        payloads = [hostile(rng, toy.features) for _ in range(PER_BATCH)]
        for payload in payloads:
            info = gateway.server.client.publish(gateway.server.topics["readings"], payload, qos=1)
        info.wait_for_publish(10)
        t, expected = gateway.send()
        forecast = gateway.server.next("forecast")
        while forecast["t"] != t:  # forecasts of earlier probes may still be queued
            forecast = gateway.server.next("forecast")
        np.testing.assert_allclose(forecast["forecast"], expected, rtol=1e-5, atol=1e-4)
        code, health = gateway.server.get("/health")
        assert code == 200 and health["problems"] == [], health["problems"]

    batch()


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**300, max_value=10**400)
    | st.floats()
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def stream(tmp_path_factory, toy, toy_model_bytes, write_artifact):
    path = write_artifact(
        tmp_path_factory.mktemp("push") / "toy.edgepkg",
        toy.manifest(toy_model_bytes),
        {"model.onnx": toy_model_bytes},
    )
    return ecr.load(path).stream()


@settings(max_examples=500, deadline=None, database=None)
@given(
    timestamp=JSON | st.floats(0, 4e9) | st.datetimes(),
    values=JSON | st.lists(JSON | st.floats(), min_size=3, max_size=3),
)
def test_stream_push_raises_only_input_errors_for_any_value(stream, timestamp, values):
    # setup
    before = (stream.stats["readings"], stream.window.tobytes())
    # execute
    try:
        stream.push(timestamp, values)
    except ecr.InputError as exc:
        # assert: a refused reading leaves the stream as it was, with a one-line reason
        assert "\n" not in str(exc) and str(exc).startswith("reading: ")
        assert (stream.stats["readings"], stream.window.tobytes()) == before
    except ecr.ModelOutputError as exc:  # accepted, but values near float32's limit overflow
        assert "\n" not in str(exc) and "the model file, not the window" in str(exc)
