"""The C load generator's glue (benchmarks/h2load.py): the request bodies it sends are what our
server's own v2 decoders read, and its summary and error accounting are read right. h2load itself
is not needed: the summary below is h2load 1.52's, as printed on this project's machine."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from benchmarks import h2load
from serving.protocols.open_inference import grpc_api as v2_grpc
from serving.protos import open_inference as oip

SUMMARY = """finished in 3.00s, 1481.67 req/s, 4.58MB/s
requests: 4445 total, 4477 started, 4445 done, 4443 succeeded, 2 failed, 0 errored, 0 timeout
status codes: 4440 2xx, 0 3xx, 3 4xx, 0 5xx
traffic: 13.74MB (14406677) total, 15.37KB (15735) headers (space savings 95.63%), 13.48MB (14125560) data
"""


def test_the_grpc_body_is_one_framed_model_infer_request_our_server_decodes(tmp_path):
    z = np.arange(8, dtype=np.float32).reshape(1, 8)
    paths = h2load.write_payloads({"z": z}, tmp_path)
    framed = paths["grpc"].read_bytes()
    assert framed[0] == 0 and struct.unpack(">I", framed[1:5])[0] == len(framed) - 5  # uncompressed, length
    request = oip.ModelInferRequest.FromString(framed[5:])
    assert request.model_name == "generator" and [t.name for t in request.inputs] == ["z"]
    assert list(request.inputs[0].shape) == [1, 8] and request.inputs[0].datatype == "FP32"

    class Core:
        def check_shapes(self, info, shapes):
            return 8

    decoded = v2_grpc.decode_inputs(Core(), None, request)
    np.testing.assert_array_equal(decoded["z"], z)
    body = json.loads(paths["http"].read_text())
    assert body["inputs"][0]["data"] == z.ravel().tolist() and body["inputs"][0]["shape"] == [1, 8]


def test_the_summary_is_read_and_grpc_errors_are_counted_by_missing_bytes():
    counts = h2load.counters(SUMMARY)
    assert counts == {"done": 4445, "succeeded": 4443, "failed": 2, "non_2xx": 3, "data_bytes": 14125560}
    durations = np.array([1000, 2000, 3000, 4000] * 25)
    good = 3180  # 4442 good responses' bytes: one call of the 4443 "succeeded" carried a grpc-status, no message
    cell = h2load.summarize("grpc", counts, durations, 3.0, good)
    assert cell["errors"] == 2 + 3 + (4443 - 14125560 // good) == 6
    assert abs(cell["rps"] - 4445 / 3) < 1e-9 and cell["p50_ms"] == 2.5 and cell["p99_ms"] == 4.0
    assert h2load.summarize("http", counts, durations, 3.0, good)["errors"] == 5  # REST: status codes only


def test_a_run_without_a_summary_is_an_error_not_zero():
    with pytest.raises(RuntimeError, match="no summary"):
        h2load.counters("connect to 127.0.0.1:1 failed\n")
