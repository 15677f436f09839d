"""Past one machine: Slurm and Kubernetes cluster resolution, agreed stops under multi-worker, and the
deploy/ manifests (schema-validated; their probe URLs asked of our real server)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common.ports import free_ports
from tests.conftest import REPO, TINY

DEPLOY = REPO / "deploy"


# -- two local workers, as a Slurm job step starts them ------------------------------------------------


def two_free_ports() -> int:
    """A port p with p and p+1 free: Slurm's resolver gives tasks on one node consecutive ports."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no two consecutive free ports")


def slurm_step_env(rank: int, tasks: int = 2) -> dict:
    """What srun puts in the environment of task `rank` of a one-node, `tasks`-task job step."""
    return {"SLURM_JOB_ID": "4242", "SLURM_JOB_NODELIST": "localhost", "SLURM_JOB_NUM_NODES": "1",
            "SLURM_NNODES": "1", "SLURM_NTASKS": str(tasks), "SLURM_TASKS_PER_NODE": str(tasks),
            "SLURM_STEP_ID": "0", "SLURM_STEP_NODELIST": "localhost", "SLURM_STEP_NUM_NODES": "1",
            "SLURM_STEP_NUM_TASKS": str(tasks), "SLURM_STEP_TASKS_PER_NODE": str(tasks),
            "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank), "SLURM_NODEID": "0",
            "SLURMD_NODENAME": "localhost"}


def fake_scontrol(tmp_path: Path) -> Path:
    """`scontrol show hostnames` for this one-node step, on PATH for the workers only. TensorFlow
    2.21's resolver expands SLURM_STEP_NODELIST itself; older ones asked scontrol."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "scontrol"
    script.write_text("#!/bin/sh\necho localhost\n")
    script.chmod(0o755)
    return bin_dir


def start_slurm_workers(tmp_path: Path, args: list[str], tag: str):
    port = two_free_ports()
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CONFIG", "CUDA_VISIBLE_DEVICES")}
    env["PATH"] = f"{fake_scontrol(tmp_path)}{os.pathsep}{env.get('PATH', '')}"
    workers = []
    for rank in range(2):
        temp = tmp_path / f"tmp-{tag}{rank}"
        temp.mkdir()
        log_path = tmp_path / f"{tag}{rank}.log"
        log = open(log_path, "w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "training.run", "--strategy", "multi-worker", "--cluster-port", str(port), *args],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, text=True,
            env={**env, **slurm_step_env(rank), "TMPDIR": str(temp), "TF_CPP_MIN_LOG_LEVEL": "2",
                 "PYTHONUNBUFFERED": "1"})
        workers.append((proc, log, log_path))
    return workers


def stop_all(workers) -> tuple[list[int], list[str]]:
    """Kill the workers still running; return every worker's exit code and log."""
    for proc, log, _ in workers:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    return [proc.returncode for proc, _, _ in workers], [log_path.read_text() for _, _, log_path in workers]


def report(codes: list[int], outputs: list[str]) -> str:
    return "\n".join(f"--- worker {rank} exited {code}:\n{out[-3000:]}"
                     for rank, (code, out) in enumerate(zip(codes, outputs)))


def finish(workers, expected_code=0, timeout=300) -> list[str]:
    """Wait up to `timeout` s for every worker (then kill the rest) and return their logs; a worker
    that hangs or exits with another code fails the test with every worker's code and log tail."""
    deadline = time.monotonic() + timeout
    try:
        for proc, _, _ in workers:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pass
    finally:
        codes, outputs = stop_all(workers)
    assert codes == [expected_code] * len(workers), report(codes, outputs)
    return outputs


def checkpoint_step(run_dir: Path) -> int | None:
    pointer = run_dir / "checkpoints" / "checkpoint.json"
    return json.loads(pointer.read_text())["step"] if pointer.is_file() else None


