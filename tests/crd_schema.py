"""Validate a custom resource against its CustomResourceDefinition's own OpenAPI v3 schema.

Kubernetes' structural schemas are JSON Schema plus `x-kubernetes-*` keywords, so `jsonschema`
checks types, enums, required fields and bounds as written. The API server also rejects (strict
field validation) or prunes fields a schema does not declare; `strict` makes those errors here by
closing every object that declares its properties and does not preserve unknown fields.
"""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import yaml


def crd_schema(crd_path: Path, version: str) -> dict:
    """The openAPIV3Schema of `version` in the CRD file (which may carry a licence header)."""
    crd = next(doc for doc in yaml.safe_load_all(Path(crd_path).read_text()) if doc)
    for served in crd["spec"]["versions"]:
        if served["name"] == version:
            return served["schema"]["openAPIV3Schema"]
    raise LookupError(f"{crd_path} serves no version {version!r}")


def closed(schema: dict) -> dict:
    """A copy in which an object schema with `properties` and no `additionalProperties` (nor
    x-kubernetes-preserve-unknown-fields) allows no other property."""
    schema = copy.deepcopy(schema)

    def close(node):
        if isinstance(node, dict):
            if ("properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)
    close(schema)
    return schema


def validate(resource: dict, crd_path: Path, strict: bool = True) -> None:
    """Raise jsonschema.ValidationError when `resource` does not fit its CRD."""
    group_version = resource["apiVersion"].split("/")[-1]
    schema = crd_schema(crd_path, group_version)
    jsonschema.Draft7Validator(closed(schema) if strict else schema).validate(resource)
