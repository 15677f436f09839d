"""KServe's Python ModelServer (kserve 0.21) serving the generator over the v2 protocol (REST + gRPC).

    python kserve_generator.py MODEL.onnx HTTP_PORT GRPC_PORT [WORKERS]

KServe's batching is its Go agent (the InferenceService's `batcher`), outside the Python server: a
ModelServer run alone batches nothing. `predict` is async and hands onnxruntime to a thread, so the
event loop keeps accepting while a request computes (a sync `predict` would hold the loop).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import kserve
from kserve import InferOutput, InferRequest, InferResponse

sys.path.insert(0, str(Path(__file__).parent))
from common import session  # noqa: E402


class Generator(kserve.Model):
    def __init__(self, name: str, path: str):
        super().__init__(name)
        self.path = path
        self.load()

    def load(self) -> bool:
        self.session = session(self.path)
        self.ready = True
        return True

    def __getstate__(self):  # workers > 1: the model goes to each REST process by pickle, the session does not
        return {k: v for k, v in self.__dict__.items() if k != "session"}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.session = session(self.path)

    async def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:
        feed = {tensor.name: tensor.as_numpy() for tensor in payload.inputs}
        images = await asyncio.get_running_loop().run_in_executor(None, self.session.run, ["images"], feed)
        output = InferOutput(name="images", shape=list(images[0].shape), datatype="FP32")
        output.set_data_from_numpy(images[0], binary_data=False)
        return InferResponse(response_id=payload.id or "", model_name=self.name, infer_outputs=[output])


if __name__ == "__main__":
    model_path, http_port, grpc_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    workers = int(sys.argv[4]) if len(sys.argv) > 4 else 1  # ModelServer's processes: REST only, gRPC stays in one
    server = kserve.ModelServer(http_port=http_port, grpc_port=grpc_port, workers=workers, enable_latency_logging=False)
    server.start([Generator("generator", model_path)])
