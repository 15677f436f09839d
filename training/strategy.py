"""Choosing the tf.distribute strategy, and the facts about it the rest of training needs.

`auto` picks what a user would: MirroredStrategy over several local GPUs, OneDeviceStrategy on one,
the default strategy on CPU. Past one machine, `multi-worker` is TensorFlow's own
MultiWorkerMirroredStrategy configured by the `TF_CONFIG` environment variable.
"""

from __future__ import annotations

import os

import tensorflow as tf

from training.config import ConfigError


def make_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """Create the strategy. Call before any other TensorFlow work: MultiWorkerMirroredStrategy must
    configure collective ops before the runtime starts."""
    if name == "multi-worker":
        if "TF_CONFIG" not in os.environ:
            raise ConfigError(
                "--strategy multi-worker needs TF_CONFIG, e.g. "
                '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}.'
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
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


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Only the chief writes the run directory: the 'chief' task, else worker 0, else the only process."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def check_batch_size(strategy: tf.distribute.Strategy, batch_size: int) -> int:
    """Return the per-replica batch, refusing a global batch that does not split evenly."""
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise ConfigError(
            f"--batch-size {batch_size} does not split evenly over {replicas} replicas; "
            f"use a multiple of {replicas}, e.g. {replicas * max(1, batch_size // replicas)}."
        )
    return batch_size // replicas
