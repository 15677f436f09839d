"""The parts of pipelines/tfx that need no TFX, in the project's own environment (fast tier): the
record format shared by ExampleGen, run_fn and the gate, and how run_fn builds our TrainConfig."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.tfx.image_examples import (Record, decode_png, encode_png, native_shape, read_records,
                                          read_split, to_example, write_image_folder)


def write_records(path, records):
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
        for record in records:
            writer.write(to_example(record.png, record.label, record.class_name).SerializeToString())
    return str(path)


def test_records_round_trip_pixels_labels_and_class_names(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 6, 6, 1), dtype=np.uint8)
    names = ["zero", "one", "two"]
    labels = [0, 2, 1, 2, 0]
    path = write_records(tmp_path / "data.gz", [Record(encode_png(im), lab, names[lab]) for im, lab in zip(images, labels)])
    read, read_labels, class_names = read_split([path])
    np.testing.assert_array_equal(read, images)
    assert read_labels.tolist() == labels and class_names == names


def test_unlabelled_records_read_without_labels_and_rgb_stays_rgb(tmp_path):
    image = np.random.default_rng(1).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    assert decode_png(encode_png(image)).shape == (4, 4, 3)
    path = write_records(tmp_path / "data.gz", [Record(encode_png(image))] * 2)
    images, labels, names = read_split([path])
    assert images.shape == (2, 4, 4, 3) and labels is None and names is None


def test_images_of_several_sizes_are_shaped_as_training_shapes_them(tmp_path):
    """A folder may mix sizes: records keep them; the gate asks for the generator's shape."""
    rng = np.random.default_rng(3)
    big, small = (rng.integers(0, 256, shape, dtype=np.uint8) for shape in ((40, 30, 3), (20, 20, 3)))
    path = write_records(tmp_path / "data.gz", [Record(encode_png(big)), Record(encode_png(small))])
    with pytest.raises(ValueError, match="several shapes"):
        read_split([path])
    images, _, _ = read_split([path], (16, 16, 1))
    assert images.shape == (2, 16, 16, 1)
    assert native_shape(read_records([path])) == (30, 30, 3)


def test_the_train_split_becomes_our_folder_dataset_byte_for_byte(tmp_path):
    """write_image_folder's layout is what training.data's folder loader reads back, labels included."""
    from training.data import load_data

    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (6, 8, 8, 1), dtype=np.uint8)
    labels = [0, 1, 0, 1, 1, 0]
    records = [Record(encode_png(im), lab, ["3", "7"][lab]) for im, lab in zip(images, labels)]
    root = write_image_folder(records, tmp_path / "train")
    assert sorted(p.read_bytes() for p in root.rglob("*.png")) == sorted(r.png for r in records)
    data = load_data("folder", str(root), 8, 1, conditional=True)
    assert data.class_names == ["3", "7"] and sorted(data.labels.tolist()) == sorted(labels)
    assert sorted(map(bytes, data.images)) == sorted(map(bytes, images))
    write_image_folder([Record(r.png) for r in records], tmp_path / "flat")
    assert len(list((tmp_path / "flat").glob("*.png"))) == 6  # unlabelled: flat


def test_run_fn_builds_our_train_config_from_custom_config_and_owns_the_data_keys(tmp_path):
    from pipelines.tfx.trainer_module import train_config
    from training.config import ConfigError

    config = train_config({"train_config": {"epochs": 2, "loss": "rpgan", "r1-gamma": 0.05}}, tmp_path / "d",
                          tmp_path / "run", (28, 28, 1))
    assert (config.dataset, config.data_dir, config.image_size, config.channels) == ("folder", str(tmp_path / "d"), 28, 1)
    assert (config.epochs, config.loss, config.r1_gamma, config.output_dir) == (2, "rpgan", 0.05, str(tmp_path / "run"))
    resized = train_config({"train_config": {"image_size": 32, "channels": 3}}, tmp_path, tmp_path, (28, 28, 1))
    assert (resized.image_size, resized.channels) == (32, 3)
    with pytest.raises(ConfigError, match="may not set data_dir"):
        train_config({"train_config": {"data_dir": "/elsewhere"}}, tmp_path, tmp_path, (28, 28, 1))
    with pytest.raises(ConfigError, match="Unknown key"):
        train_config({"train_config": {"epoch": 2}}, tmp_path, tmp_path, (28, 28, 1))
