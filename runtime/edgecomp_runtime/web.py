"""The gateway's small HTTP endpoint: JSON routes on an asyncio loop in one thread.

``GET /health``, ``GET /manifest``, ``GET /forecast`` (see ``serve.Gateway.routes``), and
``POST`` routes when the gateway enables admin commands. Each connection carries one request
(``Connection: close``). The loop only reads requests and writes answers; the route functions
run on a small, bounded thread pool. What keeps it standing:

* a listen backlog of ``HttpLimits.backlog`` (the kernel queues that many connections);
* ``HttpLimits.timeout_s`` per connection to send a request and take the answer: an idle or slow
  client is closed then, and holds no thread meanwhile;
* at most ``HttpLimits.max_pending`` requests waiting for the pool: beyond that the answer is
  ``503`` with ``Retry-After`` at once, never a stall;
* request lines and headers are bounded; a body is read and discarded up to 64 KiB;
* any body is serialised: a non-finite float (NaN in a manifest's text field, say) becomes null.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

Route = Callable[[], tuple[int, Any]]
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
_REASONS.update({500: "Internal Server Error", 503: "Service Unavailable"})
_MAX_LINE = 8192
_MAX_HEADERS = 64
_MAX_BODY = 1 << 16


class RawJson(str):
    """JSON text a route returns as it is (already encoded, e.g. the published forecast)."""


@dataclass(frozen=True)
class HttpLimits:
    """Bounds of the HTTP endpoint.

    Attributes:
        workers: Threads running route functions.
        max_pending: Requests allowed to wait for a worker; more get 503 at once.
        timeout_s: Seconds a connection has to send its request and take the answer.
        backlog: The listen backlog.
    """

    workers: int = 4
    max_pending: int = 64
    timeout_s: float = 5.0
    backlog: int = 128


class HttpServer:
    """A running endpoint: ``server_address`` (host, port) and ``shutdown()``."""

    def __init__(
        self, routes: dict[str, Route], post: dict[str, Route], limits: HttpLimits
    ) -> None:
        self.routes, self.post, self.limits = routes, post, limits
        self.server_address: tuple[str, int] = ("", 0)
        self.pending = 0
        self._pool = ThreadPoolExecutor(limits.workers, thread_name_prefix="edgecomp-http")
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self, host: str, port: int) -> HttpServer:
        """Bind and serve on a daemon thread; OSError when the address cannot be bound."""
        self._server = self._loop.run_until_complete(
            asyncio.start_server(
                self._connection, host, port, backlog=self.limits.backlog, limit=_MAX_LINE
            )
        )
        self.server_address = self._server.sockets[0].getsockname()[:2]
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="edgecomp-http-loop", daemon=True
        )
        self._thread.start()
        return self

    def shutdown(self) -> None:
        """Stop accepting, end open connections, close the loop's thread and the pool."""
        if self._thread is None:
            return
        closing = asyncio.run_coroutine_threadsafe(self._close(), self._loop)
        try:
            closing.result(timeout=5)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            self._thread = None
            if not self._loop.is_running():
                self._loop.close()
            self._pool.shutdown(wait=False)

    async def _close(self) -> None:
        self._server.close()
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        timeout = self.limits.timeout_s
        try:
            method, path = await asyncio.wait_for(_read_request(reader), timeout)
            status, body = await self._answer(method, path)
            writer.write(_response(status, body))
            await asyncio.wait_for(writer.drain(), timeout)
        except (asyncio.TimeoutError, OSError, ValueError, EOFError, asyncio.LimitOverrunError):
            pass  # a slow, idle or malformed client: closed below
        finally:
            writer.close()

    async def _answer(self, method: str, path: str) -> tuple[int, Any]:
        table = {"GET": self.routes, "POST": self.post}.get(method)
        if table is None:
            return 405, {"error": f"method {method!r:.20} not allowed; use GET or POST"}
        route = table.get(path.split("?", 1)[0].rstrip("/") or "/")
        if route is None:
            return 404, {"error": f"no route {method} {path!r:.60}; routes: {sorted(table)}"}
        if self.pending >= self.limits.max_pending:
            return 503, {"error": "busy: too many requests waiting; retry in a second"}
        self.pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, _call, route)
        finally:
            self.pending -= 1


def start_http(
    host: str,
    port: int,
    routes: dict[str, Route],
    *,
    post: dict[str, Route] | None = None,
    limits: HttpLimits | None = None,
) -> HttpServer:
    """Serve ``routes`` (path -> function returning (status, JSON body)) on a daemon thread.

    Returns:
        The server; ``server.server_address`` holds the bound port (``port=0`` picks a free one),
        ``server.shutdown()`` stops it.

    Raises:
        OSError: The address cannot be bound.
    """
    return HttpServer(routes, post or {}, limits or HttpLimits()).start(host, port)


def _call(route: Route) -> tuple[int, Any]:
    try:
        return route()
    except Exception as exc:  # NOTE: a route's bug must answer 500, never drop the connection
        return 500, {"error": f"internal error: {type(exc).__name__}: {str(exc)[:200]}"}


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str]:
    parts = (await reader.readline()).decode("latin-1").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise ValueError("not an HTTP request line")
    length = 0
    for _ in range(_MAX_HEADERS):
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    else:
        raise ValueError("too many headers")
    if not 0 <= length <= _MAX_BODY:
        raise ValueError("request body too large")
    await reader.readexactly(length)
    return parts[0], parts[1]


def _response(status: int, body: Any) -> bytes:
    data = (body if isinstance(body, RawJson) else dumps(body)).encode()
    head = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
        "Content-Type: application/json",
        f"Content-Length: {len(data)}",
        "Connection: close",
    ]
    if status == 503:
        head.append("Retry-After: 1")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + data


def dumps(body: Any) -> str:
    """JSON text of ``body``; non-finite floats become null (strict JSON has no NaN)."""
    try:
        return json.dumps(body, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(body), allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value
