"""Generator and discriminator builders for every architecture (`--arch`), by name.

Plain functions that return functional `keras.Model`s. A generator is made of Keras's own layers, so
its `.keras` file reloads with `keras.models.load_model` alone; a conditional or ResNet discriminator's
needs `import training.models` first (it registers their custom layers).
`rewrite_saved_file` makes a saved generator portable, `for_export` turns it back for export. The architectures
themselves live in `training.networks`.
"""

from __future__ import annotations

import keras
from keras import layers

from training.networks import ARCHITECTURES
from training.networks.dcgan import upsampling_plan  # noqa: F401  (public: the resolution plan)
from training.networks.layers import UPSAMPLING, ProjectionHead  # noqa: F401
from training.networks.portable import rewrite_saved_file, with_depth_to_space  # noqa: F401

DEFAULT_UPSAMPLING = "pixelshuffle"


def _architecture(arch: str):
    if arch not in ARCHITECTURES:
        raise ValueError(f"Unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}.")
    return ARCHITECTURES[arch]


def build_generator(
    image_size: int = 28,
    channels: int = 1,
    latent_dim: int = 64,
    width: int = 32,
    num_classes: int | None = None,
    name: str = "generator",
    arch: str = "dcgan",
    upsampling: str = DEFAULT_UPSAMPLING,
) -> keras.Model:
    """z `[batch, latent_dim]` (and label `[batch]` int32 if conditional) -> images in [-1, 1]."""
    upsampling_plan(image_size)  # one message for sizes no architecture can make
    return _architecture(arch).build_generator(image_size, channels, latent_dim, width, num_classes, name, upsampling)


def build_discriminator(
    image_size: int = 28,
    channels: int = 1,
    width: int = 32,
    num_classes: int | None = None,
    name: str = "discriminator",
    arch: str = "dcgan",
    spectral_norm: bool = False,
) -> keras.Model:
    """Images `[batch, H, W, C]` (and label if conditional) -> one unbounded logit per image.

    `resnet` is always spectrally normalized; `spectral_norm` adds it to the others.
    """
    upsampling_plan(image_size)
    return _architecture(arch).build_discriminator(image_size, channels, width, num_classes, name, spectral_norm)


def class_count(generator: keras.Model) -> int | None:
    """Classes of a conditional generator (its class embedding's rows); None when unconditional."""
    if len(generator.inputs) < 2:
        return None
    for layer in generator.layers:
        if isinstance(layer, layers.Embedding):
            return int(layer.input_dim)
    raise ValueError(f"{generator.name} takes two inputs but has no class embedding: not one of ours")


def generator_for(config, num_classes: int | None) -> keras.Model:
    """The generator a resolved `TrainConfig` describes."""
    return build_generator(config.image_size, config.channels, config.latent_dim, config.width, num_classes,
                           arch=config.arch, upsampling=config.upsampling)


def for_export(generator: keras.Model) -> keras.Model:
    """`generator` as loaded from generator.keras, with each pixel shuffle as one DepthToSpace op
    again: what tf2onnx turns into ONNX `DepthToSpace` (training.networks.portable)."""
    return with_depth_to_space(generator)


def discriminator_for(config, num_classes: int | None) -> keras.Model:
    """The discriminator a resolved `TrainConfig` describes."""
    return build_discriminator(config.image_size, config.channels, config.d_width or config.width, num_classes,
                               arch=config.arch, spectral_norm=config.spectral_norm)
