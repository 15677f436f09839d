"""`python -m export.evaluate`: FID, KID, class coverage and readable rate of a generator artifact.

    python -m export.evaluate --model exports/onnx/generator.onnx --reference-dir ../shared/data/mnist-test
    python -m export.evaluate --run-dir runs/<run>              # its generator.keras, its own dataset
    python -m export.evaluate --run-dir runs/<photos run> --reference-dir <photos>/test   # class folders
    python -m export.evaluate --model exports/tfserving/generator --keras-inception-weights inception_v3_notop.h5

The generator is scored against `--reference-dir` (real images it never trained on: MNIST-format idx
files, or an image folder with one subfolder per class) when given, else against its training data
(with a warning: that rewards memorising it). The domain classifier is the one for the training data
(`--dataset`): shipped for mnist-sample and for CIFAR-10's train split, else trained once and cached. The real-vs-real floor is printed
beside every score. An `.onnx` model scored against mnist-sample or idx data imports no TensorFlow
once the classifier is cached. Exit 2 on a bad path or dataset, with one line saying why.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from common.quiet import quiet_tensorflow  # noqa: E402
from common.realdata import RealDataError, read_idx_dir, read_mnist_sample  # noqa: E402
from export import ExportError  # noqa: E402
from export.artifacts import load_sampler  # noqa: E402
from metrics.evaluator import Evaluator, format_report  # noqa: E402
from training.finished_run import FinishedRun, NotARunError  # noqa: E402


def load_real(dataset: str, data_dir: str | None, image_shape: tuple[int, ...], labels: bool):
    """uint8 images, labels and class names shaped like the generator's output: numpy only for 28x28x1
    mnist-sample/idx, else through `training.data` (which imports TensorFlow)."""
    if tuple(image_shape) == (28, 28, 1) and dataset in ("mnist-sample", "idx"):
        if dataset == "idx" and not data_dir:
            raise RealDataError("--dataset idx needs --data-dir.")
        images, labels = read_mnist_sample() if dataset == "mnist-sample" else read_idx_dir(data_dir)
        return images, labels, None
    if dataset == "mnist-sample":
        size, channels = image_shape[0], image_shape[-1]
        raise RealDataError(f"the generator makes {size}x{size}x{channels} images, not mnist-sample's 28x28x1 digits: "
                            "name the data it trained on, e.g. --dataset folder --data-dir <its training images>, "
                            "or score a run with --run-dir.")
    quiet_tensorflow()
    from training.data import DataError, load_data

    try:
        data = load_data(dataset, data_dir, image_shape[0], image_shape[-1], keep_labels=labels)
    except DataError as err:
        raise RealDataError(str(err)) from None
    return data.images, data.labels, data.class_names


def load_reference(reference_dir: str, image_shape: tuple[int, ...], class_names: list[str] | None):
    """Held-out images (and labels): idx files with numpy alone, else an image folder (one
    subfolder per class gives labels, matched to the training data's classes by name)."""
    root = Path(reference_dir)
    if not root.is_dir():
        raise RealDataError(f"--reference-dir {root} does not exist or is not a directory: point it at held-out "
                            "real images (MNIST-format idx files, or an image folder), or leave it out to score "
                            "against the training data. For MNIST, python -m training.mnist_test DIR writes the "
                            "10,000 test digits there.")
    if any("-idx3-ubyte" in p.name for p in root.iterdir()):
        reference, labels = read_idx_dir(root)
    else:
        quiet_tensorflow()
        from training.data import DataError, load_held_out

        try:
            data = load_held_out("folder", str(root), image_shape[0], image_shape[-1], class_names)
        except DataError as err:
            raise RealDataError(str(err).replace("--eval-reference-dir", "--reference-dir")) from None
        reference, labels = data.images, data.labels
    if reference.shape[1:] != tuple(image_shape):
        raise RealDataError(f"--reference-dir holds {reference.shape[1:]} images; the generator makes {tuple(image_shape)}.")
    return reference, labels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.evaluate", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run-dir", help="A training run: its generator.keras against its own dataset.")
    source.add_argument("--model", help="A .onnx, .keras, SavedModel or TF Serving base path.")
    parser.add_argument("--dataset", default="mnist-sample", help="The data the generator trained on (with --model).")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--reference-dir", default=None, help="Held-out real images to score against: MNIST-format "
                        "idx files, or an image folder (class subfolders named as in the training data).")
    parser.add_argument("--num-samples", type=int, default=10_000, help="Generated images scored.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keras-inception-weights", "--inception-weights", dest="inception_weights", default=None,
                        help="Local keras.applications InceptionV3 no-top .h5: adds a FID in its ImageNet features "
                             "(images resized bilinearly to 299x299). Not the reference FID network, so not "
                             "comparable with published FIDs; compare it only with itself.")
    parser.add_argument("--output", default=None, help="JSON report path (default: <run>/evaluation.json or none).")
    args = parser.parse_args(argv)
    if args.num_samples < 2:
        parser.error("--num-samples must be at least 2")
    try:
        if args.run_dir:
            try:
                run = FinishedRun.open(args.run_dir)
                config = run.require_config("--run-dir (it scores against the run's own dataset)")
            except NotARunError as err:
                raise ExportError(str(err)) from None
            sampler = load_sampler(run.generator_path)
            dataset, data_dir = config.dataset, config.data_dir
            output = Path(args.output) if args.output else run.root / "evaluation.json"
        else:
            sampler = load_sampler(args.model)
            dataset, data_dir = args.dataset, args.data_dir
            output = Path(args.output) if args.output else None
        images, labels, class_names = load_real(dataset, data_dir, sampler.image_shape, labels=True)
        reference, reference_labels = (None, None)
        if args.reference_dir:
            reference, reference_labels = load_reference(args.reference_dir, images.shape[1:], class_names)
        extra = {}
        if args.inception_weights:
            from metrics.evaluator import KERAS_INCEPTION_FID
            from metrics.inception import KerasInceptionFeatures

            try:
                extra[KERAS_INCEPTION_FID] = KerasInceptionFeatures(args.inception_weights)
            except FileNotFoundError as err:
                raise RealDataError(str(err)) from None
        evaluator = Evaluator(images, labels, reference_images=reference, reference_labels=reference_labels,
                              num_samples=args.num_samples, seed=args.seed, extra_features=extra)
        result = evaluator.evaluate(sampler.sample, sampler.latent_dim, sampler.num_classes)
    except (ExportError, RealDataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_report(result))
    if output:
        from common.atomic import write_json_atomic

        write_json_atomic(output, _jsonable(result))
        print(f"wrote {output}")
    return 0


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value.item() if isinstance(value, np.generic) else value


if __name__ == "__main__":
    sys.exit(main())
