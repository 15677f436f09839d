"""What each port serves: every protocol mounted on its transport.

REST (`create_app`), one Starlette app:

    /v1/...                           TF Serving's REST API (serving.protocols.tfserving.rest_api)
    /v2/...                           the Open Inference Protocol (serving.protocols.open_inference.rest_api)
    /samples, /v1/models/<m>/...samples.png   what the model draws (serving.samples_page)
    /ready  /healthz  /metrics  /monitoring/prometheus/metrics  (+ the monitoring config's path)

Slow clients and the connection cap are handled below the app (`serving.transports.connections`); a
connection on a reserve slot gets health and metrics only.

gRPC (`grpc_handlers`): TF Serving's PredictionService and ModelService and the Open Inference
Protocol's GRPCInferenceService, over one intake (the wait for each call's message, the
malformed-message log).
"""

from __future__ import annotations

import logging

import grpc
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from serving import samples_page
from serving.engine.core import RequestCore
from serving.log_throttle import ThrottledLog
from serving.protocols.open_inference import grpc_api as open_inference_grpc
from serving.protocols.open_inference import rest_api as open_inference_rest
from serving.protocols.tfserving import grpc_api as tfserving_grpc
from serving.protocols.tfserving import rest_api as tfserving_rest
from serving.transports.connections import ProbationGate
from serving.transports.grpc_common import GrpcIntake, MessageWait
from serving.transports.rest_common import RestContext, endpoint, error

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ALL_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH"]
log = logging.getLogger("serving.rest")
internal_errors = ThrottledLog(log)  # a bug a client can trigger at will: one line per 10 s


async def ready(ctx: RestContext, request: Request) -> Response:
    """200 only while predictions can be answered for every configured model; else 503 and why."""
    ok, reason = ctx.core.readiness()
    body = {"status": "ready"} if ok else {"status": "not ready", "reason": reason}
    return JSONResponse(body, status_code=200 if ok else 503)


async def healthz(ctx: RestContext, request: Request) -> Response:
    return JSONResponse({"status": "alive"})


async def prometheus(ctx: RestContext, request: Request) -> Response:
    return Response(ctx.metrics.exposition(), media_type=PROMETHEUS_CONTENT_TYPE)


def create_app(ctx: RestContext, prometheus_path: str | None = None):
    """The ASGI app; `prometheus_path`: the monitoring config's path, served beside /metrics."""
    async def http_error(request: Request, exc: HTTPException):
        ctx.metrics.observe("rest", "other", str(exc.status_code), 0.0)
        return error(exc.status_code, f"{exc.detail}: {request.method} {request.url.path[:200]}")

    async def internal_error(request: Request, exc: Exception):  # raised outside a handler, e.g. in routing
        ctx.metrics.observe("rest", "other", "500", 0.0)
        return error(500, f"internal error: {type(exc).__name__}")

    metrics_paths = ["/metrics", "/monitoring/prometheus/metrics"]
    if prometheus_path and prometheus_path not in metrics_paths and not prometheus_path.startswith(("/v1/", "/v2")):
        metrics_paths.append(prometheus_path)
    routes = [*samples_page.routes(ctx),  # before /v1/{path}: its PNG URL lives under /v1/models/
              Route("/v1/{path:path}", endpoint(ctx, tfserving_rest.route), methods=ALL_METHODS),
              *open_inference_rest.routes(ctx),
              Route("/ready", endpoint(ctx, ready)), Route("/healthz", endpoint(ctx, healthz))]
    routes += [Route(path, endpoint(ctx, prometheus)) for path in metrics_paths]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error, Exception: internal_error})
    return Quiet(ProbationGate(app, {"/ready", "/healthz", "/v2/health/live", "/v2/health/ready", *metrics_paths}))


class Quiet:
    """Starlette answers an escaped exception (JSON, above) and then re-raises it for the server to log
    with a traceback; this logs one line instead."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        try:
            await self.app(scope, receive, send)
        except Exception as err:
            internal_errors.error("internal error on %s: %s: %s", scope.get("path", "")[:200], type(err).__name__, err)


def grpc_handlers(core: RequestCore, metrics, read_timeout: float, max_waiting: int,
                  control=None) -> list[grpc.GenericRpcHandler]:
    """`read_timeout`: seconds a call's request message may take to arrive; `max_waiting`: calls that
    may wait for theirs at once; `control`: the `ModelControl` that ModelService's reload goes to."""
    intake = GrpcIntake(MessageWait(read_timeout, max_waiting))
    return [*tfserving_grpc.handlers(core, metrics, intake, control),
            *open_inference_grpc.handlers(core, metrics, intake)]
