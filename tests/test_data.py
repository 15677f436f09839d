import gzip

import numpy as np
import pytest
from PIL import Image

from tests.conftest import has_real_mnist
from training.data import DataError, conform, load_data, load_folder, load_idx, make_pipeline


def test_mnist_sample_ships_5000_labelled_digits():
    data = load_data("mnist-sample", conditional=True)
    assert data.images.shape == (5000, 28, 28, 1) and data.images.dtype == np.uint8
    assert np.bincount(data.labels).tolist() == [500] * 10
    assert data.images.max() == 255 and data.images.mean() > 20  # real strokes, not blank


def test_idx_loader_reads_mnist_idx_files(mnist_test_dir):
    data = load_idx(mnist_test_dir)
    assert data.num_classes == 10 and data.images.dtype == np.uint8
    if has_real_mnist(mnist_test_dir):  # ../shared's real test set
        assert data.images.shape == (10000, 28, 28, 1)
        assert np.bincount(data.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    else:  # the shipped sample, written as idx files: read back pixel for pixel
        sample = load_data("mnist-sample", conditional=True)
        np.testing.assert_array_equal(data.images, sample.images)
        np.testing.assert_array_equal(data.labels, sample.labels)


def test_idx_loader_without_labels_and_with_a_bad_file(tmp_path, mnist_test_dir):
    raw = gzip.open(mnist_test_dir / "t10k-images-idx3-ubyte.gz").read()
    # Keep the header but only 3 images: the header must be rewritten to say so.
    header = bytearray(raw[:16]); header[4:8] = (3).to_bytes(4, "big")
    (tmp_path / "small-images-idx3-ubyte").write_bytes(bytes(header) + raw[16 : 16 + 3 * 784])
    data = load_idx(tmp_path)
    assert data.images.shape == (3, 28, 28, 1) and data.labels is None
    with pytest.raises(DataError, match="needs labels"):
        load_data("idx", str(tmp_path), conditional=True)
    (tmp_path / "small-images-idx3-ubyte").write_bytes(b"\x00\x00\x0d\x03junk")
    with pytest.raises(DataError, match="not a uint8 idx file"):
        load_idx(tmp_path)


def _write_png(path, size, color, mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)


def test_folder_loader_resizes_crops_and_labels_mixed_images(tmp_path):
    _write_png(tmp_path / "cats" / "a.png", (50, 30), (255, 0, 0))
    _write_png(tmp_path / "cats" / "deep" / "b.jpg", (20, 80), (0, 255, 0))
    _write_png(tmp_path / "dogs" / "c.PNG", (64, 64), 128, mode="L")
    data = load_folder(tmp_path, image_size=16, channels=3, labelled=True)
    assert data.images.shape == (3, 16, 16, 3)
    assert data.class_names == ["cats", "dogs"] and data.labels.tolist() == [0, 0, 1]
    assert tuple(data.images[0, 8, 8]) == (255, 0, 0)  # a solid colour survives crop + resize
    gray = load_folder(tmp_path, image_size=8, channels=1, labelled=False)
    assert gray.images.shape == (3, 8, 8, 1) and gray.labels is None
    # Evaluation keeps labels when the layout has them, and does without when it does not.
    assert load_data("folder", str(tmp_path), 8, 1, keep_labels=True).class_names == ["cats", "dogs"]
    _write_png(tmp_path / "loose.png", (8, 8), (1, 2, 3))
    assert load_data("folder", str(tmp_path), 8, 1, keep_labels=True).labels is None


def test_folder_loader_errors_name_the_problem(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_folder(tmp_path / "missing", 16, 3, False)
    with pytest.raises(DataError, match="No PNG or JPEG"):
        load_folder(tmp_path, 16, 3, False)
    _write_png(tmp_path / "loose.png", (8, 8), (1, 2, 3))
    with pytest.raises(DataError, match="one subdirectory per class"):
        load_folder(tmp_path, 16, 3, True)
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match="broken.png"):
        load_folder(tmp_path, 16, 3, False)


def test_held_out_folder_classes_are_matched_to_the_training_classes_by_name(tmp_path):
    from training.data import load_held_out

    for name, shade in (("cat", 10), ("fox", 200)):
        _write_png(tmp_path / "held" / name / "a.png", (8, 8), (shade, shade, shade))
    held = load_held_out("folder", str(tmp_path / "held"), 8, 1, class_names=["cat", "dog", "fox"])
    assert held.class_names == ["cat", "dog", "fox"]
    fox = int(np.argmax(held.images[:, 0, 0, 0]))  # the light image
    assert held.labels[fox] == 2 and held.labels[1 - fox] == 0


def test_a_held_out_class_the_training_data_lacks_is_refused(tmp_path):
    from training.data import load_held_out

    for name in ("cat", "wolf"):
        _write_png(tmp_path / "held" / name / "a.png", (8, 8), (0, 0, 0))
    with pytest.raises(DataError, match="class\\(es\\) wolf that the training data lacks"):
        load_held_out("folder", str(tmp_path / "held"), 8, 1, class_names=["cat", "dog", "fox"])


def test_keras_dataset_offline_error_says_where_to_put_the_file(tmp_path, monkeypatch):
    import keras

    def offline():
        raise Exception("URL fetch failure: no network")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data", offline)
    with pytest.raises(DataError, match=str(tmp_path / "datasets" / "fashion-mnist")):
        load_data("fashion_mnist")


def test_conform_converts_channels_and_size():
    gray = np.full((2, 28, 28, 1), 200, np.uint8)
    rgb = conform(gray, 32, 3)
    assert rgb.shape == (2, 32, 32, 3) and int(rgb[0, 16, 16, 1]) == 200
    back = conform(rgb, 16, 1)
    assert back.shape == (2, 16, 16, 1) and abs(int(back[0, 8, 8, 0]) - 200) <= 1


def test_pipeline_is_a_function_of_seed_and_step():
    data = load_data("mnist-sample")
    data.images, data.labels = data.images[:100], None
    first = [b for _, b in zip(range(8), make_pipeline(data, 16, 4, 2, seed=3))]
    resumed = [b for _, b in zip(range(3), make_pipeline(data, 16, 4, 2, seed=3, start_step=5))]
    for a, b in zip(first[5:], resumed):
        for key in ("images", "noise", "mix", "augment"):
            np.testing.assert_array_equal(a[key].numpy(), b[key].numpy())
    batch = first[0]
    assert batch["images"].shape == (16, 28, 28, 1) and batch["noise"].shape == (16, 3, 4)
    assert batch["mix"].shape == (16, 2)
    assert -1.0 <= float(batch["images"].numpy().min()) and float(batch["images"].numpy().max()) <= 1.0
    other_seed = next(iter(make_pipeline(data, 16, 4, 2, seed=4)))
    assert not np.array_equal(other_seed["noise"].numpy(), batch["noise"].numpy())


def test_no_random_stream_of_a_step_is_drawn_from_another_streams_key():
    """Same key, same bits: a normal draw is then the Box-Muller transform of a uniform one (and a
    uniform draw equals another). Every pair of streams over nearby steps must look independent."""
    from training.data import ImageData

    images = np.zeros((64, 4, 4, 1), np.uint8)
    batches = [b for _, b in zip(range(4), make_pipeline(ImageData(images, None), 64, 8, 1, seed=0))]
    draws = [(step, name, b[name].numpy().ravel()) for step, b in enumerate(batches)
             for name in ("noise", "mix", "augment")]
    for i, (step_a, name_a, a) in enumerate(draws):
        for step_b, name_b, b in draws[i + 1:]:
            n = min(len(a), len(b)) // 2 * 2
            assert abs(_shared_bits(name_a, a[:n], name_b, b[:n])) < 0.8, \
                f"{name_a} at step {step_a} and {name_b} at step {step_b} come from one key"


def _shared_bits(name_a, a, name_b, b):
    """Correlation of two draws through what they would share if made from the same key."""
    def radius(name, x):  # the Box-Muller radius: from a normal pair, or from the uniform it was made of
        return np.hypot(x[0::2], x[1::2]) if name == "noise" else np.sqrt(-2 * np.log(np.maximum(x[0::2], 1e-7)))
    if (name_a == "noise") == (name_b == "noise"):
        return np.corrcoef(a, b)[0, 1]
    return np.corrcoef(radius(name_a, a), radius(name_b, b))[0, 1]


def test_pipeline_visits_every_image_once_per_pass_in_shuffled_order():
    from training.data import ImageData

    # Image i is filled with the value i, so a batch reveals which images it holds.
    images = np.broadcast_to(np.arange(96, dtype=np.uint8)[:, None, None, None], (96, 4, 4, 1)).copy()
    batches = [b for _, b in zip(range(12), make_pipeline(ImageData(images, None), 16, 2, 1, seed=0))]
    ids = [np.rint((b["images"].numpy()[:, 0, 0, 0] + 1) * 127.5).astype(int) for b in batches]
    first_pass, second_pass = np.concatenate(ids[:6]), np.concatenate(ids[6:])
    assert sorted(first_pass) == list(range(96)) and sorted(second_pass) == list(range(96))
    assert list(first_pass) != sorted(first_pass) and list(first_pass) != list(second_pass)


def test_idx_files_written_are_read_back_whole(tmp_path):
    """What `python -m training.mnist_test` writes (and the tests' stand-in for the test digits) is
    what --reference-dir reads."""
    import numpy as np

    from common.realdata import read_idx_dir, write_idx_dir

    images = np.random.default_rng(0).integers(0, 256, (7, 28, 28), dtype=np.uint8)
    labels = np.arange(7) % 10
    write_idx_dir(tmp_path / "mnist-test", images, labels)
    assert sorted(p.name for p in (tmp_path / "mnist-test").iterdir()) == [
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    read_images, read_labels = read_idx_dir(tmp_path / "mnist-test")
    assert np.array_equal(read_images[..., 0], images) and np.array_equal(read_labels, labels)


def test_the_mnist_test_fetcher_explains_itself():
    from tests.conftest import run_python

    result = run_python("-m", "training.mnist_test", "--help")
    assert result.returncode == 0 and "keras.datasets.mnist" in result.stdout and "--reference-dir" in result.stdout
