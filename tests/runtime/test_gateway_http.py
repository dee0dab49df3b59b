"""The gateway's HTTP endpoint under load and abuse, and its health verdicts (no broker needed)."""

from __future__ import annotations

import json
import socket
import threading
import urllib.error
import urllib.request

import pytest

import edgecomp_runtime as ecr
from edgecomp_runtime.serve import Gateway, GatewayConfig
from edgecomp_runtime.web import HttpLimits, dumps, start_http


def get(url: str) -> tuple[int, dict, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


@pytest.fixture
def server():
    started = []

    def make(routes, **limits):
        running = start_http("127.0.0.1", 0, routes, limits=HttpLimits(**limits))
        started.append(running)
        host, port = running.server_address
        return running, f"http://{host}:{port}"

    yield make
    for running in started:
        running.shutdown()


def test_saturated_pool_answers_503_at_once(server):
    # setup: one worker, one waiting request allowed, and a route that blocks until released
    release = threading.Event()
    _, url = server({"/slow": lambda: (200, {"ok": release.wait(20)})}, workers=1, max_pending=2)
    answers: list = []
    threads = [
        threading.Thread(target=lambda: answers.append(get(url + "/slow"))) for _ in range(5)
    ]
    # execute
    for thread in threads:
        thread.start()
    while len(answers) < 3:  # the three beyond the limit are answered while two still wait
        threading.Event().wait(0.02)
    release.set()
    for thread in threads:
        thread.join(timeout=20)
    # assert
    codes = sorted(code for code, _, _ in answers)
    assert codes == [200, 200, 503, 503, 503]
    busy = next(a for a in answers if a[0] == 503)
    assert busy[1]["Retry-After"] == "1" and "busy" in busy[2]["error"]


def test_idle_connections_hold_no_worker_and_are_closed(server):
    # setup: 300 clients connect and send nothing
    running, url = server({"/health": lambda: (200, {"status": "ok"})}, timeout_s=1.0)
    idle = [socket.create_connection(running.server_address) for _ in range(300)]
    try:
        # execute
        code, _, body = get(url + "/health")
        idle[0].settimeout(10)
        closed = idle[0].recv(1)
    finally:
        for sock in idle:
            sock.close()
    # assert: the new client was served, and the idle one was hung up on after its timeout
    assert (code, body) == (200, {"status": "ok"}) and closed == b""


def test_bad_requests_and_route_bugs_get_answers(server):
    # setup
    _, url = server({"/bug": lambda: 1 / 0, "/nan": lambda: (200, {"x": float("nan")})})
    # execute
    bug, missing, nan = get(url + "/bug"), get(url + "/nope"), get(url + "/nan")
    # assert
    assert bug[0] == 500 and "ZeroDivisionError" in bug[2]["error"]
    assert missing[0] == 404 and "routes: ['/bug', '/nan']" in missing[2]["error"]
    assert nan[:1] == (200,) and nan[2] == {"x": None}
    assert dumps({"a": [float("inf"), 1.5]}) == '{"a": [null, 1.5]}'


def test_health_turns_degraded_when_processing_stalls(make_artifact):
    # setup
    gateway = Gateway(ecr.load(make_artifact()).stream(), GatewayConfig(stall_after_s=5))
    gateway.connected.set()
    # execute
    fine = gateway.health(queued=3, worker_alive=True, idle_s=1)
    stalled = gateway.health(queued=3, worker_alive=True, idle_s=60)
    dead = gateway.health(queued=0, worker_alive=False)
    # assert
    assert fine["status"] == "ok" and fine["problems"] == []
    assert stalled["status"] == "degraded" and "no progress for 60 s" in stalled["problems"][0]
    assert dead["problems"] == ["the processing thread has stopped"]
