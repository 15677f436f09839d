"""The generator's signature: the contract every exported generator keeps and every reader relies on.

    z       float32 [batch, latent_dim]   standard-normal noise
    label   int32   [batch]               class in [0, num_classes), class-conditional models only
    images  float32 [batch, H, W, C]      pixels in [-1, 1]

One owner for the names, dtypes, shapes and class range, and for drawing inputs from a seed, so that
export (which writes it into the model card), serving, the metrics and the variant checks cannot
drift apart. Needs numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Z, LABEL, IMAGES = "z", "label", "images"
VALUE_RANGE = (-1.0, 1.0)


def random_z(count: int, latent_dim: int, seed: int | np.random.Generator | None = None) -> np.ndarray:
    """`count` standard-normal latent vectors from `seed` (an int, or a Generator to draw on from)."""
    return np.random.default_rng(seed).standard_normal((count, latent_dim)).astype(np.float32)


def labels_in_turn(count: int, num_classes: int, start: int = 0) -> np.ndarray:
    """Classes in turn, 0, 1, ..., num_classes - 1, 0, ... from row `start`: every class alike."""
    return ((np.arange(count) + start) % num_classes).astype(np.int32)


def random_inputs(count: int, latent_dim: int, num_classes: int | None, seed: int | np.random.Generator | None = None,
                  label: int | None = None) -> dict[str, np.ndarray]:
    """Named inputs for `count` images: z from `seed`; one `label` for all rows, or the classes in turn."""
    inputs = {Z: random_z(count, latent_dim, seed)}
    if num_classes:
        inputs[LABEL] = np.full(count, label, np.int32) if label is not None else labels_in_turn(count, num_classes)
    return inputs


@dataclass(frozen=True)
class GeneratorSignature:
    latent_dim: int
    image_shape: tuple[int, int, int]
    num_classes: int | None = None

    @property
    def input_names(self) -> tuple[str, ...]:
        return (Z, LABEL) if self.num_classes else (Z,)

    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        """Each input's shape after the batch dimension."""
        return {Z: (self.latent_dim,), **({LABEL: ()} if self.num_classes else {})}

    def random_inputs(self, count: int, seed: int | np.random.Generator | None = None,
                      label: int | None = None) -> dict[str, np.ndarray]:
        """Named inputs for `count` images (`random_inputs`)."""
        return random_inputs(count, self.latent_dim, self.num_classes, seed, label)

    def card_entries(self) -> dict:
        """What the model card says of the signature (export writes it; `from_card` reads it back)."""
        height, width, channels = self.image_shape
        inputs = {Z: {"dtype": "float32", "shape": [-1, self.latent_dim]}}
        if self.num_classes:
            inputs[LABEL] = {"dtype": "int32", "shape": [-1], "range": [0, self.num_classes - 1]}
        return {"latent_dim": self.latent_dim, "image_shape": [height, width, channels], "channels": channels,
                "value_range": list(VALUE_RANGE), "conditional": bool(self.num_classes),
                "num_classes": self.num_classes, "inputs": inputs,
                "outputs": {IMAGES: {"dtype": "float32", "shape": [-1, height, width, channels]}}}

    @classmethod
    def from_card(cls, card: dict) -> GeneratorSignature:
        return cls(int(card["latent_dim"]), tuple(int(d) for d in card["image_shape"]), card.get("num_classes") or None)
