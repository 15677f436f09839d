"""The pipeline's record format: one tf.Example per image, the image PNG-encoded as it was read.

    image     bytes  the PNG file's bytes (lossless: FID is sensitive to JPEG re-encoding)
    label     int64  class index, -1 for an unlabelled image
    class     bytes  class name ("" when unlabelled): class indices are only meaningful with it

Writing and reading both live here, so ExampleGen, the Trainer's run_fn and the quality gate agree on it
by construction. Images keep their own size and mode in the records; training shapes them as it shapes
any image folder (center crop, resize), and the gate shapes held-out images to the generator's output
the same way (`training.data.fit_image`). Needs numpy, Pillow and TensorFlow's TFRecord reader, no TFX.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

UNLABELLED = -1


@dataclass(frozen=True)
class Record:
    png: bytes
    label: int = UNLABELLED
    class_name: str = ""


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


def read_records(files: list[str]) -> list[Record]:
    """Every record of GZIP TFRecord files of our examples, the images still encoded."""
    import tensorflow as tf

    records = []
    for raw in tf.data.TFRecordDataset(list(files), compression_type="GZIP").as_numpy_iterator():
        feature = tf.train.Example.FromString(raw).features.feature
        records.append(Record(feature["image"].bytes_list.value[0], int(feature["label"].int64_list.value[0]),
                              feature["class"].bytes_list.value[0].decode()))
    if not records:
        raise ValueError(f"no examples in {', '.join(files) or 'an empty file list'}")
    return records


def native_shape(records: list[Record]) -> tuple[int, int, int]:
    """(size, size, channels) training uses by default: the first image's shorter side and mode."""
    height, width, channels = decode_png(records[0].png).shape
    return min(height, width), min(height, width), channels


def labels_of(records: list[Record]) -> tuple[np.ndarray | None, list[str] | None]:
    """int32 labels and class names, or (None, None) unless every image has a class."""
    if any(r.label == UNLABELLED for r in records):
        return None, None
    names = {r.label: r.class_name for r in records}
    return np.array([r.label for r in records], np.int32), [names.get(i, str(i)) for i in range(max(names) + 1)]


def read_split(files: list[str], image_shape: tuple[int, ...] | None = None
               ) -> tuple[np.ndarray, np.ndarray | None, list[str] | None]:
    """(uint8 images [N, H, W, C], int32 labels or None, class names or None). With `image_shape`
    every image is shaped to it as training shapes folder images; without, all must share one shape."""
    from training.data import fit_image

    records = read_records(files)
    if image_shape is None:
        images = [decode_png(r.png) for r in records]
        if len({i.shape for i in images}) > 1:
            raise ValueError(f"images of several shapes in {files[0]} and the rest; give image_shape to fit them")
    else:
        images = []
        for r in records:
            with Image.open(io.BytesIO(r.png)) as image:
                images.append(fit_image(image, int(image_shape[0]), int(image_shape[-1])))
    return (np.stack(images), *labels_of(records))


def split_files(examples_uri: str, split: str) -> list[str]:
    """The TFRecord files of one split of an Examples artifact (`Split-<name>/`)."""
    files = sorted(str(p) for p in (Path(examples_uri) / f"Split-{split}").glob("*.gz"))
    if not files:
        raise ValueError(f"{examples_uri} has no Split-{split}/*.gz records")
    return files


def write_image_folder(records: list[Record], root: Path) -> Path:
    """The records' PNG files, byte for byte, under `root`: one folder per class when every image has
    one, else flat. Our `--dataset folder` layout, which training reads (and shapes) as a user's folder."""
    root = Path(root)
    labelled = all(r.label != UNLABELLED for r in records)
    for i, record in enumerate(records):
        folder = root / record.class_name if labelled else root
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:06d}.png").write_bytes(record.png)
    return root
