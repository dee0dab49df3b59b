"""`edgecomp-runtime serve` against a real Mosquitto broker started by the test on 127.0.0.1."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from edgecomp.broker import MosquittoBroker, find_mosquitto, free_port

mqtt = pytest.importorskip("paho.mqtt.client", reason="serve needs paho-mqtt (runtime[serve])")
pytestmark = pytest.mark.skipif(
    find_mosquitto() is None,
    reason="the mosquitto binary is not installed (apt-get install mosquitto)",
)

T0 = 1_700_000_000.0
PERIOD = 900.0  # the toy artifact's spec.period_s
TIMEOUT = 20.0


@pytest.fixture
def broker():
    with MosquittoBroker() as running:
        yield running


class Server:
    """A serve subprocess, its HTTP address, and a test MQTT client on its topics."""

    def __init__(self, artifact: Path, broker: MosquittoBroker, *extra: str) -> None:
        command = [sys.executable, "-m", "edgecomp_runtime", "serve", str(artifact)]
        command += ["--broker", f"127.0.0.1:{broker.port}", "--http", "127.0.0.1:0", *extra]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        started = json.loads(self.process.stdout.readline() or "{}")
        assert started.get("event") == "started", self.process.stderr.read()
        self.http = f"http://{started['http']}"
        self.topics = started["topics"]
        self.messages: queue.Queue = queue.Queue()
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, json.loads(m.payload)))
        self.subscribed = threading.Event()
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe(
            [(self.topics["forecast"], 1), (self.topics["errors"], 1)]
        )
        self.client.on_subscribe = lambda c, u, m, r, p: self.subscribed.set()
        self.client.on_disconnect = lambda c, u, f, r, p: self.subscribed.clear()
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        self.wait_health(200)
        self.wait_client()

    def wait_client(self) -> None:
        deadline = time.monotonic() + TIMEOUT
        while not self.subscribed.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.subscribed.is_set(), "the test client did not (re)subscribe"

    def get(self, route: str) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(self.http + route, timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def wait_health(self, status: int, readings: int | None = None) -> dict:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            code, body = self.get("/health")
            if code == status and (readings is None or body["stream"]["readings"] == readings):
                return body
            time.sleep(0.05)
        raise AssertionError(f"/health never gave {status} with {readings} readings: {body}")

    def publish(self, payload) -> None:
        text = payload if isinstance(payload, str) else json.dumps(payload)
        self.client.publish(self.topics.get("readings"), text, qos=1).wait_for_publish(5)

    def next(self, topic: str) -> dict:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            got, body = self.messages.get(timeout=TIMEOUT)
            if got == self.topics[topic]:
                return body
        raise AssertionError(f"no message on {topic}")

    def stop(self) -> int:
        self.client.loop_stop()
        self.client.disconnect()
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=TIMEOUT)


@pytest.fixture
def server_factory():
    started = []

    def make(*args, **kwargs) -> Server:
        server = Server(*args, **kwargs)
        started.append(server)
        return server

    yield make
    for server in started:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()


def readings(toy, n: int, start: int = 0) -> list[dict]:
    raw = toy.window(batch=1, seed=3)[0]
    raw = np.concatenate([raw, toy.window(batch=1, seed=4)[0]])
    return [
        {
            "t": T0 + (start + i) * PERIOD,
            "values": dict(zip(toy.features, raw[i].tolist(), strict=True)),
        }
        for i in range(n)
    ], raw


def test_forecasts_match_the_window_and_http_serves_them(
    toy, make_artifact, broker, server_factory
):
    # setup
    server = server_factory(make_artifact(), broker)
    items, raw = readings(toy, toy.input_len + 1)
    # execute
    for item in items:
        server.publish(item)
    first, second = server.next("forecast"), server.next("forecast")
    code, latest = server.get("/forecast")
    _, manifest = server.get("/manifest")
    # assert
    expected = toy.reference(raw[1 : toy.input_len + 1][None])[0]
    np.testing.assert_allclose(second["forecast"], expected, rtol=1e-5, atol=1e-4)
    assert first["t"] == T0 + (toy.input_len - 1) * PERIOD
    assert second["times"] == [second["t"] + (h + 1) * PERIOD for h in range(toy.horizon)]
    assert code == 200 and latest == second
    assert manifest["input_len"] == toy.input_len and manifest["stream"]["mode"] == "windowed"
    assert server.stop() == 0


def test_bad_messages_are_reported_and_the_stream_goes_on(
    toy, make_artifact, broker, server_factory
):
    # setup
    server = server_factory(make_artifact(), broker)
    items, raw = readings(toy, toy.input_len)
    # execute
    server.publish("{not json")
    server.publish({"t": T0, "values": {"nope": 1.0}})
    server.publish(items)  # one message holding a list of readings
    errors = [server.next("errors")["error"], server.next("errors")["error"]]
    forecast = server.next("forecast")
    # assert
    assert "not a JSON message" in errors[0]
    assert "unknown feature(s) ['nope']" in errors[1]
    np.testing.assert_allclose(
        forecast["forecast"], toy.reference(raw[None, : toy.input_len])[0], rtol=1e-5, atol=1e-4
    )
    health = server.get("/health")[1]
    assert health["stream"]["readings"] == toy.input_len and health["errors"] == 2


def test_window_survives_a_broker_restart(toy, make_artifact, broker, server_factory):
    # setup
    server = server_factory(make_artifact(), broker)
    items, raw = readings(toy, toy.input_len + 1)
    before = toy.input_len - 2
    for item in items[:before]:
        server.publish(item)
    server.wait_health(200, readings=before)
    # execute: the broker goes away and comes back on the same port
    broker.restart()
    server.wait_health(503)  # the gateway saw the broker go (it retries after 1 s)
    server.wait_health(200)  # and reconnected
    server.wait_client()  # so did the test's client, which re-subscribes in on_connect
    for item in items[before:]:
        server.publish(item)
    forecast = server.next("forecast")
    # assert: the first forecast's window holds readings from before the restart
    expected = toy.reference(raw[None, : toy.input_len])[0]
    np.testing.assert_allclose(forecast["forecast"], expected, rtol=1e-5, atol=1e-4)
    assert server.get("/health")[1]["stream"]["readings"] == toy.input_len + 1


def test_state_file_carries_the_window_across_a_gateway_restart(
    toy, make_artifact, broker, server_factory, tmp_path
):
    # setup
    artifact, state = make_artifact(), tmp_path / "stream.npz"
    items, raw = readings(toy, toy.input_len)
    first = server_factory(artifact, broker, "--state", str(state))
    for item in items[:-1]:
        first.publish(item)
    first.wait_health(200, readings=toy.input_len - 1)
    assert first.stop() == 0
    # execute
    second = server_factory(artifact, broker, "--state", str(state))
    second.publish(items[-1])
    forecast = second.next("forecast")
    # assert
    np.testing.assert_allclose(
        forecast["forecast"], toy.reference(raw[None, : toy.input_len])[0], rtol=1e-5, atol=1e-4
    )


def test_gateway_waits_for_a_broker_that_starts_later(make_artifact, tmp_path):
    # setup: no broker on the port yet
    port = free_port()
    command = [sys.executable, "-m", "edgecomp_runtime", "serve", str(make_artifact())]
    command += ["--broker", f"127.0.0.1:{port}", "--http", "127.0.0.1:0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        http = "http://" + json.loads(process.stdout.readline())["http"]
        before = _status(http + "/health")
        # execute
        with MosquittoBroker(port):
            deadline = time.monotonic() + TIMEOUT
            while _status(http + "/health") != 200 and time.monotonic() < deadline:
                time.sleep(0.1)
            after = _status(http + "/health")
    finally:
        process.terminate()
        code = process.wait(timeout=TIMEOUT)
    # assert
    assert (before, after, code) == (503, 200, 0)


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_serve_without_paho_names_the_extra(make_artifact, monkeypatch, capsys):
    # setup
    from edgecomp_runtime.__main__ import main

    for name in ("paho", "paho.mqtt", "paho.mqtt.client"):
        monkeypatch.setitem(sys.modules, name, None)
    # execute
    code = main(["serve", str(make_artifact()), "--broker", "127.0.0.1:1", "--http", "off"])
    # assert
    assert code == 2
    assert "edgecomp-runtime[serve]" in capsys.readouterr().err
