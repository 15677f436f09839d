"""Score a generator against held-out real images: FID, KID, class coverage and readable rate.

    from metrics.evaluator import Evaluator

    evaluator = Evaluator(train_images, train_labels,            # uint8 [N, H, W, C]: the generator's data
                          reference_images=held_out_images,      # uint8, images the generator never saw
                          reference_labels=held_out_labels, num_samples=10_000)
    result = evaluator.evaluate(sample, latent_dim=64)           # sample(z, labels) -> images in [-1, 1]
    result["fid"], result["fid_real_vs_real"], result["readable_rate"], result["warnings"]
    evaluator.score(images)                                      # the same scores for images in [-1, 1]

The features come from a domain classifier trained on `train_images` (`metrics.classifier`: cached,
scored with onnxruntime, no TensorFlow once cached). FID/KID compare generated images with the
reference set; the real-vs-real floor scores the training images the same way (what a generator that
reproduced its data exactly would get; at most 10,000 of them). The classifier's recipe follows the
data's shape (`metrics.classifier.recipe_for`: a small ResNet for colour photos). Without a reference set the training images serve as their
own (split in halves for the floor) and a warning says that such a FID rewards memorisation.
`sample(z, labels)` gets standard-normal `z` and, with `num_classes`, labels drawn with the real
class frequencies; it knows nothing of files, so any model in any format can be scored.
Scores are returned with `warnings` when they should not be trusted.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from common.signature import random_z
from metrics.classifier import Recipe, get_classifier, to_unit_range
from metrics.coverage import class_coverage, readable_rate
from metrics.frechet import fid
from metrics.kernel import kid

MIN_SAMPLES = 2000
MIN_ACCURACY = 0.8  # the shipped CIFAR-10 classifier reads 82% of its test split; a weak one, far less
FLOOR_IMAGES = 10_000  # training images the real-vs-real floor scores (a random subset of more)
BATCH = 500

Sample = Callable[[np.ndarray, "np.ndarray | None"], np.ndarray]


class Evaluator:
    def __init__(self, train_images: np.ndarray, train_labels: np.ndarray | None = None, *,
                 reference_images: np.ndarray | None = None, reference_labels: np.ndarray | None = None,
                 num_samples: int = 10_000, seed: int = 0, recipe: Recipe | None = None,
                 extra_features: dict[str, Callable] | None = None):
        self.seed, self.num_samples = seed, int(num_samples)
        self.classifier = get_classifier(train_images, train_labels, recipe)
        self.extra_features = extra_features or {}
        self.held_out = reference_images is not None
        if self.held_out:
            floor_images, reference = train_images, reference_images
            if len(floor_images) > FLOOR_IMAGES:
                floor_images = floor_images[np.random.default_rng(seed).choice(len(floor_images), FLOOR_IMAGES,
                                                                               replace=False)]
            self.reference_labels = reference_labels if reference_labels is not None else train_labels
        else:  # the training data is all we have: halves of it for the floor
            order = np.random.default_rng(seed).permutation(len(train_images))
            half = len(order) // 2
            floor_images, reference = train_images[order[half:]], train_images[order[:half]]
            self.reference_labels = None if train_labels is None else train_labels[order[:half]]
        self.num_reference = len(reference)
        reference = to_unit_range(reference)
        self.reference_features = self.classifier.features(reference)
        self.reference_extra = {name: fn(reference) for name, fn in self.extra_features.items()}
        floor = self.score(to_unit_range(floor_images), warn=False)
        self.floor = {"fid": floor["fid"], "kid": floor["kid"], "num_images": len(floor_images),
                      **{name: floor[name] for name in self.extra_features}}

    def sample_inputs(self, latent_dim: int, num_classes: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """The fixed noise (and labels, with the real class frequencies) every evaluation uses."""
        rng = np.random.default_rng([self.seed, 1])
        z = random_z(self.num_samples, latent_dim, rng)
        if not num_classes:
            return z, None
        pool = self.reference_labels if self.reference_labels is not None else np.arange(num_classes)
        return z, rng.choice(np.asarray(pool), self.num_samples).astype(np.int32)

    def generate(self, sample: Sample, latent_dim: int, num_classes: int | None = None) -> np.ndarray:
        z, labels = self.sample_inputs(latent_dim, num_classes)
        return np.concatenate([np.asarray(sample(z[i : i + BATCH], None if labels is None else labels[i : i + BATCH]),
                                          np.float32) for i in range(0, len(z), BATCH)])

    def evaluate(self, sample: Sample, latent_dim: int, num_classes: int | None = None) -> dict:
        """`num_samples` images from `sample(z, labels)`, scored."""
        return self.score(self.generate(sample, latent_dim, num_classes))

    def score(self, images: np.ndarray, warn: bool = True) -> dict:
        """FID/KID against the reference set and class coverage of images in [-1, 1]."""
        features, probabilities = self.classifier.features_and_probabilities(images)
        kid_mean, kid_std = kid(features, self.reference_features, seed=self.seed)
        result = {"fid": fid(features, self.reference_features), "kid": kid_mean, "kid_std": kid_std,
                  "num_samples": len(images), "num_reference": self.num_reference,
                  "reference": "held-out" if self.held_out else "training data",
                  "classifier": self.classifier.describe()}
        for name, fn in self.extra_features.items():
            result[name] = fid(fn(images), self.reference_extra[name])
        if self.classifier.task == "classes":
            result["readable_rate"] = readable_rate(probabilities)
            if self.reference_labels is not None:
                result["class_coverage"] = class_coverage(probabilities.argmax(axis=1), self.reference_labels,
                                                          self.classifier.num_classes, probabilities)
        if warn:
            result.update({f"{k}_real_vs_real": v for k, v in self.floor.items() if k != "num_images"},
                          warnings=self.warnings(len(images)))
        return result

    def warnings(self, num_samples: int) -> list[str]:
        notes = []
        if num_samples < MIN_SAMPLES:
            notes.append(f"only {num_samples} samples: FID is biased upward and KID noisy below {MIN_SAMPLES:,}; "
                         "compare runs only at equal sample counts (10,000 for published numbers).")
        if self.num_reference < MIN_SAMPLES:
            notes.append(f"only {self.num_reference} reference images: FID is biased upward below {MIN_SAMPLES:,}.")
        if self.classifier.accuracy < MIN_ACCURACY:
            notes.append(f"the domain classifier is {self.classifier.accuracy:.1%} accurate on held-out data "
                         f"(< {MIN_ACCURACY:.0%}): its features may not tell good samples from bad; "
                         "train on more (or labelled) data.")
        if not self.held_out:
            notes.append("the reference images are the generator's training data: a model that memorises them "
                         "scores best; pass held-out images for an honest FID.")
        return notes


# The key of `--keras-inception-weights`' FID: what it measures, not "the Inception FID" of papers.
KERAS_INCEPTION_FID = "fid_keras_inceptionv3_bilinear"


def format_report(result: dict) -> str:
    lines = [f"FID {result['fid']:.3f}   (real vs real: {result['fid_real_vs_real']:.3f}; "
             f"{result['num_samples']} samples vs {result['num_reference']} {result['reference']} images)",
             f"KID {result['kid']:.5f} +- {result['kid_std']:.5f}   (real vs real: {result['kid_real_vs_real']:.5f})"]
    for name in (KERAS_INCEPTION_FID,):
        if name in result:
            lines.append(f"FID in Keras ImageNet InceptionV3 features (bilinear resize; not comparable with published "
                         f"FIDs) {result[name]:.3f}   (real vs real: {result[name + '_real_vs_real']:.3f})")
    c = result["classifier"]
    lines.append(f"features: {c['task']} classifier, held-out accuracy {c['held_out_accuracy']:.3f}")
    if "readable_rate" in result:
        lines.append(f"readable: {result['readable_rate']:.1%} of samples classified with >= 90% confidence")
    if "class_coverage" in result:
        cov = result["class_coverage"]
        lines.append(f"classes: {cov['classes_covered']}/{len(cov['histogram'])} covered, KL from real "
                     f"{cov['kl_from_real']:.4f}, mean confidence {cov['mean_confidence']:.3f}, histogram {cov['histogram']}")
    lines += [f"warning: {w}" for w in result.get("warnings", [])]
    return "\n".join(lines)