@pytest.mark.tier2
@pytest.mark.slow
def test_slurm_step_workers_agree_on_sigterm_to_one_and_resume_to_identical_weights(tmp_path, mnist_test_dir):
    """No TF_CONFIG: SlurmClusterResolver builds the cluster from the job step's environment. SIGTERM
    to the non-chief worker alone stops both at one step, with one checkpoint, exiting with the code
    asked for; a rerun resumes there and both workers end with the same weights."""
    run_dir = tmp_path / "run"
    common = ["--dataset", "idx", "--data-dir", str(mnist_test_dir), *TINY, "--steps-per-epoch", "10",
              "--checkpoint-every", "100000", "--output-dir", str(run_dir)]
    workers = start_slurm_workers(tmp_path, [*common, "--epochs", "500", "--preempted-exit-code", "143"], "first")
    deadline = time.monotonic() + 300  # generous: two TensorFlow start-ups on a busy 2-core machine
    while not (run_dir / "samples" / "epoch_0001.png").is_file():
        if time.monotonic() > deadline or any(p.poll() is not None for p, _, _ in workers):
            pytest.fail("the workers did not train an epoch\n" + report(*stop_all(workers)))
        time.sleep(0.05)
    workers[1][0].send_signal(signal.SIGTERM)
    outputs = finish(workers, expected_code=143)  # what deploy/ tells the scheduler: restart us
    steps = [int(re.search(r"preempted: checkpoint written at step (\d+)/5000", out).group(1)) for out in outputs]
    assert steps[0] == steps[1] == checkpoint_step(run_dir) >= 10
    assert "2 replica(s)" in outputs[0]
    assert not (run_dir / "generator.keras").exists()

    epochs = steps[0] // 10 + 1  # the rest of the interrupted epoch
    outputs = finish(start_slurm_workers(tmp_path, [*common, "--epochs", str(epochs)], "again"))
    for out in outputs:
        assert f"resuming at step {steps[0]}" in out and f"done: {epochs * 10}/{epochs * 10} steps" in out
    digests = [re.search(r"generator weights sha256 ([0-9a-f]+)", out).group(1) for out in outputs]
    assert digests[0] == digests[1]
    assert checkpoint_step(run_dir) == epochs * 10 and (run_dir / "generator.keras").is_file()
    assert "Run directory" in outputs[0] and "Run directory" not in outputs[1]


# -- where the cluster comes from (TensorFlow's resolvers, our wiring) ----------------------------------


def test_auto_picks_tf_config_then_a_slurm_step_then_one_machine(monkeypatch):
    import tensorflow as tf

    from training.strategy import cluster_resolver

    for key in ("TF_CONFIG", "SLURM_STEP_NODELIST", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(key, raising=False)
    assert cluster_resolver("auto") is None
    for key, value in {**slurm_step_env(1), "SLURM_STEP_NODELIST": "node[07-08]", "SLURM_STEP_TASKS_PER_NODE": "1(x2)",
                       "SLURM_STEP_NUM_NODES": "2"}.items():
        monkeypatch.setenv(key, value)
    slurm = cluster_resolver("auto", port=23456)
    assert slurm.cluster_spec().as_dict() == {"worker": ["node07:23456", "node08:23456"]}
    assert (slurm.task_type, slurm.task_id, slurm.num_accelerators()) == ("worker", 1, {})
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}}))
    assert isinstance(cluster_resolver("auto"), tf.distribute.cluster_resolver.TFConfigClusterResolver)


def test_slurm_outside_a_job_step_and_a_bad_tf_config_are_one_clear_error(monkeypatch):
    from training.config import ConfigError
    from training.strategy import cluster_resolver

    for key in [k for k in os.environ if k.startswith("SLURM_")] + ["TF_CONFIG"]:
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(ConfigError, match="srun"):
        cluster_resolver("slurm")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ConfigError, match="TF_CONFIG is not a valid cluster description"):
        cluster_resolver("tf-config")


def load_manifests(path: Path) -> list[dict]:
    import yaml

    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def find(docs: list[dict], kind: str) -> dict:
    return next(doc for doc in docs if doc["kind"] == kind)


def container_args(pod_template: dict) -> list[str]:
    return pod_template["spec"]["containers"][0]["args"]


