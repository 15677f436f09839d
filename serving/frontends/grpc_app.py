"""The gRPC port's services: TF Serving's PredictionService and ModelService, and the Open
Inference Protocol's GRPCInferenceService, over one request core and one intake (the wait for each
call's message, the malformed-message log)."""

from __future__ import annotations

import grpc

from serving.core import RequestCore
from serving.frontends import tfserving_grpc, v2_grpc
from serving.frontends.grpc_common import GrpcIntake, MessageWait


def build_handlers(core: RequestCore, metrics, read_timeout: float, max_waiting: int) -> list[grpc.GenericRpcHandler]:
    """`read_timeout`: seconds a call's request message may take to arrive; `max_waiting`: calls that
    may wait for theirs at once."""
    intake = GrpcIntake(MessageWait(read_timeout, max_waiting))
    return [*tfserving_grpc.handlers(core, metrics, intake), *v2_grpc.handlers(core, metrics, intake)]
