"""Choosing the tf.distribute strategy, and the facts about it the rest of training needs.

`auto` picks what a user would: MirroredStrategy over several local GPUs, OneDeviceStrategy on one,
the default strategy on CPU. Past one machine, `multi-worker` is TensorFlow's own
MultiWorkerMirroredStrategy, and TensorFlow's own cluster resolvers say where the other workers are:
TF_CONFIG (written by hand or by Kubeflow's legacy TFJob), a Slurm job step, a Kubernetes Indexed Job,
or a Kubeflow Trainer v2 TrainJob on the plainML runtime (for the last two TF_CONFIG is built here from
the pod's completion index, the same way in every pod: neither sets it).
"""

from __future__ import annotations

import json
import os
import shutil
import sys

import tensorflow as tf

from training.config import ConfigError, TrainConfig

resolvers = tf.distribute.cluster_resolver


def make_strategy(name: str = "auto", config: TrainConfig | None = None) -> tf.distribute.Strategy:
    """Create the strategy. Call before any other TensorFlow work: MultiWorkerMirroredStrategy must
    configure collective ops before the runtime starts."""
    if name == "multi-worker":
        config = config or TrainConfig()
        resolver = cluster_resolver(config.cluster, config.cluster_port, config.worker_hosts, config.num_workers)
        if resolver is None:
            print("multi-worker: no cluster found (no TF_CONFIG, not inside a Slurm job step); "
                  "training on this machine alone.", file=sys.stderr, flush=True)
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        name = "mirrored" if len(gpus) > 1 else "one-device" if gpus else "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one-device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    raise ConfigError(f"Unknown --strategy {name!r}; choose auto, default, one-device, mirrored or multi-worker.")


def cluster_resolver(cluster: str = "auto", port: int = 12345, worker_hosts: str | None = None,
                     num_workers: int | None = None) -> resolvers.ClusterResolver | None:
    """TensorFlow's resolver for the cluster this process is a worker of; None for one machine.

    auto: TF_CONFIG when set, else Slurm when inside a job step (srun), else None.
    """
    if cluster == "auto":
        cluster = "tf-config" if "TF_CONFIG" in os.environ else "slurm" if "SLURM_STEP_NODELIST" in os.environ else ""
    if cluster == "tf-config":
        return _tf_config_resolver()
    if cluster == "slurm":
        return _slurm_resolver(port)
    if cluster == "indexed-job":
        index = os.environ.get("JOB_COMPLETION_INDEX")
        if index is None or not index.isdigit():
            raise ConfigError("--cluster indexed-job needs JOB_COMPLETION_INDEX, which Kubernetes sets in the pods "
                              "of a Job with completionMode: Indexed.")
        os.environ["TF_CONFIG"] = json.dumps(indexed_job_tf_config(int(index), worker_hosts, num_workers, port))
        return _tf_config_resolver()
    if cluster == "trainjob":
        os.environ["TF_CONFIG"] = json.dumps(trainjob_tf_config(os.environ, num_workers, port))
        return _tf_config_resolver()
    return None


# A TrainJob's pods are those of a JobSet named after it, whose trainer replicated job is "node":
# <jobset>-<replicatedJob>-<jobIndex>-<podIndex>.<jobset>, the address Trainer's own torch and JAX
# plugins give their rank-0 pod. One Job ("-0-"), numNodes pods.
TRAINJOB_HOSTS = "{name}-node-0-{{index}}.{name}"


def trainjob_tf_config(environ, num_workers: int, port: int) -> dict:
    """TF_CONFIG for a pod of a Kubeflow Trainer v2 TrainJob on the plainML runtime.

    plainML sets no TF_CONFIG (Trainer v2 dropped its TensorFlow plugin, kubeflow/trainer#2699) and no
    rank variables (the PET_* ones are the torch plugin's). What a pod does have: JOB_COMPLETION_INDEX,
    which Kubernetes sets in every pod of the JobSet's Indexed Job, and TRAIN_JOB_NAME, which our
    ClusterTrainingRuntime sets from the pod's jobset.sigs.k8s.io/jobset-name label (as Trainer's own
    runtimes do). The number of pods is not in the environment, so it comes as --num-workers.
    """
    index, name = environ.get("JOB_COMPLETION_INDEX"), environ.get("TRAIN_JOB_NAME")
    if index is None or not index.isdigit() or not name:
        raise ConfigError("--cluster trainjob needs JOB_COMPLETION_INDEX and TRAIN_JOB_NAME in the environment, "
                          "which the gan-train-plainml ClusterTrainingRuntime sets (deploy/kubernetes/training/trainjob.yaml).")
    return indexed_job_tf_config(int(index), TRAINJOB_HOSTS.format(name=name), num_workers, port)


