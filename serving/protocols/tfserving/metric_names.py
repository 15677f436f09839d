"""The series TF Serving's Prometheus endpoint shows for predictions, by its names, labels and units, so
a TF Serving dashboard reads ours unchanged (`serving.metrics` records them beside our own)."""

from __future__ import annotations

import re

TF_REQUEST_COUNT = ":tensorflow:serving:request_count"       # {model_name, status}: a counter, no _total
TF_REQUEST_LATENCY = ":tensorflow:serving:request_latency"   # {model_name, API, entrypoint}: microseconds
TF_LATENCY_BUCKETS = tuple(10 * 1.8**i for i in range(33))   # TF's exponential buckets, 10 * 1.8^i
# TF Serving names its counter without prometheus_client's `_total` suffix and has no `_created` series.
_TF_COUNT_CREATED = re.compile(rb"^(?:# (?:HELP|TYPE) )?" + re.escape(TF_REQUEST_COUNT.encode()) + rb"_created[ {].*\n",
                               re.MULTILINE)


def tf_serving_names(text: bytes) -> bytes:
    """An exposition with TF Serving's exact request counter: `:tensorflow:serving:request_count{...}`."""
    name = TF_REQUEST_COUNT.encode()
    text = _TF_COUNT_CREATED.sub(b"", text)
    return re.sub(rb"^((?:# (?:HELP|TYPE) )?)" + re.escape(name) + rb"_total", rb"\1" + name, text, flags=re.MULTILINE)
