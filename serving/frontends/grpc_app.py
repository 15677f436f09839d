"""The gRPC port's services: TF Serving's PredictionService and ModelService, and the Open
Inference Protocol's GRPCInferenceService, over one request core and one malformed-message log."""

from __future__ import annotations

import grpc

from serving.core import RequestCore
from serving.frontends import tfserving_grpc, v2_grpc
from serving.frontends.grpc_common import MalformedLog


def build_handlers(core: RequestCore, metrics) -> list[grpc.GenericRpcHandler]:
    malformed = MalformedLog()
    return [*tfserving_grpc.handlers(core, metrics, malformed), *v2_grpc.handlers(core, metrics, malformed)]
