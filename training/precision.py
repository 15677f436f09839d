"""Dtype policies for training, and the float32 generator that leaves a mixed-precision run.

Training may compute in float16/bfloat16; everything saved, exported and served is float32, so the
trained weights are copied into a generator built under the float32 policy before they leave.
"""

from __future__ import annotations

import contextlib
import hashlib

import keras
import numpy as np

from training.models import generator_for


@contextlib.contextmanager
def global_dtype_policy(name: str):
    """Keras's global dtype policy set to `name` for the duration of the block."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield name
    finally:
        keras.mixed_precision.set_global_policy(previous)


def precision_policy(mixed: bool):
    """mixed_float16 on GPU, mixed_bfloat16 on CPU, float32 without --mixed-precision."""
    import tensorflow as tf

    if not mixed:
        return global_dtype_policy("float32")
    return global_dtype_policy("mixed_float16" if tf.config.list_logical_devices("GPU") else "mixed_bfloat16")


def float32_generator(config, num_classes: int | None, trained: keras.Model) -> keras.Model:
    """The trained weights in a float32 model (`config` is the run's TrainConfig): what is saved,
    exported and served."""
    with global_dtype_policy("float32"):
        generator = generator_for(config, num_classes)
    generator.set_weights(trained.get_weights())
    return generator


def weights_digest(model: keras.Model) -> str:
    """SHA-256 over a model's weights: equal digests mean bit-identical models."""
    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()
