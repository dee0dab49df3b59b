"""``edgecomp-runtime serve``: readings in over MQTT, forecasts out over MQTT, status over HTTP.

Topics (``PREFIX`` = ``--topic-prefix``, default ``edgecomp``; ``DEVICE`` = ``--device``):

* ``PREFIX/DEVICE/readings`` (subscribed, QoS 1): ``{"t": seconds or ISO 8601, "values":
  {name: value} or [values]}``, or a JSON list of such objects; null / NaN / absent = missing.
  A graph artifact also takes ``"values"`` as [[C values] per node] or {node id: [C values]}.
  A model with known-future columns takes ``"future": {column: [next H values]}`` with each
  reading; a forecast due without them is rejected (reason ``missing_future``), never filled.
* ``PREFIX/DEVICE/forecast`` (published, retained): see ``Gateway.forecast_payload``.
* ``PREFIX/DEVICE/status`` (retained): ``{"state": "online" | "offline", ...}``; the broker
  publishes ``offline`` itself (last will) when the gateway vanishes.
* ``PREFIX/DEVICE/errors``: ``{"error": one line, "reason": kind, "reading" or "payload": the
  offending reading or the start of the bad message}``.
* ``PREFIX/DEVICE/admin`` (subscribed only with ``--admin``): ``{"command": "reset"}``.

Nothing lost: the MQTT session is persistent (MQTT 5, clean start off, a stable client id, a
session expiry), so the broker keeps readings published while the gateway is away and delivers
them when it is back. A reading is acknowledged only once it is processed and, with ``--state``,
saved: after a crash (kill -9) the broker sends the unsaved ones again and they are processed
from the saved state, giving the same forecasts.

Nothing stops it: paho's network thread only queues messages; one worker thread takes them in
batches, pushes them in time order (``Stream.push_many``, one ``predict`` for the forecasts due at
once) and publishes the results. Any error handling one message is contained, counted by kind
and published on the errors topic; ``/health`` turns 503 when the broker link is down, the
worker has stopped, or processing stalls while readings wait. The state is saved atomically at
most every ``save_interval_s`` (and after ``save_every`` readings), and at exit.
"""

from __future__ import annotations

import contextlib
import json
import math
import queue
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecomp_runtime.calendar import MissingFutureError
from edgecomp_runtime.errors import (
    EdgecompRuntimeError,
    EngineUnavailableError,
    InputError,
    ModelOutputError,
    TimestampError,
)
from edgecomp_runtime.step import stream_section
from edgecomp_runtime.stream import Emitted, Stream
from edgecomp_runtime.web import HttpLimits, RawJson, start_http

_INSTALL = "pip install 'edgecomp-runtime[serve]'"
_MAX_PAYLOAD = 1 << 20
_SHOWN = 200  # characters of an offending payload published with its error
_NUMBER = "%.9g".__mod__  # a float32 value as JSON text
REASONS = ("malformed", "invalid", "future", "missing_future", "model_output", "internal")


def _paho() -> Any:
    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        raise EngineUnavailableError(f"serve needs the 'paho-mqtt' package: {_INSTALL}") from None
    return mqtt


