"""Prometheus metrics of the ONNX model server, in a registry of its own (one per server)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class ServerMetrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("gan_serving_requests", "Requests by API, method and status code.",
                                ["api", "method", "code"], registry=self.registry)
        self.latency = Histogram("gan_serving_request_latency_seconds", "Request latency.", ["api", "method"],
                                 registry=self.registry)
        self.in_flight = Gauge("gan_serving_requests_in_flight", "Requests received and not yet answered.", ["api"],
                               registry=self.registry)
        self.connections_closed = Counter("gan_serving_connections_closed", "REST connections the server closed: "
                                          "too slow to send a request, or over --max-connections.", ["reason"],
                                          registry=self.registry)
        self.batch_size = Histogram("gan_serving_batch_size", "Rows per onnxruntime call (after dynamic batching).",
                                    buckets=BATCH_BUCKETS, registry=self.registry)

    def observe(self, api: str, method: str, code: str, seconds: float) -> None:
        self.requests.labels(api, method, code).inc()
        self.latency.labels(api, method).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
