"""serve.Gateway without a broker: message handling, errors, state saving."""

from __future__ import annotations

import json

import numpy as np
import pytest

import edgecomp_runtime as ecr
from edgecomp_runtime.serve import Gateway, GatewayConfig, parse_address

T0 = 1_700_000_000.0


@pytest.fixture
def gateway(make_artifact):
    return Gateway(ecr.load(make_artifact()).stream(), GatewayConfig(device="site"))


def message(rows, start=0) -> bytes:
    return json.dumps(
        [{"t": T0 + (start + i) * 900, "values": row.tolist()} for i, row in enumerate(rows)]
    ).encode()


def test_a_message_with_a_full_window_gives_one_forecast(gateway, toy):
    # setup
    rows = toy.window(seed=21)
    # execute
    forecasts, errors = gateway.handle(message(rows))
    # assert
    assert errors == [] and len(forecasts) == 1
    np.testing.assert_allclose(forecasts[0]["forecast"], toy.reference(rows[None])[0], atol=1e-4)
    assert gateway.topics["readings"] == "edgecomp/site/readings"
    code, latest = gateway.routes()["/forecast"]()
    assert (code, json.loads(latest)) == (200, forecasts[0])


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"\xff\xfe", "not a JSON message"),
        (b"[1, 2]", 'each reading must be an object {"t": ..., "values": ...}'),
        (b'{"t": 1, "values": [1, 2]}', "expected 3 values, got 2"),
        (b'{"t": [1], "values": [1, 2, 3]}', "timestamp must be seconds"),
        (b"x" * (2**20 + 1), "more than 1048576"),
    ],
)
def test_bad_messages_give_one_line_errors(gateway, payload, error):
    # execute
    forecasts, errors = gateway.handle(payload)
    # assert
    assert forecasts == [] and errors and error in errors[0] and "\n" not in errors[0]
    assert gateway.errors == len(errors)
    assert gateway.routes()["/forecast"]() == (404, {"error": "no forecast yet"})


def test_state_is_saved_when_due_and_a_failed_save_is_reported(make_artifact, toy, tmp_path):
    # setup: the second gateway's state path lies under a file, so it cannot be written
    model = ecr.load(make_artifact())
    config = GatewayConfig(device="a", state=tmp_path / "a.npz", save_every=2, save_interval_s=60)
    good = Gateway(model.stream(), config)
    (tmp_path / "file").write_text("")
    bad = Gateway(model.stream(), GatewayConfig(device="b", state=tmp_path / "file" / "b.npz"))
    rows = toy.window(seed=22)
    # execute
    good.handle(message(rows[:1]))
    first_due = good.save_due()
    good.handle(message(rows[1:3], start=1))
    second_due = good.save_due()
    saved = good.save()
    bad.handle(message(rows[:1]))
    # assert: saving follows the count (the interval is long), never each reading
    assert (first_due, second_due, saved) == (False, True, True)
    assert model.stream(resume=tmp_path / "a.npz").stats["readings"] == 3
    assert bad.save() is False and "cannot save the stream state" in bad.save_error
    assert bad.health()["status"] == "degraded" and bad.save_error in bad.health()["problems"]


@pytest.mark.parametrize("text", ["localhost", ":1883", "host:", "host:99999", "host:x"])
def test_bad_addresses_are_refused(text):
    with pytest.raises(ValueError, match="--broker must be HOST:PORT"):
        parse_address(text, what="--broker")


@pytest.mark.parametrize(
    ("device", "prefix"), [("a/+", "edgecomp"), ("", "edgecomp"), ("a", "x/#")]
)
def test_bad_topic_levels_are_refused(make_artifact, device, prefix):
    stream = ecr.load(make_artifact()).stream()
    with pytest.raises(ValueError, match="must be a non-empty MQTT topic level"):
        Gateway(stream, GatewayConfig(device=device, prefix=prefix))


def test_http_port_in_use_is_one_line(make_artifact, capsys):
    # setup: a port already taken
    import socket

    from edgecomp_runtime.__main__ import main

    pytest.importorskip("paho.mqtt.client", reason="serve needs paho-mqtt (runtime[serve])")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # execute
        code = main(
            [
                "serve",
                str(make_artifact()),
                "--broker",
                "127.0.0.1:1",
                "--http",
                f"127.0.0.1:{port}",
            ]
        )
    # assert
    assert code == 2 and "cannot listen" in capsys.readouterr().err


def test_an_unexpected_failure_is_contained_and_counted(gateway, toy, monkeypatch):
    # setup: the stream fails once the way a bug or a broken engine would
    rows = toy.window(seed=23)
    real = gateway.stream.push_many

    def broken(readings):
        monkeypatch.setattr(gateway.stream, "push_many", real)
        raise RuntimeError("boom")

    monkeypatch.setattr(gateway.stream, "push_many", broken)
    # execute
    _, errors = gateway.handle_batch([message(rows[:2])])
    forecasts, later = gateway.handle(message(rows))
    # assert: reported per reading with its reason; the next message is processed
    assert [e["reason"] for e in errors] == ["internal", "internal"]
    assert errors[0]["error"] == "internal error: RuntimeError: boom" and "reading" in errors[0]
    assert later == [] and len(forecasts) == 1
    assert gateway.counters["rejected"]["internal"] == 2 and gateway.health()["errors"] == 2
