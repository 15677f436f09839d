"""MLServer (1.7) serving the generator over the v2 protocol (REST + gRPC): a custom runtime on
onnxruntime, with MLServer's adaptive batching (`max_batch_size`, `max_batch_time` in
model-settings.json, as its docs advise). `benchmarks.server_peers` writes the settings files and
runs `mlserver start DIR`."""

from __future__ import annotations

import sys
from pathlib import Path

from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse

sys.path.insert(0, str(Path(__file__).parent))
from common import session  # noqa: E402


class GeneratorRuntime(MLModel):
    async def load(self) -> bool:
        self.session = session(self.settings.parameters.uri)
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feed = {tensor.name: NumpyCodec.decode_input(tensor) for tensor in payload.inputs}
        images = self.session.run(["images"], feed)[0]
        return InferenceResponse(model_name=self.name, outputs=[NumpyCodec.encode_output("images", images)])