def test_an_indexed_job_pod_builds_tf_config_from_its_completion_index(monkeypatch):
    """The manifest's own flags, parsed by our CLI, in pod 1 of the Job: TF_CONFIG names every pod
    under the headless Service, and this pod as worker 1."""
    from training.cli import parse_config
    from training.config import ConfigError
    from training.strategy import cluster_resolver

    docs = load_manifests(DEPLOY / "kubernetes" / "training" / "indexed-job.yaml")
    job, service = find(docs, "Job"), find(docs, "Service")
    config = parse_config(container_args(job["spec"]["template"]))
    assert config.num_workers == job["spec"]["completions"] == job["spec"]["parallelism"]
    assert job["spec"]["template"]["spec"]["subdomain"] == service["metadata"]["name"] and service["spec"]["clusterIP"] == "None"
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "1")
    resolver = cluster_resolver(config.cluster, config.cluster_port, config.worker_hosts, config.num_workers)
    name = job["metadata"]["name"]
    assert resolver.cluster_spec().as_dict() == {"worker": [f"{name}-0.{service['metadata']['name']}:12345",
                                                            f"{name}-1.{service['metadata']['name']}:12345"]}
    assert (resolver.task_type, resolver.task_id) == ("worker", 1)
    assert json.loads(os.environ["TF_CONFIG"])["task"] == {"type": "worker", "index": 1}
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "2")
    with pytest.raises(ConfigError, match="outside --num-workers 2"):
        cluster_resolver(config.cluster, config.cluster_port, config.worker_hosts, config.num_workers)


# -- the manifests: Kubernetes' own schemas, and our server behind their probes ---------------------------


def test_every_manifest_validates_against_the_kubernetes_schemas():
    """Strict (unknown fields are errors) against Kubernetes 1.30's schemas. The TFJob is a Kubeflow
    custom resource: its pod templates are checked as core PodTemplates, its own fields by hand."""
    import kubernetes_validate

    files = sorted(p for p in (DEPLOY / "kubernetes").rglob("*.yaml")
                   if p.parent.name != "crds" and p.name != "kustomization.yaml")
    kinds = []
    for path in files:
        for doc in load_manifests(path):
            kinds.append(doc["kind"])
            if doc["apiVersion"].startswith("trainer.kubeflow.org/"):
                continue  # Trainer v2's CRDs: their own schemas, in tests/test_trainjob.py
            if doc["kind"] == "TFJob":
                assert doc["apiVersion"] == "kubeflow.org/v1"
                for role, spec in doc["spec"]["tfReplicaSpecs"].items():
                    assert role in ("Chief", "Worker", "PS", "Evaluator") and spec["replicas"] >= 1
                    assert spec["restartPolicy"] in ("Always", "OnFailure", "Never", "ExitCode")
                    assert spec["template"]["spec"]["containers"][0]["name"] == "tensorflow"
                    kubernetes_validate.validate({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": role},
                                                  "template": spec["template"]}, "1.30", strict=True)
            elif doc["apiVersion"].startswith("serving.kserve.io/"):
                validate_kserve(doc)
            else:
                kubernetes_validate.validate(doc, "1.30", strict=True)
    assert sorted(kinds) == sorted(["PersistentVolumeClaim"] * 2 + ["TFJob", "Service", "Job", "Job"]
                                   + ["ClusterTrainingRuntime", "TrainJob"]
                                   + ["Deployment", "Service", "HorizontalPodAutoscaler"] * 2
                                   + ["ServingRuntime", "InferenceService"])
    broken = find(load_manifests(DEPLOY / "kubernetes" / "serving" / "onnx-serve.yaml"), "Deployment")
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/ready", "port": "http"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.30", strict=True)


def validate_kserve(doc: dict) -> None:
    """A KServe custom resource against its CRD's schema (the subset shipped in
    deploy/kubernetes/serving/kserve-crd-subset.json, with its source), its containers against
    Kubernetes' core Container schema."""
    import jsonschema
    import kubernetes_validate

    crds = json.loads((DEPLOY / "kubernetes" / "serving" / "kserve-crd-subset.json").read_text())
    crd = crds["kinds"][doc["kind"]]
    assert doc["apiVersion"] == crd["apiVersion"]
    jsonschema.validate(doc, crd["schema"])
    spec = doc["spec"]
    containers = spec.get("containers", []) + spec.get("predictor", {}).get("containers", [])
    kubernetes_validate.validate({"apiVersion": "v1", "kind": "PodTemplate", "metadata": doc["metadata"],
                                  "template": {"spec": {"containers": containers}}} if containers else
                                 {"apiVersion": "v1", "kind": "ConfigMap", "metadata": doc["metadata"]}, "1.30", strict=True)


