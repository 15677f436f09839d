"""Write the subset of KServe's CRD schemas that tests/test_cluster.py validates our KServe manifests
against (kubernetes-validate ships only Kubernetes' own kinds).

    python tools/kserve_crd_subset.py /path/to/kserve/checkout   # writes deploy/kubernetes/serving/kserve-crd-subset.json

Source: kserve/kserve config/crd/full/serving.kserve.io_{servingruntimes,clusterservingruntimes,
inferenceservices}.yaml (the commit is recorded in the output). Each kind's openAPIV3Schema is kept
field for field, except that Kubernetes core types (containers, volumes, affinity, probes,
resources, ...) are cut to their type: the test checks those with kubernetes-validate's own core
schemas instead, which is also what keeps the file small (the InferenceService CRD alone is 2 MB).
Every object with listed properties gets additionalProperties: false, so a misspelt field fails as
`kubectl apply --validate=strict` would.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

CRDS = {"ServingRuntime": "servingruntimes", "ClusterServingRuntime": "clusterservingruntimes",
        "InferenceService": "inferenceservices"}
CORE_TYPES = {"containers", "initContainers", "volumes", "affinity", "tolerations", "imagePullSecrets", "resourceClaims",
              "securityContext", "env", "envFrom", "resources", "livenessProbe", "readinessProbe", "startupProbe",
              "volumeMounts", "volumeDevices", "lifecycle", "ports", "resizePolicy", "dnsConfig", "hostAliases",
              "topologySpreadConstraints", "readinessGates", "schedulingGates", "os", "overhead", "workerSpec"}
OUTPUT = Path(__file__).resolve().parents[1] / "deploy" / "kubernetes" / "serving" / "kserve-crd-subset.json"


def prune(schema: dict, name: str = "") -> dict:
    """The schema with core Kubernetes types cut to their type, and strict objects."""
    if name in CORE_TYPES:
        return {"type": schema.get("type", "object")}
    kept = {k: v for k, v in schema.items() if k in ("type", "enum", "format", "required", "minimum", "maximum",
                                                        "x-kubernetes-preserve-unknown-fields", "x-kubernetes-int-or-string")}
    if "properties" in schema:
        kept["properties"] = {key: prune(value, key) for key, value in schema["properties"].items()}
        if not schema.get("x-kubernetes-preserve-unknown-fields"):
            kept["additionalProperties"] = False
    elif isinstance(schema.get("additionalProperties"), dict):
        kept["additionalProperties"] = prune(schema["additionalProperties"])
    if "items" in schema:
        kept["items"] = prune(schema["items"])
    if kept.get("x-kubernetes-int-or-string"):
        kept.pop("type", None)
    return kept


def subset(checkout: Path) -> dict:
    commit = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    out = {"source": f"github.com/kserve/kserve@{commit.strip() or 'unknown'} config/crd/full/", "kinds": {}}
    for kind, plural in CRDS.items():
        crd = yaml.safe_load((checkout / "config" / "crd" / "full" / f"serving.kserve.io_{plural}.yaml").read_text())
        version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
        schema = prune(version["schema"]["openAPIV3Schema"])
        schema["properties"]["metadata"] = {"type": "object"}  # checked as ObjectMeta by the test
        out["kinds"][kind] = {"apiVersion": f"{crd['spec']['group']}/{version['name']}", "schema": schema}
    return out


if __name__ == "__main__":
    OUTPUT.write_text(json.dumps(subset(Path(sys.argv[1])), indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size} bytes)")
