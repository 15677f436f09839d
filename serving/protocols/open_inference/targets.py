"""What the Open Inference Protocol's REST and gRPC APIs (and the samples page) share: the server's
name and extensions, and the model a request names (`/v2/models/<m>[/versions/<v>]`)."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from serving.engine.core import RequestError

SERVER_NAME, SERVER_VERSION = "gan-serve", "0.1.0"
EXTENSIONS = ["binary_tensor_data"]
BINARY_HEADER = "inference-header-content-length"
MAX_VERSION = 2**63 - 1


@dataclass(frozen=True)
class Target:
    name: str
    version: int | None
    label: str | None


def parse_target(request: Request) -> Target:
    """/v2/models/<m>[/versions/<v>]: a numeric <v> is a version, any other a version label."""
    name, version = request.path_params["name"], request.path_params.get("version")
    if version is None or version == "":
        return Target(name, None, None)
    if version.isascii() and version.isdigit():
        if len(version) > 19 or int(version) > MAX_VERSION:
            raise RequestError("INVALID_ARGUMENT", f"version {version[:24]} is over 2**63-1")
        return Target(name, int(version), None)
    return Target(name, None, version)
