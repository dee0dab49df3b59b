"""``edgecomp-runtime serve``: readings in over MQTT, forecasts out over MQTT, status over HTTP.

Topics (``PREFIX`` = ``--topic-prefix``, default ``edgecomp``; ``DEVICE`` = ``--device``):

* ``PREFIX/DEVICE/readings`` (subscribed): ``{"t": seconds or ISO 8601, "values": {name: value}
  or [values]}``, or a JSON list of such objects; null / NaN / absent = missing.
* ``PREFIX/DEVICE/forecast`` (published, retained): see ``Gateway.forecast_payload``.
* ``PREFIX/DEVICE/status`` (retained): ``{"state": "online" | "offline", ...}``; the broker
  publishes ``offline`` itself (last will) when the gateway vanishes.
* ``PREFIX/DEVICE/errors``: ``{"error": one line, "payload": the start of the bad message}``.

paho-mqtt reconnects after the broker restarts (the session re-subscribes on every connect); the
window lives in this process, so it survives. With ``--state FILE`` it also survives a restart
of the gateway: the stream state is saved atomically every ``--save-every`` readings and at exit.
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from pathlib import Path
from typing import Any

from edgecomp_runtime.errors import EdgecompRuntimeError, EngineUnavailableError
from edgecomp_runtime.step import stream_section
from edgecomp_runtime.stream import Stream
from edgecomp_runtime.web import start_http

_INSTALL = "pip install 'edgecomp-runtime[serve]'"
_MAX_PAYLOAD = 1 << 20


def _paho() -> Any:
    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        raise EngineUnavailableError(f"serve needs the 'paho-mqtt' package: {_INSTALL}") from None
    return mqtt


class Gateway:
    """One stream fed from MQTT; forecasts published back; state read by the HTTP endpoint.

    Args:
        stream: The stream (``Model.stream()``).
        device: Topic segment naming this site.
        prefix: First topic segment.
        state: File the stream state is saved to (atomically), or None.
        save_every: Save after this many readings.
    """

    def __init__(
        self,
        stream: Stream,
        *,
        device: str,
        prefix: str = "edgecomp",
        state: Path | None = None,
        save_every: int = 1,
    ) -> None:
        for name, value in (("device", device), ("topic prefix", prefix)):
            if not value or any(c in value for c in "+#\0"):
                raise ValueError(f"the {name} must be a non-empty MQTT topic level, got {value!r}")
        self.stream = stream
        self.topics = {
            k: f"{prefix}/{device}/{k}" for k in ("readings", "forecast", "status", "errors")
        }
        self.state, self.save_every = state, save_every
        self.connected = threading.Event()
        self.lock = threading.Lock()
        self.started = time.time()
        self.errors = 0
        self._unsaved = 0
        self._latest: dict[str, Any] | None = None

    def handle(self, payload: bytes) -> tuple[list[dict[str, Any]], list[str]]:
        """Push the readings of one message: (forecast payloads to publish, one-line errors).

        A bad reading is reported and skipped; the others in the message still count.
        """
        try:
            if len(payload) > _MAX_PAYLOAD:
                raise ValueError(f"message of {len(payload)} bytes, more than {_MAX_PAYLOAD}")
            message = json.loads(payload)
        except (ValueError, RecursionError) as exc:
            with self.lock:
                self.errors += 1
            return [], [f"not a JSON message ({_first_line(exc)})"]
        forecasts, errors = [], []
        with self.lock:
            for reading in message if isinstance(message, list) else [message]:
                try:
                    forecast = self._push(reading)
                except (EdgecompRuntimeError, ValueError, TypeError) as exc:
                    errors.append(_first_line(exc))
                    self.errors += 1
                    continue
                if forecast is not None:
                    self._latest = self.forecast_payload(forecast)
                    forecasts.append(self._latest)
            if self.state is not None and self._unsaved >= self.save_every:
                try:
                    self.save()
                except OSError as exc:  # a full or read-only disk must not stop the gateway
                    errors.append(f"cannot save the stream state to {self.state}: {exc}")
        return forecasts, errors

    def _push(self, reading: Any) -> Any:
        if not isinstance(reading, dict) or "t" not in reading or "values" not in reading:
            raise ValueError('each reading must be an object {"t": ..., "values": ...}')
        forecast = self.stream.push(reading["t"], reading["values"])
        self._unsaved += 1
        return forecast

    def forecast_payload(self, forecast: Any) -> dict[str, Any]:
        """``t``: newest slot (s), ``times``: the H forecast times, ``forecast``: [H][F_out]."""
        model = self.stream.model
        return {
            "t": self.stream.slot_time(),
            "times": [self.stream.slot_time(h + 1) for h in range(model.horizon)],
            "targets": model.targets,
            "forecast": [[_number(v) for v in row] for row in forecast.tolist()],
            "mode": self.stream.mode,
        }

    def save(self) -> None:
        """Save the stream state now (caller holds ``lock``)."""
        self.stream.save(self.state)
        self._unsaved = 0

    def routes(self) -> dict[str, Any]:
        """The HTTP routes: /health, /manifest, /forecast."""
        return {"/health": self._health, "/manifest": self._manifest, "/forecast": self._forecast}

    def _health(self) -> tuple[int, dict[str, Any]]:
        up = self.connected.is_set()
        with self.lock:
            stats = dict(self.stream.stats)
            errors = self.errors
        body = {
            "status": "ok" if up else "degraded",
            "mqtt": "connected" if up else "disconnected",
            "mode": self.stream.mode,
            "uptime_s": round(time.time() - self.started, 3),
            "stream": stats,
            "errors": errors,
        }
        return (200 if up else 503), body

    def _manifest(self) -> tuple[int, dict[str, Any]]:
        model = self.stream.model
        section = stream_section(model.manifest) or {}
        keys = ("kind", "exact", "allowed", "reason", "error_budget")
        verdict = {k: section[k] for k in keys if k in section}
        summary = {**model.info(), "period_s": self.stream.period_s}
        return 200, {**summary, "stream": {"mode": self.stream.mode, **verdict}}

    def _forecast(self) -> tuple[int, dict[str, Any]]:
        with self.lock:
            latest = self._latest
        return (404, {"error": "no forecast yet"}) if latest is None else (200, latest)

    # MQTT callbacks (paho's network thread)

    def on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            return
        client.subscribe(self.topics["readings"], qos=1)
        client.publish(self.topics["status"], json.dumps({"state": "online"}), qos=1, retain=True)
        self.connected.set()

    def on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self.connected.clear()

    def on_message(self, client: Any, userdata: Any, message: Any) -> None:
        forecasts, errors = self.handle(message.payload)
        for payload in forecasts:
            client.publish(self.topics["forecast"], json.dumps(payload), qos=1, retain=True)
        for error in errors:
            text = message.payload[:200].decode("utf-8", "replace")
            client.publish(
                self.topics["errors"], json.dumps({"error": error, "payload": text}), qos=1
            )


def serve(
    stream: Stream,
    *,
    broker: tuple[str, int],
    http: tuple[str, int] | None,
    device: str,
    prefix: str = "edgecomp",
    state: Path | None = None,
    save_every: int = 1,
    stop: threading.Event | None = None,
) -> dict[str, Any]:
    """Run the gateway until ``stop`` is set (or SIGINT / SIGTERM in the main thread).

    Prints one JSON line when it is up: ``{"event": "started", "http": "host:port", ...}``.

    Returns:
        The stream's counters at exit.

    Raises:
        EngineUnavailableError: paho-mqtt is not installed (names the extra to install).
    """
    mqtt = _paho()
    gateway = Gateway(stream, device=device, prefix=prefix, state=state, save_every=save_every)
    try:
        server = None if http is None else start_http(http[0], http[1], gateway.routes())
    except OSError as exc:
        raise ValueError(f"--http {http[0]}:{http[1]}: cannot listen ({exc})") from None
    stop = stop or _stop_on_signals()
    client = _client(mqtt, gateway, device)
    client.connect_async(broker[0], broker[1], keepalive=10)
    client.loop_start()
    address = None if server is None else f"{server.server_address[0]}:{server.server_address[1]}"
    print(json.dumps({"event": "started", "http": address, "topics": gateway.topics}), flush=True)
    try:
        stop.wait()
    finally:
        _shutdown(gateway, client, server)
    return dict(stream.stats)


def _client(mqtt: Any, gateway: Gateway, device: str) -> Any:
    client = mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"edgecomp-{device}",
        reconnect_on_failure=True,
    )
    client.will_set(gateway.topics["status"], json.dumps({"state": "offline"}), qos=1, retain=True)
    client.reconnect_delay_set(min_delay=1, max_delay=4)
    client.on_connect, client.on_disconnect = gateway.on_connect, gateway.on_disconnect
    client.on_message = gateway.on_message
    return client


def _shutdown(gateway: Gateway, client: Any, server: Any) -> None:
    with gateway.lock:
        if gateway.state is not None:
            gateway.save()
    if gateway.connected.is_set():
        info = client.publish(
            gateway.topics["status"], json.dumps({"state": "offline"}), qos=1, retain=True
        )
        info.wait_for_publish(timeout=2)
    client.disconnect()
    client.loop_stop()
    if server is not None:
        server.shutdown()


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    return stop


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _number(value: float) -> float | None:
    return value if math.isfinite(value) else None


def parse_address(text: str, *, what: str) -> tuple[str, int]:
    """``host:port`` -> (host, port); ValueError naming ``what`` when malformed."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{what} must be HOST:PORT, got {text!r}")
    return host, int(port)
