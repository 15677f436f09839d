"""Hostile and careless clients against the real server: tiny messages
that claim huge tensors, bodies that crash parsers, taken ports, stalled and vanishing clients, and
overload. Each test asserts what the server answers and that a good request still succeeds."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time

import grpc
import httpx
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from benchmarks.attacks import dribble_rest, stalled_grpc
from tests.conftest import REPO
from tests.server_harness import Server

pytestmark = pytest.mark.slow
Z1 = [[0.1] * 8]
# Small limits so that the attacks below bite quickly: a 1 s read timeout, 40 connections, and a
# queue of one batch of 8 rows in which a request waits 3 s for company (8 rows run at once).
LIMITS = ["--read-timeout-seconds", "1", "--idle-timeout-seconds", "2", "--max-connections", "40",
          "--max-batch-size", "8", "--max-enqueued-batches", "1", "--batch-timeout-ms", "3000",
          "--num-batch-threads", "1", "--max-request-batch", "16"]


@pytest.fixture(scope="module")
def server(tiny_export, tmp_path_factory):
    running = Server(["--model", str(tiny_export / "onnx" / "generator.onnx"), *LIMITS],
                     tmp_path_factory.mktemp("attacks") / "server.log")
    yield running
    assert running.stop() == 0
    log = open(running.log_path).read()
    assert "Traceback" not in log, log[-3000:]


def stub(server):
    return prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}"))


def good_requests_succeed(server):
    """One 8-row request (a full batch: it runs at once) over each protocol."""
    z = np.zeros((8, 8), np.float32)
    r = httpx.post(server.url + "/v1/models/generator:predict", json={"instances": z.tolist()}, timeout=30)
    assert r.status_code == 200 and np.array(r.json()["predictions"]).shape == (8, 28, 28, 1)
    request = predict_pb2.PredictRequest(model_spec={"name": "generator"})
    request.inputs["z"].CopyFrom(tf.make_tensor_proto(z))
    assert tf.make_ndarray(stub(server).Predict(request, timeout=30).outputs["images"]).shape == (8, 28, 28, 1)


def count(metrics: dict, prefix: str) -> float:
    return sum(value for key, value in metrics.items() if key.startswith(prefix))


# -- a 42-byte message claiming a 2**28-value tensor ---------------------------------------


def claimed(shape, dtype=tf.float32, **values):
    request = predict_pb2.PredictRequest(model_spec={"name": "generator"})
    tensor = request.inputs["z"]
    tensor.dtype = dtype.as_datatype_enum
    for size in shape:
        tensor.tensor_shape.dim.add(size=size)
    for field, value in values.items():
        getattr(tensor, field).extend(value) if isinstance(value, list) else setattr(tensor, field, value)
    return request


def test_tensors_claiming_huge_shapes_are_refused_before_allocation(server):
    rss_before = server.rss_kib()
    attacks = [
        (claimed([1, 2**28], float_val=[1.0]), "must have shape [batch, 8]"),      # the 42-byte request
        (claimed([2**28, 8], float_val=[1.0]), "per-request limit of 16"),
        (claimed([2**62, 2**62], float_val=[1.0]), "must have shape [batch, 8]"),
        (claimed([4, 8], tensor_content=b"\0" * 12), "12 bytes of tensor_content"),
        (claimed([4, 8], float_val=[1.0, 2.0]), "holds 2 values"),
        (claimed([1, 8], tf.int8, int_val=[300] * 8), "bad input tensor"),
    ]
    assert len(attacks[0][0].SerializeToString()) == 42
    for request, message in attacks * 3:
        with pytest.raises(grpc.RpcError) as err:
            stub(server).Predict(request, timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and message in err.value.details()
    assert server.rss_kib() - rss_before < 100 * 1024  # each of the first two once cost +2.1 GB
    metrics = server.metrics()
    assert metrics['gan_serving_requests_total{api="grpc",code="INVALID_ARGUMENT",method="predict"}'] >= 18
    assert 'gan_serving_requests_total{api="grpc",code="OK",method="predict"}' not in metrics
    good_requests_succeed(server)


# -- every failure is a JSON error with the right status, and counted -----------------------


HOSTILE = [
    ("generator:predict", "[" * 100_000 + "]" * 100_000, 400, "nested too deeply"),
    ("generator:predict", '{"instances": [[' + "1" * 5000 + "]]}", 400, "4300 digits"),
    ("generator:predict", '{"instances": [[1, 2, 3, 4, 5, 6, 7, 8], [1, 2]]}', 400, "rectangular"),
    ("generator:predict", '{"inputs": {"z": [[1, 2, 3, 4, 5, 6, 7, 8], [[1], 2, 3, 4, 5, 6, 7, 8]]}}', 400,
     "rectangular"),
    ("generator:predict", '{"instances": [{"z": [0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]}, {"z": 3}]}', 400,
     "rectangular"),
    ("generator:predict", '{"instances": [[1e400, 0, 0, 0, 0, 0, 0, 0]]}', 400, "NaN or infinity"),
    ("generator:predict", b'{"instances": "\xff\xfe"}', 400, "JSON Parse error"),
    ("generator:predict", '{"instances": [[1, 2, 3, 4, 5, 6, 7, 8]], "signature_name": 5}', 400, "must be a string"),
    ("generator/versions/" + "9" * 4301 + ":predict", '{"instances": [[0, 0, 0, 0, 0, 0, 0, 0]]}', 400,
     "must be a whole number"),
    ("generator/versions/-1", None, 400, "must be a whole number"),
    ("generator/versions/1/../../../etc/passwd", None, 400, "Malformed request"),  # TF Serving's answer for /v1/
]


@pytest.mark.parametrize("path, body, status, message", HOSTILE, ids=[m for *_, m in HOSTILE])
def test_hostile_rest_requests_get_json_errors(server, path, body, status, message):
    url = f"{server.url}/v1/models/{path}"
    response = httpx.post(url, content=body) if body is not None else httpx.get(url)
    assert response.status_code == status and message in response.json()["error"], response.text[:300]


def test_every_rest_failure_is_counted_under_its_status(server):
    before = server.metrics()
    for path, body, *_ in HOSTILE:
        url = f"{server.url}/v1/models/{path}"
        httpx.post(url, content=body) if body is not None else httpx.get(url)
    after = server.metrics()
    counted = count(after, 'gan_serving_requests_total{api="rest"') - count(before, 'gan_serving_requests_total{api="rest"')
    assert counted == len(HOSTILE)
    assert count(after, 'gan_serving_requests_total{api="rest",code="400"') - \
        count(before, 'gan_serving_requests_total{api="rest",code="400"') == sum(s == 400 for _, _, s, _ in HOSTILE)
    good_requests_succeed(server)


# -- a taken port is refused in one line -----------------------------------------------------


@pytest.mark.parametrize("taken", ["--grpc-port", "--rest-port"])
def test_a_taken_port_is_refused_with_one_line(server, tiny_export, taken):
    ports = {"--rest-port": server.rest_port if taken == "--rest-port" else 0,
             "--grpc-port": server.grpc_port if taken == "--grpc-port" else 0}
    with socket.socket() as probe:  # the other protocol gets a free port
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    ports = {flag: port or free for flag, port in ports.items()}
    second = subprocess.run([sys.executable, "-m", "serving.server", "--model", str(tiny_export / "onnx" / "generator.onnx"),
                             "--rest-port", str(ports["--rest-port"]), "--grpc-port", str(ports["--grpc-port"])],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert second.returncode != 0
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and taken in lines[0] and "in use" in lines[0], second.stderr
    good_requests_succeed(server)  # the first server keeps its port and its clients


# -- stalled, slow-drip and excess connections -----------------------------------------------


def closed_by_server(sock: socket.socket, within: float = 20.0) -> bool:
    """True once the server closes the connection (EOF or reset), reading whatever it sent first."""
    sock.settimeout(within)
    try:
        while sock.recv(4096):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_stalled_and_slow_drip_connections_are_closed(server):
    before = server.metrics()
    stalled = []
    for kind in ["silent", "half_headers", "half_body"] * 8:
        sock = socket.create_connection(("127.0.0.1", server.rest_port))
        if kind == "half_headers":
            sock.sendall(b"POST /v1/models/generator:predict HTTP/1.1\r\nHost: x\r\n")
        elif kind == "half_body":
            sock.sendall(b"POST /v1/models/generator:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
        stalled.append(sock)
    grpc_silent = [socket.create_connection(("127.0.0.1", server.grpc_port)) for _ in range(8)]
    drip = socket.create_connection(("127.0.0.1", server.rest_port))
    dripping = threading.Event()

    def slowloris():  # one header byte every 0.2 s: never idle, never done
        for byte in b"GET /ready HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 200:
            if dripping.is_set():
                return
            try:
                drip.send(bytes([byte]))
            except OSError:
                return
            time.sleep(0.2)

    thread = threading.Thread(target=slowloris)
    thread.start()
    good_requests_succeed(server)  # served while they stall
    try:
        assert all(closed_by_server(sock) for sock in stalled)
        assert closed_by_server(drip)  # closed even though a byte keeps arriving
        assert all(closed_by_server(sock, within=30) for sock in grpc_silent)  # gRPC's handshake timeout
    finally:
        dripping.set()
        thread.join(timeout=10)
        for sock in stalled + grpc_silent + [drip]:
            sock.close()
    after = server.metrics()
    closed = 'gan_serving_connections_closed_total{reason="read_timeout"}'
    assert after.get(closed, 0) - before.get(closed, 0) >= 17  # silent and half-header ones, and the drip
    assert after.get('gan_serving_requests_total{api="rest",code="408",method="predict"}', 0) >= 8  # half bodies
    good_requests_succeed(server)


def test_connections_over_the_cap_make_room_for_good_clients(server):
    key = 'gan_serving_connections_closed_total{reason="over_capacity"}'
    before = server.metrics().get(key, 0)
    held = [socket.create_connection(("127.0.0.1", server.rest_port)) for _ in range(60)]
    try:  # 40 are allowed: each newer one closes the oldest silent one; the rest go at the read timeout
        good_requests_succeed(server)  # a good client is not locked out by the silent ones
        assert all(closed_by_server(sock, within=10) for sock in held)
    finally:
        for sock in held:
            sock.close()
    assert server.metrics().get(key, 0) - before >= 20
    good_requests_succeed(server)


# -- gRPC calls whose request message never arrives ----------------------------------------------------


def test_grpc_calls_that_never_send_their_message_cannot_lock_others_out(server):
    """3 connections keep 120 Predict calls open that never send their message, reopening each one
    the server ends (the server lets 40 wait and 80 run): other clients' calls still succeed within
    10 s, and the stalled ones end as DEADLINE_EXCEEDED (1 s --read-timeout-seconds) or, past 40
    waiting, RESOURCE_EXHAUSTED, each one counted in /metrics."""
    before = server.metrics()
    stop, ended = threading.Event(), []
    attacker = threading.Thread(target=asyncio.run, args=(stalled_grpc(server.grpc_port, stop, 3, 40, ended),))
    attacker.start()
    try:
        time.sleep(1.5)  # every slot the attacker can take is taken, and the first ones have timed out
        for _ in range(3):
            started = time.monotonic()
            good_requests_succeed(server)
            assert time.monotonic() - started < 10
    finally:
        stop.set()
        attacker.join(timeout=30)
    codes = set(ended)
    assert codes and codes <= {grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
    after = server.metrics()
    keys = [f'gan_serving_requests_total{{api="grpc",code="{code}",method="predict"}}'
            for code in ("DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED")]
    assert sum(after.get(k, 0) - before.get(k, 0) for k in keys) >= len(ended)


def test_dribbled_bodies_over_the_cap_cannot_lock_others_out(tiny_export, tmp_path):
    """50 connections (the cap is 40) each send a request's headers and then one body byte every
    0.3 s, reconnecting whenever the server closes them, against a 30 s read timeout: a dribble is
    slow however regular its bytes, so newcomers make room by closing dribblers, and good requests
    and health probes are answered throughout."""
    server = Server(["--model", str(tiny_export / "onnx" / "generator.onnx"), *LIMITS, "--read-timeout-seconds", "30"],
                    tmp_path / "server.log")
    stop = threading.Event()
    dribbler = threading.Thread(target=dribble_rest, args=(server.rest_port, stop, 50, 0.3, 1000))
    dribbler.start()
    try:
        time.sleep(1.5)  # the cap is reached and the dribblers are past their grace
        probes = []
        for _ in range(3):
            started = time.monotonic()
            good_requests_succeed(server)
            assert time.monotonic() - started < 10
            probes += [httpx.get(server.url + path, timeout=10).status_code for path in ("/healthz", "/ready") * 3]
        assert probes == [200] * len(probes)
        assert server.metrics()['gan_serving_connections_closed_total{reason="over_capacity"}'] >= 3
    finally:
        stop.set()
        dribbler.join(timeout=30)
        assert server.stop() == 0


# -- a bounded queue, and abandoned work never computed ----------------------------------------


def test_a_full_queue_answers_429_and_resource_exhausted(server):
    z2, z7 = np.zeros((2, 8), np.float32), np.zeros((7, 8), np.float32)
    first = {}
    waiting = threading.Thread(target=lambda: first.update(r=httpx.post(
        server.url + "/v1/models/generator:predict", json={"instances": z2.tolist()}, timeout=30)))
    waiting.start()  # 2 rows wait 3 s for company in a queue that holds 8
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and server.metrics().get('gan_serving_requests_in_flight{api="rest"}') != 1:
        time.sleep(0.02)
    full = httpx.post(server.url + "/v1/models/generator:predict", json={"instances": z7.tolist()})
    assert full.status_code == 429 and "queue is full" in full.json()["error"] and full.headers["retry-after"] == "1"
    request = predict_pb2.PredictRequest(model_spec={"name": "generator"})
    request.inputs["z"].CopyFrom(tf.make_tensor_proto(z7))
    with pytest.raises(grpc.RpcError) as err:
        stub(server).Predict(request, timeout=10)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "queue is full" in err.value.details()
    waiting.join(timeout=30)
    assert first["r"].status_code == 200  # the queued one is still served


def test_work_of_clients_that_left_is_never_computed(server):
    """Three gRPC calls cancelled and three REST clients that hang up while their rows wait in the
    queue (3 s for company): once the server has counted them, a later one-row request waits out the
    batch delay and is computed alone; the six abandoned rows never are. Every step waits for a
    state the server reports, never for the clock."""
    before = server.metrics()
    request = predict_pb2.PredictRequest(model_spec={"name": "generator"})
    request.inputs["z"].CopyFrom(tf.make_tensor_proto(np.zeros((1, 8), np.float32)))

    def in_flight(api):
        return server.metrics().get(f'gan_serving_requests_in_flight{{api="{api}"}}', 0)

    def wait_until(condition, what, timeout=20):
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, what
            time.sleep(0.02)

    calls = [stub(server).Predict.future(request, timeout=60) for _ in range(3)]
    wait_until(lambda: in_flight("grpc") == 3, "the gRPC calls never reached the queue")
    body = json.dumps({"instances": Z1}).encode()
    hanging = []
    for _ in range(3):
        sock = socket.create_connection(("127.0.0.1", server.rest_port))
        sock.sendall(b"POST /v1/models/generator:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        hanging.append(sock)
    wait_until(lambda: in_flight("rest") == 3, "the REST requests never reached the queue")
    for call in calls:
        call.cancel()
    for sock in hanging:
        sock.close()  # hang up while queued
    assert all(call.cancelled() for call in calls)
    key = 'gan_serving_requests_total{api="grpc",code="CANCELLED",method="predict"}'
    rest_key = 'gan_serving_requests_total{api="rest",code="499",method="predict"}'
    wait_until(lambda: (lambda after: after.get(key, 0) - before.get(key, 0) >= 3
                        and after.get(rest_key, 0) - before.get(rest_key, 0) >= 3)(server.metrics()),
               "the server did not count the abandoned requests")
    # One row, queued after them: it waits the batch delay and runs alone, so a batch has run since.
    late = httpx.post(server.url + "/v1/models/generator:predict", json={"instances": Z1}, timeout=60)
    assert late.status_code == 200
    after = server.metrics()
    assert after.get(key, 0) - before.get(key, 0) == 3
    assert after.get(rest_key, 0) - before.get(rest_key, 0) == 3
    assert after["gan_serving_batch_size_sum"] == before["gan_serving_batch_size_sum"] + 1  # not one abandoned row
    good_requests_succeed(server)
    assert server.metrics()["gan_serving_batch_size_sum"] == before["gan_serving_batch_size_sum"] + 1 + 16
