"""The REST connection cap cannot be turned into a lockout: with every slot held
by clients that sent headers and part of a body, /healthz, /ready and /metrics still answer, and a
prediction gets in once those bodies have stalled; the cap is sized from the descriptor limit."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from serving.transports.connections import DEFAULT_CAP, connection_cap
from tests.onnx_models import LATENT, write_version
from tests.server_harness import Server

HALF_BODY = b"POST /v1/models/g:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"


def test_the_cap_is_sized_from_the_file_descriptor_limit():
    assert connection_cap(20_000) == DEFAULT_CAP
    assert connection_cap(1024) == (1024 - 256 - 16) // 2 < 1024 // 2  # 2 per connection, room kept
    assert connection_cap(20_000, 5000) == 5000 and connection_cap(1024, 5000) == connection_cap(1024)


def fresh_get(url: str) -> int | str:
    try:
        return httpx.get(url, timeout=10).status_code
    except httpx.TransportError as err:
        return type(err).__name__


def hold(server, held: list, count: int) -> None:
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", server.rest_port))
        sock.sendall(HALF_BODY)
        held.append(sock)


@pytest.mark.slow
def test_health_and_metrics_answer_at_the_cap_and_predictions_get_in(tmp_path):
    write_version(tmp_path / "g", 1)
    server = Server(["--model-base-path", str(tmp_path / "g"), "--max-connections", "40",
                     "--read-timeout-seconds", "60"], tmp_path / "server.log")
    held = []
    try:
        hold(server, held, 40)  # every slot held by a half-sent body
        health = [fresh_get(server.url + path) for path in ("/healthz", "/ready", "/metrics") for _ in range(5)]
        assert health == [200] * 15, health
        hold(server, held, 20)  # and more than the reserve besides
        deadline, answer = time.monotonic() + 20, None
        while time.monotonic() < deadline:  # the stalled bodies make room (the read timeout is 60 s)
            try:
                answer = httpx.post(server.url + "/v1/models/g:predict", json={"instances": [[0.0] * LATENT]},
                                    timeout=10)
                if answer.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        assert answer is not None and answer.status_code == 200, answer
    finally:
        for sock in held:
            sock.close()
        assert server.stop() == 0
