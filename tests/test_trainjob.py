"""Kubeflow Trainer v2: deploy/kubernetes/training/trainjob.yaml against the TrainJob and
ClusterTrainingRuntime CRDs' own schemas (deploy/kubernetes/crds, see SOURCE.md there), and the
TF_CONFIG that `--cluster trainjob` builds from what a plainML pod's environment holds."""

from __future__ import annotations

import json
import os

import jsonschema
import pytest

from tests.conftest import REPO
from tests.crd_schema import validate

CRDS = REPO / "deploy" / "kubernetes" / "crds"
MANIFEST = REPO / "deploy" / "kubernetes" / "training" / "trainjob.yaml"
CRD_OF = {"TrainJob": CRDS / "trainer.kubeflow.org_trainjobs.yaml",
          "ClusterTrainingRuntime": CRDS / "trainer.kubeflow.org_clustertrainingruntimes.yaml"}


def manifests() -> dict[str, dict]:
    import yaml

    return {doc["kind"]: doc for doc in yaml.safe_load_all(MANIFEST.read_text()) if doc}


def node_job(runtime: dict) -> dict:
    return next(j for j in runtime["spec"]["template"]["spec"]["replicatedJobs"] if j["name"] == "node")


def test_both_resources_validate_against_their_crds_and_a_typo_does_not():
    docs = manifests()
    assert sorted(docs) == ["ClusterTrainingRuntime", "TrainJob"]
    for kind, doc in docs.items():
        assert doc["apiVersion"] == "trainer.kubeflow.org/v1alpha1"
        validate(doc, CRD_OF[kind])
    typo = manifests()["TrainJob"]
    typo["spec"]["trainer"]["numNode"] = typo["spec"]["trainer"].pop("numNodes")
    with pytest.raises(jsonschema.ValidationError, match="numNode"):
        validate(typo, CRD_OF["TrainJob"])
    wrong_type = manifests()["ClusterTrainingRuntime"]
    wrong_type["spec"]["mlPolicy"]["numNodes"] = "two"
    with pytest.raises(jsonschema.ValidationError):
        validate(wrong_type, CRD_OF["ClusterTrainingRuntime"])


def test_the_runtime_is_plainml_and_its_pod_template_is_a_valid_core_pod_template():
    """plainML is what Trainer runs when mlPolicy names no framework plugin; the trainer's Job and
    container must be called `node` (Trainer finds them by that name), and the pod template must also
    pass Kubernetes' own (strict) PodTemplate schema, which the CRD embeds but our check closes only
    where it declares properties."""
    import kubernetes_validate

    runtime = manifests()["ClusterTrainingRuntime"]
    policy = runtime["spec"]["mlPolicy"]
    assert not set(policy) & {"torch", "mpi", "jax", "xgboost", "flux"}, "a framework plugin replaces plainML"
    job = node_job(runtime)
    assert job["template"]["metadata"]["labels"]["trainer.kubeflow.org/trainjob-ancestor-step"] == "trainer"
    pod = job["template"]["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["name"] == "node"
    env = {e["name"]: e for e in container["env"]}
    assert env["TRAIN_JOB_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['jobset.sigs.k8s.io/jobset-name']"
    kubernetes_validate.validate({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "node"},
                                  "template": pod}, "1.30", strict=True)
    failure_codes = {r["action"]: r["onExitCodes"]["values"] for r in job["template"]["spec"]["podFailurePolicy"]["rules"]
                     if "onExitCodes" in r}
    assert failure_codes == {"Ignore": [143], "FailJob": [2]}


def test_the_trainjob_runs_training_run_with_flags_that_parse_and_match_num_nodes():
    from training.cli import parse_config

    docs = manifests()
    trainer = docs["TrainJob"]["spec"]["trainer"]
    assert docs["TrainJob"]["spec"]["runtimeRef"]["name"] == docs["ClusterTrainingRuntime"]["metadata"]["name"]
    assert trainer["command"] == ["python", "-m", "training.run"]
    config = parse_config(trainer["args"])
    assert (config.strategy, config.cluster, config.preempted_exit_code) == ("multi-worker", "trainjob", 143)
    assert config.num_workers == trainer["numNodes"]
    pod = node_job(docs["ClusterTrainingRuntime"])["template"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["ports"][0]["containerPort"] == config.cluster_port
    assert config.output_dir.startswith(pod["containers"][0]["volumeMounts"][0]["mountPath"] + "/")
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "gan-runs"


def test_a_trainjob_pod_builds_tf_config_from_its_index_and_the_jobset_name(monkeypatch):
    """Pod 1 of TrainJob gan-train, with the environment plainML and Kubernetes give it: every worker
    at JobSet's host name <trainjob>-node-0-<i>.<trainjob>, this pod as worker 1."""
    from training.cli import parse_config
    from training.strategy import cluster_resolver

    docs = manifests()
    config = parse_config(docs["TrainJob"]["spec"]["trainer"]["args"])
    name = docs["TrainJob"]["metadata"]["name"]
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "1")
    monkeypatch.setenv("TRAIN_JOB_NAME", name)
    resolver = cluster_resolver(config.cluster, config.cluster_port, config.worker_hosts, config.num_workers)
    assert resolver.cluster_spec().as_dict() == {"worker": ["gan-train-node-0-0.gan-train:12345",
                                                            "gan-train-node-0-1.gan-train:12345"]}
    assert (resolver.task_type, resolver.task_id) == ("worker", 1)
    assert json.loads(os.environ["TF_CONFIG"])["task"] == {"type": "worker", "index": 1}


def test_trainjob_cluster_errors_name_what_is_missing(monkeypatch):
    from training.config import ConfigError, TrainConfig
    from training.strategy import trainjob_tf_config

    with pytest.raises(ConfigError, match="JOB_COMPLETION_INDEX and TRAIN_JOB_NAME"):
        trainjob_tf_config({"JOB_COMPLETION_INDEX": "0"}, 2, 12345)
    with pytest.raises(ConfigError, match="outside --num-workers 2"):
        trainjob_tf_config({"JOB_COMPLETION_INDEX": "2", "TRAIN_JOB_NAME": "j"}, 2, 12345)
    with pytest.raises(ConfigError, match="--cluster trainjob needs --num-workers"):
        TrainConfig(strategy="multi-worker", cluster="trainjob").validate()