def indexed_job_tf_config(index: int, worker_hosts: str, num_workers: int, port: int) -> dict:
    """TF_CONFIG for pod `index` of an Indexed Job whose pods are reachable as worker_hosts.format(index=i)
    (the pod host name `<job>-<i>` under a headless Service given as the pods' subdomain)."""
    if not 0 <= index < num_workers:
        raise ConfigError(f"JOB_COMPLETION_INDEX {index} is outside --num-workers {num_workers}: "
                          "set --num-workers to the Job's completions (a TrainJob's numNodes).")
    workers = [f"{worker_hosts.format(index=i)}:{port}" for i in range(num_workers)]
    return {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}


def _tf_config_resolver() -> resolvers.TFConfigClusterResolver:
    if "TF_CONFIG" not in os.environ:
        raise ConfigError(
            "--cluster tf-config needs TF_CONFIG, e.g. "
            '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}.'
        )
    try:
        resolver = resolvers.TFConfigClusterResolver()
        resolver.cluster_spec()
    except (ValueError, TypeError) as err:
        raise ConfigError(f"TF_CONFIG is not a valid cluster description ({err}); see "
                          "docs/clusters.md, 'Many machines', for its shape.") from None
    return resolver


def _slurm_resolver(port: int) -> resolvers.ClusterResolver:
    """SlurmClusterResolver reads the job step's nodes and tasks from the environment; tasks on one
    node get ports port, port+1, ... and, on GPU nodes, an equal share of the node's GPUs."""
    gpus = _visible_gpus()
    try:
        if gpus == 0:
            # The resolver cannot hand out zero GPUs per task (it steps through GPUs by that share), so
            # give it one placeholder per task, keep it off CUDA_VISIBLE_DEVICES, and tell the
            # strategy there is no accelerator: each worker trains on its CPU.
            tasks = int(os.environ.get("SLURM_STEP_NUM_TASKS", "1"))
            slurm = resolvers.SlurmClusterResolver(port_base=port, gpus_per_node=tasks, gpus_per_task=1,
                                                   auto_set_gpu=False)
            spec = slurm.cluster_spec()
            return resolvers.SimpleClusterResolver(spec, task_type=slurm.task_type, task_id=slurm.task_id,
                                                   rpc_layer="grpc", num_accelerators={})
        # Slurm's own CUDA_VISIBLE_DEVICES (from --gpus-per-node) already names this task's GPUs.
        slurm = resolvers.SlurmClusterResolver(port_base=port, gpus_per_node=gpus,
                                               auto_set_gpu="CUDA_VISIBLE_DEVICES" not in os.environ)
        slurm.cluster_spec()
        return slurm
    except (RuntimeError, ValueError, KeyError) as err:
        raise ConfigError(f"--cluster slurm could not read the job step ({err}). Start training with srun inside "
                          "an allocation (see deploy/slurm/train.sbatch), one task per node.") from None


def _visible_gpus() -> int | None:
    """GPUs this task may use: CUDA_VISIBLE_DEVICES when set, 0 without nvidia-smi, None to let TF ask it."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return sum(1 for d in visible.split(",") if d.strip().isdigit() or d.strip().startswith(("GPU-", "MIG-")))
    return None if shutil.which("nvidia-smi") else 0


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Only the chief writes the run directory: the 'chief' task, else worker 0, else the only process."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def worker_agreement(strategy: tf.distribute.Strategy):
    """A function ORing a list of flags over all workers by one small all-reduce. Every worker calls
    it at the same point (after each step), so all of them take the same decision at the same step."""

    @tf.function
    def total(flags):
        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(tf.identity, (flags,)), axis=None)

    def agree(flags: list[bool]) -> list[bool]:
        return [bool(v > 0) for v in total(tf.constant([1.0 if f else 0.0 for f in flags])).numpy()]
    return agree


def check_batch_size(strategy: tf.distribute.Strategy, batch_size: int) -> int:
    """Return the per-replica batch, refusing a global batch that does not split evenly."""
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise ConfigError(
            f"--batch-size {batch_size} does not split evenly over {replicas} replicas; "
            f"use a multiple of {replicas}, e.g. {replicas * max(1, batch_size // replicas)}."
        )
    return batch_size // replicas
