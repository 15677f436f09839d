"""`python -m training.evaluate`: FID, KID and class coverage of a generator against real data.

    python -m training.evaluate --run-dir runs/<run>
    python -m training.evaluate --model exports/onnx/generator.onnx --dataset mnist-sample
    python -m training.evaluate --model exports/tfserving/generator/1 --inception-weights inception_v3.h5

Features come from a domain classifier trained on the real data (see training.classifier), reported
with its held-out accuracy. The real-vs-real value (two disjoint real halves, same sample size) is
printed beside every score: it is the floor a perfect generator would reach.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from training.classifier import get_classifier, to_unit_range  # noqa: E402
from training.data import DataError, ImageData, load_data  # noqa: E402
from training.fid import class_coverage, fid, kid  # noqa: E402


class Evaluator:
    """Real-data reference features, computed once; `evaluate` scores any sampler against them."""

    def __init__(self, real: ImageData, num_samples: int = 2000, seed: int = 0, inception_weights: str | None = None):
        self.real, self.seed = real, seed
        self.classifier = get_classifier(real.images, real.labels)
        order = np.random.default_rng(seed).permutation(len(real))
        half = len(order) // 2
        reference, held_out = order[:half], order[half:]
        self.num_samples = min(num_samples, len(held_out))
        self.reference_features = self.classifier.features(to_unit_range(real.images[reference]))
        held_out_features = self.classifier.features(to_unit_range(real.images[held_out[: self.num_samples]]))
        kid_mean, _ = kid(held_out_features, self.reference_features, seed=seed)
        self.floor = {"fid": fid(held_out_features, self.reference_features), "kid": kid_mean}
        self.inception = InceptionFeatures(inception_weights) if inception_weights else None
        if self.inception:
            self.inception_reference = self.inception(to_unit_range(real.images[reference[: self.num_samples]]))
            self.floor["inception_fid"] = fid(self.inception(to_unit_range(real.images[held_out[: self.num_samples]])),
                                              self.inception_reference)

    def generated(self, sample, latent_dim: int, conditional: bool) -> np.ndarray:
        """`num_samples` images from `sample(z, labels)`; labels follow the real class frequencies."""
        rng = np.random.default_rng(self.seed + 1)
        z = rng.standard_normal((self.num_samples, latent_dim)).astype(np.float32)
        labels = rng.choice(self.real.labels, self.num_samples).astype(np.int32) if conditional else None
        images = np.concatenate([sample(z[i : i + 250], None if labels is None else labels[i : i + 250])
                                 for i in range(0, self.num_samples, 250)])
        return images

    def evaluate(self, sample, latent_dim: int, conditional: bool) -> dict:
        images = self.generated(sample, latent_dim, conditional)
        features = self.classifier.features(images)
        kid_mean, kid_std = kid(features, self.reference_features, seed=self.seed)
        result = {"fid": fid(features, self.reference_features), "kid": kid_mean, "kid_std": kid_std,
                  "fid_real_vs_real": self.floor["fid"], "kid_real_vs_real": self.floor["kid"],
                  "num_samples": self.num_samples, "classifier": self.classifier.describe()}
        if self.classifier.task == "classes":
            probabilities = self.classifier.predict(images)
            result["class_coverage"] = class_coverage(probabilities.argmax(axis=1), self.real.labels,
                                                      self.classifier.num_classes, probabilities)
        if self.inception:
            result["inception_fid"] = fid(self.inception(images), self.inception_reference)
            result["inception_fid_real_vs_real"] = self.floor["inception_fid"]
        return result


class InceptionFeatures:
    """Standard Inception-v3 pool features, from a local weights file (no download)."""

    def __init__(self, weights: str):
        import keras

        if not Path(weights).is_file():
            raise DataError(f"--inception-weights {weights} does not exist; download Keras's InceptionV3 "
                            "no-top weights (inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5) where you have network.")
        self.model = keras.applications.InceptionV3(include_top=False, pooling="avg", weights=weights,
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


@dataclass(frozen=True)
class Sampler:
    """Any generator artifact behind one call: `sample(z, labels)` -> images in [-1, 1]."""

    sample: Callable
    latent_dim: int
    num_classes: int | None
    image_shape: tuple[int, ...]

    @property
    def conditional(self) -> bool:
        return bool(self.num_classes)


def load_sampler(model: str | Path) -> Sampler:
    """A .onnx file, a .keras file, a SavedModel version directory or a TF Serving base path."""
    path = Path(model)
    if not path.exists():
        raise DataError(f"--model {path} does not exist.")
    if path.suffix == ".onnx":
        from serving.onnx_generator import OnnxGenerator

        generator = OnnxGenerator(path)
        info = generator.info

        def sample(z, labels):
            return generator.run({"z": z, **({"label": labels} if labels is not None else {})})
        return Sampler(sample, info.latent_dim, info.num_classes, info.image_shape)
    if path.suffix == ".keras":
        import keras

        import training  # noqa: F401
        from training.models import class_count

        generator = keras.models.load_model(path, compile=False)
        return Sampler(keras_sampler(generator), int(generator.inputs[0].shape[-1]), class_count(generator),
                       tuple(generator.outputs[0].shape[1:]))
    import tensorflow as tf

    if not (path / "saved_model.pb").is_file():
        versions = sorted(int(p.name) for p in path.iterdir() if p.name.isdigit()) if path.is_dir() else []
        if not versions:
            raise DataError(f"--model {path} is not a .onnx, .keras, SavedModel or TF Serving base path.")
        path = path / str(versions[-1])
    fn = tf.saved_model.load(str(path)).signatures["serving_default"]
    specs = fn.structured_input_signature[1]
    card = path / "assets.extra" / "model_card.json"
    num_classes = json.loads(card.read_text()).get("num_classes") if card.is_file() else None
    if "label" in specs and not num_classes:
        raise DataError(f"{path} is class-conditional but has no assets.extra/model_card.json to give its classes.")

    def sample(z, labels):
        inputs = {"z": tf.constant(z), **({"label": tf.constant(labels)} if labels is not None else {})}
        return fn(**inputs)["images"].numpy()
    return Sampler(sample, int(specs["z"].shape[1]), num_classes if "label" in specs else None,
                   tuple(fn.structured_outputs["images"].shape[1:]))


def keras_sampler(generator):
    import keras

    def sample(z, labels):
        inputs = [z, labels] if labels is not None else z
        return keras.ops.convert_to_numpy(generator(inputs, training=False))
    return sample


def format_report(result: dict) -> str:
    lines = [f"FID {result['fid']:.3f}   (real vs real: {result['fid_real_vs_real']:.3f})",
             f"KID {result['kid']:.5f} +- {result['kid_std']:.5f}   (real vs real: {result['kid_real_vs_real']:.5f})"]
    if "inception_fid" in result:
        lines.append(f"Inception FID {result['inception_fid']:.3f}   (real vs real: {result['inception_fid_real_vs_real']:.3f})")
    c = result["classifier"]
    lines.append(f"features: {c['task']} classifier, held-out accuracy {c['held_out_accuracy']:.3f}; "
                 f"{result['num_samples']} samples")
    if "class_coverage" in result:
        cov = result["class_coverage"]
        lines.append(f"classes: {cov['classes_covered']}/{len(cov['histogram'])} covered, KL from real "
                     f"{cov['kl_from_real']:.4f}, mean confidence {cov['mean_confidence']:.3f}, histogram {cov['histogram']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run-dir", help="A training run: its generator.keras against its own dataset.")
    source.add_argument("--model", help="A .onnx, .keras, SavedModel or TF Serving base path.")
    parser.add_argument("--dataset", default="mnist-sample", help="Real data for --model.")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--num-samples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--inception-weights", default=None, help="Local InceptionV3 no-top .h5: adds the standard FID.")
    parser.add_argument("--output", default=None, help="JSON report path (default: <run>/evaluation.json or stdout only).")
    args = parser.parse_args(argv)
    try:
        if args.run_dir:
            run = Path(args.run_dir)
            if not (run / "config.json").is_file() or not (run / "generator.keras").is_file():
                raise DataError(f"{run} is not a finished run directory (needs config.json and generator.keras).")
            config = json.loads((run / "config.json").read_text())
            sampler = load_sampler(run / "generator.keras")
            real = load_data(config["dataset"], config["data_dir"], config["image_size"], config["channels"],
                             conditional=sampler.conditional, keep_labels=True)
            output = Path(args.output) if args.output else run / "evaluation.json"
        else:
            sampler = load_sampler(args.model)
            real = load_data(args.dataset, args.data_dir, sampler.image_shape[0], sampler.image_shape[-1],
                             conditional=sampler.conditional, keep_labels=True)
            output = Path(args.output) if args.output else None
        evaluator = Evaluator(real, args.num_samples, args.seed, args.inception_weights)
        result = evaluator.evaluate(sampler.sample, sampler.latent_dim, sampler.conditional)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_report(result))
    if output:
        from common.atomic import write_json_atomic

        write_json_atomic(output, result)
        print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
