"""The gateway's small HTTP endpoint (stdlib ``http.server`` in a thread): read-only JSON.

``GET /health`` (200 while connected to the broker, else 503), ``GET /manifest`` (the artifact's
summary and stream section) and ``GET /forecast`` (the latest forecast, 404 before the first).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Route = Callable[[], tuple[int, dict[str, Any]]]


def start_http(host: str, port: int, routes: dict[str, Route]) -> ThreadingHTTPServer:
    """Serve ``routes`` (path -> function returning (status, JSON body)) on a daemon thread.

    Returns:
        The server; ``server.server_address`` holds the bound port (``port=0`` picks a free one),
        ``server.shutdown()`` stops it.
    """

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            route = routes.get(self.path.split("?", 1)[0].rstrip("/") or "/")
            status, body = (
                (404, {"error": f"no route {self.path!r:.60}"}) if route is None else route()
            )
            data = json.dumps(body, allow_nan=False).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            """Quiet: a gateway's stderr is for errors."""

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="edgecomp-http", daemon=True).start()
    return server
