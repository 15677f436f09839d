"""The pipeline's record format: one tf.Example per image, the image PNG-encoded as it was read.

    image     bytes  the PNG file's bytes (lossless: FID is sensitive to JPEG re-encoding)
    label     int64  class index, -1 for an unlabelled image
    class     bytes  class name ("" when unlabelled): class indices are only meaningful with it

Writing and reading both live here, so ExampleGen, the Trainer's run_fn and the quality gate agree on it
by construction. Needs numpy, Pillow and TensorFlow (for the TFRecord reader), nothing of TFX.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

UNLABELLED = -1


def encode_png(image: np.ndarray) -> bytes:
    """uint8 [H, W, 1|3] -> PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, format="PNG")
    return buffer.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    """PNG (or any Pillow-readable) bytes -> uint8 [H, W, C], C being 1 for grayscale else 3."""
    with Image.open(io.BytesIO(data)) as image:
        image = image.convert("L") if image.mode in ("L", "1", "I;16", "I") else image.convert("RGB")
        array = np.asarray(image, dtype=np.uint8)
    return array[..., None] if array.ndim == 2 else array


def to_example(image_bytes: bytes, label: int = UNLABELLED, class_name: str = ""):
    import tensorflow as tf

    feature = {
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image_bytes])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
        "class": tf.train.Feature(bytes_list=tf.train.BytesList(value=[class_name.encode()])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature))


def read_split(files: list[str]) -> tuple[np.ndarray, np.ndarray | None, list[str] | None]:
    """(uint8 images [N, H, W, C], int32 labels or None, class names or None) from GZIP TFRecords of
    our examples. Labels are kept only when every image has one."""
    import tensorflow as tf

    images, labels, names = [], [], {}
    for record in tf.data.TFRecordDataset(list(files), compression_type="GZIP").as_numpy_iterator():
        example = tf.train.Example.FromString(record)
        feature = example.features.feature
        images.append(decode_png(feature["image"].bytes_list.value[0]))
        label = int(feature["label"].int64_list.value[0])
        labels.append(label)
        if label != UNLABELLED:
            names[label] = feature["class"].bytes_list.value[0].decode()
    if not images:
        raise ValueError(f"no examples in {', '.join(files) or 'an empty file list'}")
    if len({i.shape for i in images}) > 1:
        raise ValueError(f"images of several sizes in {files[0]} and the rest; ExampleGen keeps one size per pipeline")
    labelled = all(label != UNLABELLED for label in labels)
    class_names = [names.get(i, str(i)) for i in range(max(labels) + 1)] if labelled else None
    return np.stack(images), (np.array(labels, np.int32) if labelled else None), class_names


def split_files(examples_uri: str, split: str) -> list[str]:
    """The TFRecord files of one split of an Examples artifact (`Split-<name>/`)."""
    files = sorted(str(p) for p in (Path(examples_uri) / f"Split-{split}").glob("*.gz"))
    if not files:
        raise ValueError(f"{examples_uri} has no Split-{split}/*.gz records")
    return files


def write_image_folder(images: np.ndarray, labels: np.ndarray | None, class_names: list[str] | None,
                       root: Path) -> Path:
    """Images as PNG files under `root` (one folder per class when labelled): our `--dataset folder`
    layout, which training.data reads back losslessly."""
    root = Path(root)
    for i, image in enumerate(images):
        folder = root / class_names[labels[i]] if labels is not None else root
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:06d}.png").write_bytes(encode_png(image))
    return root
