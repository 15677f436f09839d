"""Prometheus metrics of the ONNX model server, in a registry of its own (one per server).

Besides our `gan_serving_*` series it exports the ones TF Serving's Prometheus endpoint shows for
predictions, under TF Serving's names, labels and units, so a TF Serving dashboard works unchanged:
`:tensorflow:serving:request_count{model_name, status}` (a counter without the `_total` suffix,
status a canonical code name) and `:tensorflow:serving:request_latency{model_name, API, entrypoint}`
(a histogram in microseconds on TF's exponential buckets 10 * 1.8^i).

With `--workers N` every worker process records into prometheus_client's multiprocess files
(PROMETHEUS_MULTIPROC_DIR, set by `serving.transports.workers`), and a scrape of any worker shows the sum over
all of them: one server's numbers, whichever process answers.
"""

from __future__ import annotations

import logging
import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from serving import METRICS_DIR as MULTIPROCESS_DIR  # an inherited one is dropped in serving/__init__.py
from serving.protocols.tfserving.metric_names import (TF_LATENCY_BUCKETS, TF_REQUEST_COUNT, TF_REQUEST_LATENCY,  # noqa: F401
                                                      tf_serving_names)

log = logging.getLogger("serving.metrics")

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
MAX_TF_SERIES = 1000
# The model_name label of requests for a model the server does not serve: names come from clients,
# and a scan of made-up names must not grow /metrics (one series set for all of them).
NOT_SERVED = "(not served)"
class ServerMetrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.is_served = None  # set by the server: model name -> bool; None counts every name as its own
        self.requests = Counter("gan_serving_requests", "Requests by API, method and status code.",
                                ["api", "method", "code"], registry=self.registry)
        self.latency = Histogram("gan_serving_request_latency_seconds", "Request latency.", ["api", "method"],
                                 registry=self.registry)
        self.in_flight = Gauge("gan_serving_requests_in_flight", "Requests received and not yet answered.", ["api"],
                               registry=self.registry, multiprocess_mode="livesum")
        self.connections_closed = Counter("gan_serving_connections_closed", "REST connections the server closed: "
                                          "too slow to send a request, or over --max-connections.", ["reason"],
                                          registry=self.registry)
        self.batch_size = Histogram("gan_serving_batch_size", "Rows per onnxruntime call (after dynamic batching).",
                                    buckets=BATCH_BUCKETS, registry=self.registry)
        self.tf_request_count = Counter(TF_REQUEST_COUNT, "The total number of requests.", ["model_name", "status"],
                                        registry=self.registry)
        self._tf_series: set = set()  # (model, status) pairs counted, bounded by MAX_TF_SERIES
        self._children: dict = {}  # (metric, labels) -> labelled child: `labels()` costs a lock and a tuple per call
        self.tf_request_latency = Histogram(
            TF_REQUEST_LATENCY, "Distribution of wall time (in microseconds) for Tensorflow "
            "Serving request.", ["model_name", "API", "entrypoint"], buckets=TF_LATENCY_BUCKETS, registry=self.registry)

    def child(self, metric, *labels):
        """`metric.labels(*labels)`, looked up once: requests touch four or five series each."""
        key = (metric, labels)
        found = self._children.get(key)
        if found is None:
            try:
                found = metric.labels(*labels)
            except FileNotFoundError:  # --workers: someone deleted the metrics directory
                restore_directory()
                found = metric.labels(*labels)
            self._children[key] = found
        return found

    def observe(self, api: str, method: str, code: str, seconds: float, model: str | None = None,
                status: str | None = None) -> None:
        """One request; predictions with a model name also feed TF Serving's series (`status`: the
        canonical code, e.g. OK or NOT_FOUND; defaults to `code`)."""
        self.child(self.requests, api, method, code).inc()
        self.child(self.latency, api, method).observe(seconds)
        if method == "predict" and model is not None:
            if self.is_served is not None and not self.is_served(model):
                model = NOT_SERVED
            key = (model[:200], status or code)
            if key not in self._tf_series:
                if len(self._tf_series) >= MAX_TF_SERIES:
                    return  # model names come from clients: bound the series a scan of made-up names can create
                self._tf_series.add(key)
            self.child(self.tf_request_count, *key).inc()
            entrypoint = "GRPC" if api == "grpc" else "REST"
            self.child(self.tf_request_latency, key[0], "Predict", entrypoint).observe(seconds * 1e6)

    def exposition(self) -> bytes:
        if os.environ.get(MULTIPROCESS_DIR):  # --workers N: the sum over every worker's files
            if not os.path.isdir(os.environ[MULTIPROCESS_DIR]):
                restore_directory()
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            return tf_serving_names(generate_latest(registry))
        return tf_serving_names(generate_latest(self.registry))


def restore_directory() -> None:
    """--workers' metrics directory was deleted under us: make it again (the counts in it are lost,
    and the server says so) rather than answer 500 for every scrape and every new series."""
    path = os.environ[MULTIPROCESS_DIR]
    os.makedirs(path, exist_ok=True)
    log.error("the metrics directory %s was deleted while serving: made again; counts from before are lost", path)
