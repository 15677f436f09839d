"""The one function every artifact is made from: named inputs in, `{"images": ...}` out.

Inputs are `z` (float32 `[batch, latent_dim]`) and, for a class-conditional generator, `label`
(int32 `[batch]`). The output is a flat dict so the SavedModel signature and the ONNX graph both
call it `images`. The generator runs with `training=False` (BatchNorm in inference mode) and the
function is not XLA-compiled: TF Serving runs with JIT off.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import tensorflow as tf

from common.signature import IMAGES, LABEL, Z, GeneratorSignature
from training.models import class_count

SIGNATURE_NAME = "serving_default"
OUTPUT_NAME = IMAGES


@dataclass(frozen=True)
class GeneratorSpec(GeneratorSignature):
    """The signature (`common.signature`) read off a Keras generator, with TensorFlow's specs of it."""

    @classmethod
    def of(cls, generator: keras.Model) -> GeneratorSpec:
        """Read the shapes off the model itself; the class count is its class embedding's size."""
        latent_dim = int(generator.inputs[0].shape[-1])
        image_shape = tuple(int(d) for d in generator.outputs[0].shape[1:])
        return cls(latent_dim, image_shape, class_count(generator))

    @property
    def input_signature(self) -> list[tf.TensorSpec]:
        spec = [tf.TensorSpec([None, self.latent_dim], tf.float32, name=Z)]
        if self.num_classes:
            spec.append(tf.TensorSpec([None], tf.int32, name=LABEL))
        return spec


def serving_function(generator: keras.Model, spec: GeneratorSpec):
    """A `tf.function` with a fixed, named input signature returning `{"images": float32}`."""
    if spec.num_classes:
        def serve(z, label):
            return {OUTPUT_NAME: tf.cast(generator([z, label], training=False), tf.float32)}
    else:
        def serve(z):
            return {OUTPUT_NAME: tf.cast(generator(z, training=False), tf.float32)}
    return tf.function(serve, input_signature=spec.input_signature, jit_compile=False)
