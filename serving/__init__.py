"""The onnxruntime server and its clients.

Before any module here imports prometheus_client (it picks its value class from the environment
then): a PROMETHEUS_MULTIPROC_DIR inherited from the environment, not made by our own `--workers`
supervisor (which sets GAN_SERVE_METRICS_DIR beside it), would have one process write into and sum
the files of processes long dead. It is dropped here, and the server says so once logging is set up.
"""

import os as _os

METRICS_DIR, OWNED_METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR", "GAN_SERVE_METRICS_DIR"
IGNORED_METRICS_DIR = None
if _os.environ.get(METRICS_DIR) and _os.environ.get(OWNED_METRICS_DIR) != _os.environ[METRICS_DIR]:
    IGNORED_METRICS_DIR = _os.environ.pop(METRICS_DIR)
