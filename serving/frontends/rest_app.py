"""The REST port: one Starlette app mounting every REST front end, plus health and metrics.

    /v1/...                           TF Serving's REST API (serving.frontends.tfserving_rest)
    /v2/...                           the Open Inference Protocol (serving.frontends.v2_rest)
    /samples, /v1/models/<m>/...samples.png   what the model draws (serving.frontends.samples_page)
    /ready  /healthz  /metrics  /monitoring/prometheus/metrics  (+ the monitoring config's path)

Slow clients and the connection cap are handled below the app (`serving.connections`); a
connection on a reserve slot gets health and metrics only.
"""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from serving.connections import ProbationGate
from serving.frontends import samples_page, tfserving_rest, v2_rest
from serving.frontends.rest_common import RestContext, endpoint, error
from serving.log_throttle import ThrottledLog

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
              *v2_rest.routes(ctx),
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
