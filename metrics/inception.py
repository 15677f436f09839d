"""Keras's ImageNet InceptionV3 pool features from a local weights file (no download); Keras is
imported only when this extractor is used.

Not the reference FID network: published FIDs use the TensorFlow FID Inception graph (pt_inception
in PyTorch ports), whose weights and resizing differ from `keras.applications.InceptionV3`, and
the images here are upsampled bilinearly to 299x299. The number this gives is comparable only with
itself (same weights file, same sample counts), never with a FID from a paper.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class KerasInceptionFeatures:
    """2048-d pool features of Keras's ImageNet InceptionV3, after a bilinear resize to 299x299."""

    def __init__(self, weights: str | Path):
        import keras

        if not Path(weights).is_file():
            raise FileNotFoundError(f"--keras-inception-weights {weights} does not exist; download Keras's InceptionV3 "
                                    "no-top weights (inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5) "
                                    "where you have network.")
        self.model = keras.applications.InceptionV3(include_top=False, pooling="avg", weights=str(weights),
                                                    input_shape=(299, 299, 3))

    def __call__(self, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
        import keras

        out = []
        for i in range(0, len(images), batch_size):
            batch = images[i : i + batch_size]
            if batch.shape[-1] == 1:
                batch = np.repeat(batch, 3, axis=-1)
            batch = keras.ops.image.resize(batch, (299, 299), interpolation="bilinear")  # stays in [-1, 1]
            out.append(keras.ops.convert_to_numpy(self.model(batch, training=False)))
        return np.concatenate(out)