@dataclass(frozen=True)
class GatewayConfig:
    """How the gateway names its topics, saves its state and judges its health.

    Attributes:
        device: Topic segment naming this site (also the MQTT client id: ``edgecomp-DEVICE``).
        prefix: First topic segment.
        state: File the stream state is saved to (atomically), or None.
        save_interval_s: Save at most this often (seconds) while readings arrive.
        save_every: Save sooner once this many readings are unsaved.
        batch: At most this many messages per batch.
        stall_after_s: ``/health`` is degraded when readings wait this long without progress.
        admin: Accept admin commands (``POST /admin/reset``, the admin topic).
        session_expiry_s: How long the broker keeps the session while the gateway is away.
    """

    device: str = "gateway"
    prefix: str = "edgecomp"
    state: Path | None = None
    save_interval_s: float = 1.0
    save_every: int = 10_000
    batch: int = 256
    stall_after_s: float = 10.0
    admin: bool = False
    session_expiry_s: int = 7 * 86400

    def __post_init__(self) -> None:
        for name, value in (("device", self.device), ("topic prefix", self.prefix)):
            if not value or any(c in value for c in "+#\0"):
                raise ValueError(f"the {name} must be a non-empty MQTT topic level, got {value!r}")
        for name in ("save_interval_s", "stall_after_s"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 <= value < math.inf):
                raise ValueError(f"{name} must be a number of seconds >= 0, got {value!r}")
        for name in ("save_every", "batch"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")


class Gateway:
    """One stream fed from MQTT; forecasts published back; status read by the HTTP endpoint.

    Args:
        stream: The stream (``Model.stream()``), possibly resumed from a state file.
        config: Topics, state saving and health settings.
    """

    def __init__(self, stream: Stream, config: GatewayConfig | None = None) -> None:
        self.stream = stream
        self.config = config = config or GatewayConfig()
        base = f"{config.prefix}/{config.device}"
        names = ("readings", "forecast", "status", "errors", "admin")
        self.topics = {k: f"{base}/{k}" for k in names}
        self.connected = threading.Event()
        self.lock = threading.Lock()  # held while the stream changes or is saved
        self.started = time.time()
        self.counters: dict[str, Any] = dict.fromkeys(
            ("messages", "readings", "processed", "forecasts", "errors", "saves"), 0
        )
        self.counters["rejected"] = dict.fromkeys(REASONS, 0)
        self.save_error: str | None = None
        self._unsaved = 0
        self._saved_at = time.monotonic()
        self._last_processed: tuple[float, float] | None = None  # (reading t, wall time)
        self._latest: RawJson | None = None  # the last forecast payload, as published
        if stream.latest is not None:  # resumed: serve the last forecast again
            self._latest = self.forecast_payload(Emitted(*stream.latest))

    # message handling (one worker thread; handle() for direct use and tests)

    def handle(self, payload: bytes) -> tuple[list[dict[str, Any]], list[str]]:
        """Push the readings of one message: (forecast payloads, decoded; one-line errors).

        A bad reading is reported and skipped; the others in the message still count.
        """
        forecasts, errors = self.handle_batch([payload])
        return [json.loads(text) for text in forecasts], [error["error"] for error in errors]

    def handle_batch(self, payloads: list[bytes]) -> tuple[list[RawJson], list[dict]]:
        """Push the readings of several messages in time order; one ``predict`` for all due.

        Returns:
            (forecast payloads as JSON text, error payloads ``{"error", "reason", "reading" |
            "payload"}``). Never raises: an unexpected failure is reported as reason
            ``internal``.
        """
        readings: list[tuple[Any, Any]] = []
        shown: list[Any] = []
        errors: list[dict[str, Any]] = []
        for payload in payloads:
            self.counters["messages"] += 1
            self._parse(payload, readings, shown, errors)
        with self.lock:
            try:
                results = self.stream.push_many(readings)
            except Exception as exc:  # NOTE: contain anything (an engine failure, a bug)
                results = [exc] * len(readings)
            forecasts = self._collect(results, shown, errors)
            self._unsaved += len(readings)
        return forecasts, errors

    def _parse(self, payload: bytes, readings: list, shown: list, errors: list) -> None:
        try:
            if len(payload) > _MAX_PAYLOAD:
                raise ValueError(f"message of {len(payload)} bytes, more than {_MAX_PAYLOAD}")
            message = json.loads(payload)
        except (ValueError, RecursionError) as exc:
            self._error(errors, f"not a JSON message ({_first_line(exc)})", "malformed", payload)
            return
        for reading in message if isinstance(message, list) else [message]:
            self.counters["readings"] += 1
            if not isinstance(reading, dict) or "t" not in reading or "values" not in reading:
                error = 'each reading must be an object {"t": ..., "values": ...}'
                self._error(errors, error, "malformed", reading=reading)
                continue
            readings.append((reading["t"], reading["values"], reading.get("future")))
            shown.append(reading)

    def _collect(self, results: list, shown: list, errors: list) -> list[dict[str, Any]]:
        forecasts = []
        for result, reading in zip(results, shown, strict=True):
            if isinstance(result, Exception):
                self._error(errors, _first_line(result), _reason(result), reading=reading)
                continue
            self.counters["processed"] += 1
            self._last_processed = (reading.get("t"), time.time())
            if result is not None:
                self._latest = self.forecast_payload(result)
                forecasts.append(self._latest)
        self.counters["forecasts"] += len(forecasts)
        return forecasts

    def _error(
        self, errors: list, text: str, reason: str, payload: bytes = b"", reading: Any = None
    ) -> None:
        self.counters["errors"] += 1
        self.counters["rejected"][reason] += 1
        item: dict[str, Any] = {"error": text, "reason": reason}
        if reading is None:
            item["payload"] = payload[:_SHOWN].decode("utf-8", "replace")
        else:
            item["reading"] = _short_json(reading)
        errors.append(item)

    @property
    def errors(self) -> int:
        """Errors reported so far (bad messages, readings and forecasts)."""
        return self.counters["errors"]

    def forecast_payload(self, emitted: Emitted) -> RawJson:
        """JSON text: ``t`` newest slot (s), ``times`` the H forecast times, ``targets``,
        ``forecast`` [H][F_out] (float32 values written with the 9 significant digits that
        round-trip them; null where not finite), ``mode``."""
        model, period = self.stream.model, self.stream.period_s
        head = {
            "t": emitted.t,
            "times": [emitted.t + (h + 1) * period for h in range(model.horizon)],
            "targets": model.targets,
            "mode": self.stream.mode,
        }
        text = json.dumps(head, allow_nan=False)
        return RawJson(f'{text[:-1]}, "forecast": {_numbers(emitted.forecast)}}}')

    # state

    def save_due(self) -> bool:
        """True when unsaved readings wait and the interval or the count says save now."""
        if self.config.state is None or self._unsaved == 0:
            return False
        waited = time.monotonic() - self._saved_at
        return waited >= self.config.save_interval_s or self._unsaved >= self.config.save_every

    def save(self) -> bool:
        """Save the stream state now; False (and ``save_error`` set) when it cannot be written."""
        with self.lock:
            try:
                self.stream.save(self.config.state)
            except (OSError, ValueError) as exc:  # a full or read-only disk must not stop it
                self.save_error = f"cannot save the stream state to {self.config.state}: {exc}"
                return False
            finally:
                self._saved_at = time.monotonic()
            self._unsaved, self.save_error = 0, None
            self.counters["saves"] += 1
            return True

    def reset(self) -> tuple[int, dict[str, Any]]:
        """Admin: reset the stream (window and position), save it, forget the last forecast."""
        with self.lock:
            self.stream.reset()
            self._latest = None
            self._unsaved += 1
        saved = self.config.state is None or self.save()
        return (200 if saved else 500), {"reset": True, "saved": saved, "error": self.save_error}

    # HTTP

    def routes(self) -> dict[str, Any]:
        """The HTTP GET routes: /health, /manifest, /forecast."""
        return {"/health": self._health, "/manifest": self._manifest, "/forecast": self._forecast}

    def post_routes(self) -> dict[str, Any]:
        """The HTTP POST routes: ``/admin/reset`` when admin commands are on, else none."""
        return {"/admin/reset": self.reset} if self.config.admin else {}

    def health(self, queued: int = 0, worker_alive: bool = True, idle_s: float = 0.0) -> dict:
        """The /health body: problems (empty when ok), link, counters, last reading, state."""
        problems = []
        if not self.connected.is_set():
            problems.append("the MQTT broker is not connected")
        if not worker_alive:
            problems.append("the processing thread has stopped")
        if queued and idle_s > self.config.stall_after_s:
            problems.append(f"{queued} messages waiting, no progress for {idle_s:.0f} s")
        if self.save_error:
            problems.append(self.save_error)
        last = self._last_processed
        return {
            "status": "degraded" if problems else "ok",
            "problems": problems,
            "mqtt": "connected" if self.connected.is_set() else "disconnected",
            "mode": self.stream.mode,
            "uptime_s": round(time.time() - self.started, 3),
            "last_reading": None
            if last is None
            else {"t": last[0], "age_s": round(time.time() - last[1], 3)},
            "queued": queued,
            "counters": json.loads(json.dumps(self.counters)),
            "stream": dict(self.stream.stats),
            "dropped": self.stream.stats["too_late"],
            "errors": self.counters["errors"],
            "state": None if self.config.state is None else str(self.config.state),
        }

    def _health(self) -> tuple[int, dict[str, Any]]:
        body = self.health()
        return (200 if body["status"] == "ok" else 503), body

    def _manifest(self) -> tuple[int, dict[str, Any]]:
        model = self.stream.model
        section = stream_section(model.manifest) or {}
        keys = ("kind", "exact", "allowed", "reason", "error_budget")
        verdict = {k: section[k] for k in keys if k in section}
        summary = {**model.info(), "period_s": self.stream.period_s}
        summary["readings"] = _reading_form(model.spec, self.stream.features)
        return 200, {**summary, "stream": {"mode": self.stream.mode, **verdict}}

    def _forecast(self) -> tuple[int, Any]:
        latest = self._latest
        return (404, {"error": "no forecast yet"}) if latest is None else (200, latest)


class Pump:
    """paho's callbacks queue messages; one worker thread processes, publishes, saves, acks."""

    def __init__(self, gateway: Gateway, client: Any) -> None:
        self.gateway, self.client = gateway, client
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.stopping = threading.Event()
        self.progress = time.monotonic()
        self._unacked: list[tuple[int, int]] = []
        self.thread = threading.Thread(target=self._run, name="edgecomp-pump", daemon=True)

    def health(self) -> tuple[int, dict[str, Any]]:
        """/health: the gateway's body with this pump's queue and liveness."""
        queued = self.queue.qsize()
        idle = time.monotonic() - self.progress
        body = self.gateway.health(queued, self.thread.is_alive(), idle if queued else 0.0)
        return (200 if body["status"] == "ok" else 503), body

    def on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            return
        topics = [(self.gateway.topics["readings"], 1)]
        if self.gateway.config.admin:
            topics.append((self.gateway.topics["admin"], 1))
        client.subscribe(topics)
        status = json.dumps({"state": "online"})
        client.publish(self.gateway.topics["status"], status, qos=1, retain=True)
        self.gateway.connected.set()

    def on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self.gateway.connected.clear()

    def on_message(self, client: Any, userdata: Any, message: Any) -> None:
        self.queue.put((message.topic, message.payload, message.mid, message.qos))

    def _run(self) -> None:
        while not self.stopping.is_set():
            batch = self._take()
            try:
                if batch:
                    self._process(batch)
                if self.gateway.save_due():
                    self._save_and_ack()
            except Exception as exc:  # NOTE: the last line of defence: report, go on
                self._report(exc)
            self.progress = time.monotonic()

    def _report(self, exc: Exception) -> None:
        self.gateway.counters["rejected"]["internal"] += 1
        # NOTE: if publishing fails too, the broker link is gone; the counter still shows it
        with contextlib.suppress(Exception):
            self._publish_errors([{"error": _first_line(exc), "reason": "internal"}])

    def _take(self) -> list[tuple[str, bytes, int, int]]:
        try:
            batch = [self.queue.get(timeout=min(0.2, self.gateway.config.save_interval_s or 0.2))]
        except queue.Empty:
            return []
        while len(batch) < self.gateway.config.batch:
            try:
                batch.append(self.queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _process(self, batch: list[tuple[str, bytes, int, int]]) -> None:
        acks = [(mid, qos) for _, _, mid, qos in batch if qos > 0]
        try:
            self._handle(batch)
        finally:  # acked once handled (and, with a state file, once saved)
            if self.gateway.config.state is None:
                self._ack(acks)
            else:
                self._unacked += acks

    def _handle(self, batch: list[tuple[str, bytes, int, int]]) -> None:
        admin = self.gateway.topics["admin"]
        payloads = [payload for topic, payload, _, _ in batch if topic != admin]
        forecasts, errors = self.gateway.handle_batch(payloads)
        for topic, payload, _, _ in batch:
            if topic == admin:
                errors += self._admin(payload)
        self._publish_errors(errors)
        for text in forecasts:
            self.client.publish(self.gateway.topics["forecast"], text, qos=1, retain=True)

    def _admin(self, payload: bytes) -> list[dict[str, Any]]:
        try:
            command = json.loads(payload).get("command")
        except (ValueError, AttributeError, RecursionError):
            command = None
        if command != "reset":
            return [{"error": 'admin: expected {"command": "reset"}', "reason": "malformed"}]
        status, body = self.gateway.reset()
        return [] if status == 200 else [{"error": body["error"], "reason": "internal"}]

    def _publish_errors(self, errors: list[dict[str, Any]]) -> None:
        for error in errors:
            self.client.publish(self.gateway.topics["errors"], json.dumps(error), qos=1)

    def _save_and_ack(self) -> None:
        saved = self.gateway.save()
        if not saved:
            self._publish_errors([{"error": self.gateway.save_error, "reason": "internal"}])
        # NOTE: ack even when the save failed: holding acks would stall the broker's delivery
        self._ack(self._unacked)
        self._unacked = []

    def _ack(self, acks: list[tuple[int, int]]) -> None:
        for mid, qos in acks:
            self.client.ack(mid, qos)

    def stop(self) -> None:
        """Finish the batch in hand, then save (acking what the save covers) when configured."""
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join(timeout=30)
        if self.gateway.config.state is not None:
            if self.gateway.save():
                self._ack(self._unacked)
            else:
                print(f"edgecomp-runtime: error: {self.gateway.save_error}", file=sys.stderr)


def serve(
    stream: Stream,
    *,
    broker: tuple[str, int],
    http: tuple[str, int] | None,
    config: GatewayConfig | None = None,
    limits: HttpLimits | None = None,
    stop: threading.Event | None = None,
) -> dict[str, Any]:
    """Run the gateway until ``stop`` is set (or SIGINT / SIGTERM in the main thread).

    Prints one JSON line when it is up: ``{"event": "started", "http": "host:port", ...}``.

    Returns:
        The gateway's counters and the stream's at exit.

    Raises:
        EngineUnavailableError: paho-mqtt is not installed (names the extra to install).
        ValueError: The HTTP address cannot be bound, or the state file cannot be written.
    """
    mqtt = _paho()
    gateway = Gateway(stream, config)
    if gateway.config.state is not None and not gateway.save():
        raise ValueError(f"--state: {gateway.save_error}")
    stop = stop or _stop_on_signals()
    client = _client(mqtt, gateway)
    pump = Pump(gateway, client)
    client.on_connect, client.on_disconnect = pump.on_connect, pump.on_disconnect
    client.on_message = pump.on_message
    server = _http(gateway, pump, http, limits)
    pump.thread.start()
    _connect(mqtt, client, broker, gateway.config)
    address = None if server is None else f"{server.server_address[0]}:{server.server_address[1]}"
    print(json.dumps({"event": "started", "http": address, "topics": gateway.topics}), flush=True)
    try:
        stop.wait()
    finally:
        _shutdown(gateway, pump, client, server)
    return {**json.loads(json.dumps(gateway.counters)), "stream": dict(stream.stats)}


def _http(gateway: Gateway, pump: Pump, http: Any, limits: HttpLimits | None) -> Any:
    if http is None:
        return None
    routes = {**gateway.routes(), "/health": pump.health}
    try:
        return start_http(http[0], http[1], routes, post=gateway.post_routes(), limits=limits)
    except OSError as exc:
        raise ValueError(f"--http {http[0]}:{http[1]}: cannot listen ({exc})") from None


def _client(mqtt: Any, gateway: Gateway) -> Any:
    client = mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"edgecomp-{gateway.config.device}",
        protocol=mqtt.MQTTv5,
        reconnect_on_failure=True,
        manual_ack=True,
    )
    offline = json.dumps({"state": "offline", "reason": "connection lost"})
    client.will_set(gateway.topics["status"], offline, qos=1, retain=True)
    client.reconnect_delay_set(min_delay=1, max_delay=4)
    client.suppress_exceptions = True  # a failing callback is logged; the network thread goes on
    return client


def _connect(mqtt: Any, client: Any, broker: tuple[str, int], config: GatewayConfig) -> None:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = config.session_expiry_s
    properties.ReceiveMaximum = 65535  # unacked readings the broker may send ahead
    client.connect_async(
        broker[0], broker[1], keepalive=10, clean_start=False, properties=properties
    )
    client.loop_start()


def _shutdown(gateway: Gateway, pump: Pump, client: Any, server: Any) -> None:
    pump.stop()
    try:
        if gateway.connected.is_set():
            status = json.dumps({"state": "offline", "reason": "shutdown"})
            info = client.publish(gateway.topics["status"], status, qos=1, retain=True)
            info.wait_for_publish(timeout=2)
    except (RuntimeError, ValueError, OSError) as exc:  # NOTE: paho raises these when offline
        print(f"edgecomp-runtime: warning: offline status not published ({exc})", file=sys.stderr)
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


def _reading_form(spec: dict[str, Any], features: list[str]) -> dict[str, Any]:
    """What a reading carries: its features, the node layout and the known-future columns."""
    future, layout = spec.get("future") or {}, spec.get("layout")
    form: dict[str, Any] = {"features": features, "future_columns": future.get("columns", [])}
    form["calendar"] = future.get("calendar", [])
    if layout:
        form["nodes"], form["channels"] = layout["nodes"], layout["channels"]
    return form


def _reason(exc: Exception) -> str:
    if isinstance(exc, TimestampError):
        return "future"
    if isinstance(exc, MissingFutureError):
        return "missing_future"
    if isinstance(exc, InputError):
        return "invalid"
    return "model_output" if isinstance(exc, ModelOutputError) else "internal"


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    return (
        text
        if isinstance(exc, EdgecompRuntimeError | ValueError)
        else (f"internal error: {type(exc).__name__}: {text}")
    )


def _short_json(value: Any) -> str:
    try:
        text = json.dumps(value)
    except (ValueError, TypeError, RecursionError):  # e.g. an int too long to write
        text = f"<{type(value).__name__} that cannot be shown>"
    return text[:_SHOWN]


def _numbers(forecast: np.ndarray) -> str:
    """A JSON array of arrays of float32 values ("%.9g" round-trips float32, and is twice as fast
    as json.dumps of their float64 reprs); null where a value is not finite (a forecast read back
    from a state file could be; ``predict`` never returns one)."""
    rows = np.asarray(forecast, dtype=np.float32).tolist()
    number = _NUMBER if np.isfinite(forecast).all() else _number
    return "[" + ",".join("[" + ",".join(map(number, row)) + "]" for row in rows) + "]"


def _number(value: float) -> str:
    return _NUMBER(value) if math.isfinite(value) else "null"


def parse_address(text: str, *, what: str) -> tuple[str, int]:
    """``host:port`` -> (host, port); ValueError naming ``what`` when malformed."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{what} must be HOST:PORT, got {text!r}")
    return host, int(port)
