"""A private Mosquitto broker on 127.0.0.1 for tests, examples, benchmarks (not the system one).

    with MosquittoBroker() as broker:      # free port, temp config, no persistence
        ...  broker.port ...
        broker.restart()                   # same port: clients must reconnect

Needs the ``mosquitto`` binary (Debian/Ubuntu: ``apt-get install mosquitto``); ``find_mosquitto``
returns None when it is missing so callers can skip with that reason.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from edgecomp._net import free_port

__all__ = ["BrokerError", "MosquittoBroker", "find_mosquitto", "free_port"]

_SEARCH = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/opt/homebrew/sbin/mosquitto")


class BrokerError(RuntimeError):
    """The broker binary is missing or did not start; the message says which and why."""


def find_mosquitto() -> str | None:
    """Path of the mosquitto binary (PATH, then the usual sbin folders), or None."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return next((path for path in _SEARCH if Path(path).is_file()), None)


class MosquittoBroker:
    """A mosquitto process listening on 127.0.0.1:``port``, anonymous; ``persistence=True`` keeps
    sessions and queued messages across ``restart()`` (saved in its temp folder)."""

    def __init__(
        self, port: int | None = None, *, binary: str | None = None, persistence: bool = False
    ) -> None:
        self.binary = binary or find_mosquitto()
        if self.binary is None:
            raise BrokerError(
                "mosquitto is not installed (Debian/Ubuntu: apt-get install mosquitto)"
            )
        self.port = port or free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="edgecomp-mqtt-")
        self.config = Path(self._dir.name) / "mosquitto.conf"
        keep = f"true\npersistence_location {self._dir.name}/" if persistence else "false"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence {keep}\n"
            f"log_dest file {Path(self._dir.name) / 'mosquitto.log'}\n"
        )
        self._process: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> MosquittoBroker:
        """Start the broker and wait until it accepts connections."""
        self._process = subprocess.Popen(
            [self.binary, "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                error = self._process.stderr.read().decode(errors="replace").strip()
                raise BrokerError(f"mosquitto exited with code {self._process.returncode}: {error}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise BrokerError(f"mosquitto did not listen on 127.0.0.1:{self.port} within {timeout} s")

    def stop(self) -> None:
        """Terminate the broker (SIGTERM, then SIGKILL after 5 s)."""
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process.stderr.close()
        self._process = None

    def restart(self) -> None:
        """Stop and start again on the same port."""
        self.stop()
        self.start()

    def __enter__(self) -> MosquittoBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._dir.cleanup()
