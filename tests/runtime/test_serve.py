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

from helpers.broker import MosquittoBroker, find_mosquitto, free_port

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
        self.kept: dict[str, list] = {}
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, json.loads(m.payload)))
        self.subscribed = threading.Event()
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe(
            [(self.topics[name], 1) for name in ("forecast", "errors", "status")]
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
        """The next message on ``topic``; those on other topics are kept for their turn."""
        kept = self.kept.setdefault(self.topics[topic], [])
        if kept:
            return kept.pop(0)
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            got, body = self.messages.get(timeout=TIMEOUT)
            if got == self.topics[topic]:
                return body
            self.kept.setdefault(got, []).append(body)
        raise AssertionError(f"no message on {topic}")

    def forecasts_until(self, last_t: float) -> dict[float, list]:
        """Every forecast received (t -> forecast) until the one for ``last_t``."""
        seen: dict[float, list] = {}
        while last_t not in seen:
            body = self.next("forecast")
            seen[body["t"]] = body["forecast"]
        return seen

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
    # the last reading may still be in flight when the first forecast arrives: wait for it
    server.wait_health(200, readings=toy.input_len + 1)


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


# --- a gateway left unattended (issue 19) ---------------------------------------------------


def series(toy, n: int) -> tuple[list[dict], np.ndarray]:
    """``n`` consecutive readings of the toy's features, and their raw rows."""
    raw = toy.window(batch=n // toy.input_len + 1, seed=40).reshape(-1, len(toy.features))[:n]
    items = [
        {"t": T0 + i * PERIOD, "values": dict(zip(toy.features, row.tolist(), strict=True))}
        for i, row in enumerate(raw)
    ]
    return items, raw


def uninterrupted(artifact: Path, items: list[dict]) -> dict[float, list]:
    """The forecasts (t -> forecast) one stream gives for ``items`` pushed in one go."""
    import edgecomp_runtime as ecr

    stream = ecr.load(artifact).stream()
    out = {}
    for item in items:
        y = stream.push(item["t"], item["values"])
        if y is not None:
            out[item["t"]] = y.tolist()
    return out


def assert_same_forecasts(got: dict[float, list], expected: dict[float, list]) -> None:
    assert sorted(got) == sorted(expected)
    for t, forecast in expected.items():
        np.testing.assert_allclose(got[t], forecast, rtol=1e-5, atol=1e-4)


HOSTILE = [
    {"t": 10**400, "values": [1.0, 2.0, 3.0]},
    {"t": T0, "values": [10**400, 2.0, 3.0]},
    {"t": T0, "values": [1e300, 2.0, 3.0]},
    {"t": T0, "values": [True, "x", {"deep": [1]}]},
    {"t": {"nested": 1}, "values": [1.0, 2.0, 3.0]},
    {"t": "yesterday", "values": [1.0, 2.0, 3.0]},
    {"t": T0, "values": "1,2,3"},
    {"t": T0, "values": {"a": [[[]]]}},
    [1, 2, [3]],
    "just a string",
    12345678901234567890123456789012345678901234567890,
]


def test_no_reading_stops_processing(toy, make_artifact, broker, server_factory):
    # setup
    artifact = make_artifact()
    server = server_factory(artifact, broker)
    items, _ = series(toy, toy.input_len + 1)
    # execute: every hostile payload first, then a valid series
    for payload in HOSTILE:
        server.publish(payload)
    server.publish("[" * 100_000)  # too deep for the JSON parser
    for item in items:
        server.publish(item)
    got = server.forecasts_until(items[-1]["t"])
    health = server.wait_health(200, readings=len(items))
    # assert: everything reported with its reason, nothing stopped, the forecasts are right
    assert_same_forecasts(got, uninterrupted(artifact, items))
    rejected = health["counters"]["rejected"]
    assert rejected["invalid"] == 8 and rejected["malformed"] == 6  # [1, 2, [3]]: three
    assert health["counters"]["processed"] == len(items) and health["status"] == "ok"
    assert health["last_reading"]["t"] == items[-1]["t"] and health["last_reading"]["age_s"] >= 0
    errors = [server.next("errors") for _ in range(2)]
    assert {"reason", "error"} <= set(errors[0]) and (
        "reading" in errors[0] or "payload" in errors[0]
    )


def test_a_millisecond_timestamp_is_refused_and_never_saved(
    toy, make_artifact, broker, server_factory, tmp_path
):
    # setup
    artifact, state = make_artifact(), tmp_path / "s.npz"
    items, _ = series(toy, toy.input_len + 2)
    first = server_factory(artifact, broker, "--state", str(state), "--save-interval", "0")
    for item in items[:3]:
        first.publish(item)
    # execute: the same reading in milliseconds, then the rest
    first.publish({"t": items[3]["t"] * 1000, "values": items[3]["values"]})
    error = first.next("errors")
    for item in items[3:5]:
        first.publish(item)
    first.wait_health(200, readings=5)
    assert first.stop() == 0
    second = server_factory(artifact, broker, "--state", str(state))
    for item in items[5:]:
        second.publish(item)
    got = second.forecasts_until(items[-1]["t"])
    # assert
    assert error["reason"] == "future" and "looks like milliseconds" in error["error"]
    assert json.loads(error["reading"])["t"] == items[3]["t"] * 1000
    expected = uninterrupted(artifact, items)
    assert_same_forecasts({t: got[t] for t in expected}, expected)
    health = second.get("/health")[1]
    assert health["stream"]["too_late"] == 0 and health["stream"]["readings"] == len(items)


def test_stream_reset_by_cli_and_by_admin_command(
    toy, make_artifact, broker, server_factory, tmp_path
):
    # setup: a state whose position lies far ahead (saved with the clock check off)
    import edgecomp_runtime as ecr
    from edgecomp_runtime.__main__ import main

    artifact, state = make_artifact(), tmp_path / "s.npz"
    items, _ = series(toy, toy.input_len)
    stream = ecr.load(artifact).stream(max_ahead_s=float("inf"))
    stream.push(T0 * 1000, items[0]["values"])
    stream.save(state)
    # execute: the CLI resets the file; the admin command resets a running gateway
    code = main(["stream", "reset", str(artifact), "--state", str(state)])
    server = server_factory(artifact, broker, "--state", str(state), "--admin")
    for item in items:
        server.publish(item)
    forecast = server.next("forecast")
    request = urllib.request.Request(server.http + "/admin/reset", method="POST", data=b"")
    with urllib.request.urlopen(request, timeout=5) as response:
        reset = json.loads(response.read())
    after = server.get("/forecast")
    server.client.publish(server.topics["admin"], json.dumps({"command": "nope"}), qos=1)
    error = server.next("errors")
    # assert
    assert code == 0 and forecast["t"] == items[-1]["t"]
    assert reset == {"reset": True, "saved": True, "error": None} and after[0] == 404
    assert ecr.load(artifact).stream(resume=state).stats["resets"] == 2
    assert "admin" in error["error"]


def test_no_reading_lost_across_broker_restart_and_kill_9(
    toy, make_artifact, server_factory, tmp_path
):
    # setup: a broker that keeps sessions across its restart; saves every 4 readings at most
    artifact, state = make_artifact(), tmp_path / "s.npz"
    items, _ = series(toy, 40)
    expected = uninterrupted(artifact, items)
    extra = ("--state", str(state), "--save-every", "4", "--save-interval", "60")
    with MosquittoBroker(persistence=True) as broker:
        first = server_factory(artifact, broker, *extra)
        for item in items[:10]:
            first.publish(item)
        got = first.forecasts_until(items[9]["t"])
        # execute 1: the broker restarts; readings go out before the gateway is back
        broker.restart()
        first.wait_client()
        for item in items[10:20]:
            first.publish(item)
        got.update(first.forecasts_until(items[19]["t"]))
        # execute 2: kill -9 with unsaved readings; more readings while it is down
        first.process.kill()
        first.process.wait()
        for item in items[20:30]:
            first.publish(item)
        second = server_factory(artifact, broker, *extra)
        restored = second.get("/forecast")
        for item in items[30:]:
            second.publish(item)
        got.update(second.forecasts_until(items[-1]["t"]))
    # assert: every forecast of an uninterrupted run, identical
    assert_same_forecasts({t: got[t] for t in got if t in expected}, expected)
    assert restored[0] == 200  # the last forecast, from the state file or newer


def test_unwritable_state_is_reported_at_start(make_artifact, broker):
    # setup: /proc refuses new files whoever we are
    command = [sys.executable, "-m", "edgecomp_runtime", "serve", str(make_artifact())]
    command += ["--broker", f"127.0.0.1:{broker.port}", "--state", "/proc/edgecomp/s.npz"]
    # execute
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    # assert
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("edgecomp-runtime: error: --state: cannot save the stream")
    assert len(result.stderr.strip().splitlines()) == 1


def test_sigterm_publishes_offline_when_the_state_cannot_be_saved(
    toy, make_artifact, broker, server_factory, tmp_path
):
    # setup: the state folder is replaced by a file after start-up
    folder = tmp_path / "state"
    server = server_factory(make_artifact(), broker, "--state", str(folder / "s.npz"))
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()
    folder.write_text("not a folder")
    items, _ = series(toy, 2)
    for item in items:
        server.publish(item)
    error = server.next("errors")
    degraded = server.wait_health(503)
    # execute
    server.process.send_signal(signal.SIGTERM)
    code = server.process.wait(timeout=TIMEOUT)
    status = server.next("status")
    while status["state"] == "online":
        status = server.next("status")
    stderr = server.process.stderr.read()
    # assert
    assert "cannot save the stream state" in error["error"]
    assert any("cannot save" in problem for problem in degraded["problems"])
    assert code == 0 and status == {"state": "offline", "reason": "shutdown"}
    assert "Traceback" not in stderr and "cannot save the stream state" in stderr


def test_forecast_is_restored_and_any_manifest_is_served(
    toy, make_artifact, broker, server_factory, tmp_path
):
    # setup: a manifest with NaN in a text field
    artifact = make_artifact(manifest={"producer.note": float("nan")})
    state = tmp_path / "s.npz"
    items, _ = series(toy, toy.input_len)
    first = server_factory(artifact, broker, "--state", str(state))
    for item in items:
        first.publish(item)
    latest = first.next("forecast")
    assert first.stop() == 0
    # execute
    second = server_factory(artifact, broker, "--state", str(state))
    restored = second.get("/forecast")
    manifest = second.get("/manifest")
    # assert
    assert restored == (200, latest)
    assert manifest[0] == 200 and manifest[1]["producer"]["note"] is None
