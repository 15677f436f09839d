"""What every peer adapter does alike: one onnxruntime session on the CPU with the benchmark's thread
settings (intra-op threads from PEER_THREADS, one inter-op thread), as our server's."""

from __future__ import annotations

import os


def session(path: str):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(os.environ.get("PEER_THREADS", "1"))
    options.inter_op_num_threads = 1
    return ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
