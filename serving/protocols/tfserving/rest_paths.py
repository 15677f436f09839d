"""TF Serving's REST URL grammar, so every /v1/ URL gets the answer TF Serving gives it.

POST /v1/models/<name>[/versions/<n>|/labels/<l>]:(predict|classify|regress)
GET  /v1/models/<name>[/versions/<n>|/labels/<l>][/metadata]

Anything else under /v1/ is 400 "Malformed request: <METHOD> <path>" (not 404), a version over
int64 is 400 "Failed to convert version", GET /v1/models is 400 "Missing model name in request.".
Names and labels are percent-decoded, and the match ignores case, as TF Serving's RE2 patterns do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

_TARGET = r"/v1/models{name}(?:/versions/(?P<version>[0-9]+)|/labels/(?P<label>[^/:]+))?"
POST_PATH = re.compile(_TARGET.format(name=r"/(?P<name>[^/:]+)") + r":(?P<method>classify|regress|predict)", re.I)
GET_PATH = re.compile(_TARGET.format(name=r"(?:/(?P<name>[^/:]+))?") + r"(?:/(?P<sub>metadata))?", re.I)
MAX_VERSION = 2**63 - 1
BAD_VERSION = re.compile(r"/versions/(?![0-9]+(?:[/:]|$))", re.I)


class BadPath(ValueError):
    """A /v1/ URL TF Serving refuses with INVALID_ARGUMENT (400)."""


@dataclass(frozen=True)
class Target:
    name: str
    version: int | None
    label: str | None
    method: str          # predict | classify | regress | status | metadata


def parse(http_method: str, raw_path: str) -> Target:
    hint = " (a version must be a whole number from 0 to 2**63-1)" if BAD_VERSION.search(raw_path) else ""
    malformed = BadPath(f"Malformed request: {http_method} {raw_path[:200]}{hint}")
    pattern = {"POST": POST_PATH, "GET": GET_PATH}.get(http_method)
    match = pattern.fullmatch(raw_path) if pattern else None
    if match is None:
        raise malformed
    version = match["version"]
    if version is not None and (len(version) > 19 or int(version) > MAX_VERSION):
        shown = version if len(version) <= 24 else version[:20] + "..."
        raise BadPath(f"Failed to convert version: {shown} to numeric. A version must be a whole number from 0 "
                      "to 2**63-1.")
    name, label = unquote(match["name"] or ""), match["label"]
    if http_method == "POST":
        method = match["method"]
        if method not in ("predict", "classify", "regress"):  # matched case-insensitively, dispatched exactly
            raise malformed
    else:
        method = "metadata" if match["sub"] == "metadata" else "status" if match["sub"] is None else ""
        if not method:
            raise malformed
        if not name:
            raise BadPath("Missing model name in request.")
    return Target(name, int(version) if version is not None else None, unquote(label) if label else None, method)