def test_kserve_manifests_fail_on_a_misspelt_field():
    doc = find(load_manifests(DEPLOY / "kubernetes" / "serving" / "kserve-v2.yaml"), "InferenceService")
    doc["spec"]["predictor"]["model"]["protocolVersoin"] = "v2"
    with pytest.raises(Exception, match="protocolVersoin"):
        validate_kserve(doc)
    runtime = find(load_manifests(DEPLOY / "kubernetes" / "serving" / "kserve-v2.yaml"), "ServingRuntime")
    runtime["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(Exception):
        validate_kserve(runtime)


def test_the_sbatch_script_is_valid_bash_and_its_flags_parse():
    import shlex

    from training.cli import parse_config

    script = DEPLOY / "slurm" / "train.sbatch"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    command = re.search(r"python -m training\.run \\\n(.*?)\n", script.read_text(), re.S).group(1)
    flags = [a for a in shlex.split(command) if a != "$@"]
    config = parse_config([*flags, "--output-dir", "/shared/runs/exp1"])
    assert (config.strategy, config.cluster, config.preempted_exit_code) == ("multi-worker", "slurm", 143)
    assert "scontrol requeue" in script.read_text() and "#SBATCH --ntasks-per-node=1" in script.read_text()


def test_each_kustomization_names_files_that_exist_and_maps_every_image_of_ours_they_use():
    """`kustomize edit set image` can point every manifest at a registry: no image of ours is left
    on a local tag that a cluster cannot pull."""
    import re

    ours = {"gan-train", "gan-onnx-serve", "gan-tfserving"}
    seen = set()
    for path in sorted((DEPLOY / "kubernetes").rglob("kustomization.yaml")):
        (doc,) = load_manifests(path)
        assert doc["kind"] == "Kustomization" and doc["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
        mapped = {image["name"] for image in doc.get("images", [])}
        for resource in doc["resources"]:
            text = (path.parent / resource).read_text()
            seen.add((path.parent / resource).resolve())
            used = set(re.findall(r"^\s*image:\s*([\w./-]+)", text, re.M)) & ours
            assert used <= mapped, f"{path}: {resource} uses {used - mapped}, which its images: do not map"
    assert (DEPLOY / "kubernetes" / "export" / "export-job.yaml").resolve() in seen
    assert (DEPLOY / "kubernetes" / "serving" / "onnx-serve.yaml").resolve() in seen


def test_the_export_job_reads_the_training_run_and_writes_what_both_servers_mount():
    """The path from a training run to a served version: the Job exports the run directory the
    training manifests write (mounted read-only) onto the volume both servers mount, and writes TF
    Serving's files for the container root TF Serving mounts them at."""
    from deploy.tfserving.config import build_parser as tfserving_config_parser
    from export.run import build_parser as export_parser
    from training.cli import parse_config

    job = find(load_manifests(DEPLOY / "kubernetes" / "export" / "export-job.yaml"), "Job")["spec"]["template"]["spec"]
    volumes = {v["name"]: v["persistentVolumeClaim"] for v in job["volumes"]}
    export, = job["initContainers"]
    config_step, = job["containers"]
    assert export["command"] == ["python", "-m", "export.run"]
    assert config_step["command"] == ["python", "-m", "deploy.tfserving.config"]
    exported = export_parser().parse_args(export["args"])
    mounts = {m["mountPath"]: m for m in export["volumeMounts"]}

    trained = parse_config(container_args(find(load_manifests(DEPLOY / "kubernetes" / "training" / "indexed-job.yaml"),
                                               "Job")["spec"]["template"]))
    assert exported.run_dir == trained.output_dir
    runs = mounts["/" + Path(exported.run_dir).parts[1]]
    assert runs["readOnly"] is True and volumes[runs["name"]]["claimName"] == "gan-runs"
    assert volumes[mounts[exported.output_dir]["name"]]["claimName"] == "gan-exports"
    assert exported.version is not None and exported.variants

    written = tfserving_config_parser().parse_args(config_step["args"])
    assert written.export_dir == exported.output_dir and written.stable == exported.version
    tfs = find(load_manifests(DEPLOY / "kubernetes" / "serving" / "tfserving.yaml"), "Deployment")
    tfs_mount = tfs["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]
    assert written.container_root == tfs_mount["mountPath"] and tfs_mount["subPath"] == "tfserving"
    onnx = find(load_manifests(DEPLOY / "kubernetes" / "serving" / "onnx-serve.yaml"), "Deployment")
    onnx_mount = onnx["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]
    assert onnx_mount["subPath"] == "onnx-models"  # export.run's layout under --output-dir
    for deployment in (tfs, onnx):
        claims = [v["persistentVolumeClaim"] for v in deployment["spec"]["template"]["spec"]["volumes"]
                  if "persistentVolumeClaim" in v]
        assert claims == [{"claimName": "gan-exports", "readOnly": True}]
    assert job["securityContext"]["runAsNonRoot"] is True


def test_training_manifests_flags_parse_and_run_non_root_with_the_shared_run_volume():
    from training.cli import parse_config

    for name, kind in (("tfjob.yaml", "TFJob"), ("indexed-job.yaml", "Job")):
        doc = find(load_manifests(DEPLOY / "kubernetes" / "training" / name), kind)
        template = doc["spec"]["tfReplicaSpecs"]["Worker"]["template"] if kind == "TFJob" else doc["spec"]["template"]
        config = parse_config(container_args(template))
        assert config.strategy == "multi-worker" and config.preempted_exit_code == 143
        mount = template["spec"]["containers"][0]["volumeMounts"][0]
        assert config.output_dir.startswith(mount["mountPath"] + "/")
        assert template["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == "gan-runs"
        assert template["spec"]["securityContext"]["runAsNonRoot"] is True


@pytest.mark.slow
def test_the_probes_of_both_serving_manifests_answer_on_our_server(tiny_export, tmp_path):
    """Our server, started with the onnx-serve manifest's own arguments (the mounted repository
    mapped to a real export), answers that manifest's probes, and TF Serving's readiness URL (the REST
    model status) with an AVAILABLE version; the volumes' subPaths are where the export puts things."""
    import httpx

    onnx = find(load_manifests(DEPLOY / "kubernetes" / "serving" / "onnx-serve.yaml"), "Deployment")
    tfs = find(load_manifests(DEPLOY / "kubernetes" / "serving" / "tfserving.yaml"), "Deployment")
    container = onnx["spec"]["template"]["spec"]["containers"][0]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "model-repository")
    repository = tiny_export / mount["subPath"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    rest, grpc = free_ports(2)
    args = [a.replace(mount["mountPath"], str(repository)) for a in container["args"]]
    args = [{"0.0.0.0": "127.0.0.1", str(ports["http"]): str(rest), str(ports["grpc"]): str(grpc)}.get(a, a) for a in args]
    assert container["command"] == ["python", "-m", "serving.server"]
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "serving.server", *args], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{rest}"
        probes = [container["readinessProbe"]["httpGet"]["path"], container["livenessProbe"]["httpGet"]["path"],
                  tfs["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"]]
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            try:
                answers = [httpx.get(url + path, timeout=2) for path in probes]
                if all(a.status_code == 200 for a in answers):
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()[-3000:]
            time.sleep(0.1)
        states = [v["state"] for v in answers[2].json()["model_version_status"]]
        assert "AVAILABLE" in states
        with socket.create_connection(("127.0.0.1", grpc), timeout=5):
            pass  # TF Serving's liveness probe is a TCP connect to the gRPC port
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()
    tfs_container = tfs["spec"]["template"]["spec"]["containers"][0]
    assert "--allow_version_labels_for_unavailable_models=true" in tfs_container["args"]
    assert tfs_container["livenessProbe"]["tcpSocket"]["port"] == "grpc"


@pytest.mark.slow
def test_tfserving_reads_the_files_the_export_and_its_config_step_write(tiny_export, tmp_path):
    """Every /models/... file the TF Serving manifest names exists once `export.run` and
    `deploy.tfserving.config` have written the gan-exports volume, and models.config points inside it."""
    import shutil

    from deploy.tfserving.config import write_deployment

    container = find(load_manifests(DEPLOY / "kubernetes" / "serving" / "tfserving.yaml"), "Deployment")[
        "spec"]["template"]["spec"]["containers"][0]
    mount = container["volumeMounts"][0]
    volume = tmp_path / "exports"
    shutil.copytree(tiny_export / mount["subPath"], volume / mount["subPath"])
    write_deployment(volume, "generator", {"stable": 1}, container_root=mount["mountPath"])
    named = [a.split("=", 1)[1] for a in container["args"] if "=" + mount["mountPath"] + "/" in a]
    assert len(named) == 3
    for path in named:
        assert (volume / mount["subPath"] / Path(path).relative_to(mount["mountPath"])).is_file(), path
    base = re.search(r'base_path: "([^"]+)"', (volume / mount["subPath"] / "models.config").read_text()).group(1)
    assert (volume / mount["subPath"] / Path(base).relative_to(mount["mountPath"]) / "1").is_dir()


# -- the agreed stop, decision by decision (the all-reduce itself runs in the Slurm test above) ---------


class Model:
    stop_training = False


def test_the_stop_follows_the_agreement_not_the_local_signal_or_clock():
    """`agree` stands for the all-reduce: what every worker sees after a step. A worker stops (and
    checkpoints) when any worker was signalled, and on the time budget only by the chief's clock."""
    from training.callbacks import TimeBudget
    from training.guards import PreemptionGuard

    saved = []
    for chief, local_budget_over, others in ((True, True, [False, False]), (False, True, [False, False]),
                                             (False, False, [True, False]), (False, False, [False, True])):
        budget = TimeBudget(-1.0 if local_budget_over else 60.0)
        seen = []

        def agree(flags, others=others):
            seen.append(flags)
            return [a or b for a, b in zip(flags, others)]
        guard = PreemptionGuard(lambda: saved.append(chief), agree, budget, chief)
        guard.set_model(Model())
        guard.on_train_batch_end(0)
        expired_here = chief and local_budget_over
        assert seen == [[False, expired_here]]
        assert budget.triggered == (expired_here or others[1])
        assert guard.preempted == others[0] and guard.model.stop_training == (expired_here or any(others))
    assert saved == [False]  # only the SIGTERM elsewhere made this worker write its part of a checkpoint


def test_cluster_flags_are_checked_before_anything_starts():
    from training.config import ConfigError, TrainConfig

    TrainConfig(strategy="multi-worker", max_minutes=5.0).validate()  # agreed stop: allowed now
    for bad, match in ((dict(cluster="slurm"), "needs --strategy multi-worker"),
                       (dict(strategy="multi-worker", cluster="indexed-job", num_workers=2), "--worker-hosts"),
                       (dict(strategy="multi-worker", preempted_exit_code=300), "0..255")):
        with pytest.raises(ConfigError, match=match):
            TrainConfig(**bad).validate()


def test_a_sigterm_between_two_fits_checkpoints_and_stops_the_resume_loop():
    """A resumed run calls `fit` twice (the interrupted epoch, then the rest); a SIGTERM noted in
    between stops the loop with a checkpoint, alone; under multi-worker the next step decides."""
    from training.guards import PreemptionGuard

    saved = []
    alone = PreemptionGuard(lambda: saved.append("alone"), requested=lambda: True)
    assert alone.stop_between_fits() and alone.stop_between_fits() and saved == ["alone"]
    workers = PreemptionGuard(lambda: saved.append("worker"), agree=lambda flags: flags, requested=lambda: True)
    assert not workers.stop_between_fits() and saved == ["alone"]
    quiet = PreemptionGuard(lambda: saved.append("quiet"), requested=lambda: False)
    assert not quiet.stop_between_fits() and saved == ["alone"]


SIGTERM_AFTER_STRATEGY = """
import json, os, signal, sys, time
os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"localhost:{sys.argv[1]}"]},
                                      "task": {"type": "worker", "index": 0}})
from training import sigterm
with sigterm.noted():
    from training.strategy import make_strategy
    from training.config import TrainConfig
    make_strategy("multi-worker", TrainConfig(strategy="multi-worker"))
    if sys.argv[2] == "reassert":
        sigterm.reassert()
    os.kill(os.getpid(), signal.SIGTERM)
    deadline = time.monotonic() + 3  # noted within milliseconds when it is noted at all
    while not sigterm.requested() and time.monotonic() < deadline:
        time.sleep(0.05)
    print("noted" if sigterm.requested() else "lost", flush=True)
"""


@pytest.mark.tier2
def test_a_sigterm_after_the_multi_worker_runtime_started_is_still_noted():
    """TensorFlow's multi-worker runtime installs its own SIGTERM handler in C when the strategy
    starts (Python's `signal.getsignal` cannot see it): without `sigterm.reassert()` a preempted
    worker neither stops at a safe step nor dies. The trainer reasserts right after the strategy."""
    outputs = {}
    for mode in ("reassert", "as-is"):
        proc = subprocess.run([sys.executable, "-c", SIGTERM_AFTER_STRATEGY, str(free_ports(1)[0]), mode], cwd=REPO,
                              capture_output=True, text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        outputs[mode] = proc.stdout.strip().splitlines()[-1:] if proc.stdout.strip() else [proc.stderr[-500:]]
    assert outputs["reassert"] == ["noted"], outputs
    assert outputs["as-is"] == ["lost"], "the runtime no longer takes SIGTERM over: reassert may be unneeded"
