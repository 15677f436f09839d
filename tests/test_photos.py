"""Photos: the recipe chosen by the images' shape, the photo classifier, the peers at 32x32x3, and (in
the second tier, with ../shared's CIFAR-10 beside the checkout) the shipped CIFAR-10 evaluator on
known cases: real vs real near the floor; noise, blur and dropped classes raise the score monotonically."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, run_python

CIFAR10_DIR = Path(os.environ.get("GAN_TEST_CIFAR10_DIR", REPO.parent / "shared" / "data" / "cifar10"))
needs_cifar10 = pytest.mark.skipif(not (CIFAR10_DIR / "test").is_dir(), reason=f"CIFAR-10 is not at {CIFAR10_DIR} "
                                   "(a fresh clone has no ../shared): these checks need the real photos")


# -- the recipe follows the data's shape ----------------------------------------------------------


@pytest.mark.parametrize("flags, recipe", [
    ([], "digits"),
    (["--dataset", "folder", "--data-dir", "photos", "--image-size", "32", "--channels", "3"], "photos"),
    (["--dataset", "folder", "--data-dir", "photos"], "photos"),  # folder's default shape is 64x64x3
    (["--dataset", "cifar10"], "photos"),
    (["--dataset", "folder", "--data-dir", "photos", "--channels", "1"], "digits"),
    (["--dataset", "folder", "--data-dir", "photos", "--image-size", "28", "--channels", "3"], "digits"),
    (["--dataset", "cifar10", "--recipe", "digits"], "digits"),
    (["--recipe", "photos"], "photos"),
])
def test_the_recipe_follows_the_shape_the_flags_describe(flags, recipe):
    from training.cli import parse_command_line
    from training.config import PHOTO_RECIPE, TrainConfig

    config, _, why = parse_command_line(flags)
    assert config.recipe == recipe, why
    expected = {**{k: getattr(TrainConfig(), k) for k in PHOTO_RECIPE}, **(PHOTO_RECIPE if recipe == "photos" else {})}
    assert {k: getattr(config, k) for k in PHOTO_RECIPE} == expected


def test_a_flag_or_config_file_value_wins_over_the_photo_recipe(tmp_path):
    from training.cli import parse_command_line
    from training.config import PHOTO_RECIPE

    key = next(k for k in PHOTO_RECIPE if k in ("width", "d_lr"))
    given = {"width": 8, "d_lr": 1e-3}[key]
    flag = f"--{key.replace('_', '-')}"
    config, _, _ = parse_command_line(["--dataset", "cifar10", flag, str(given)])
    assert config.recipe == "photos" and getattr(config, key) == given
    (tmp_path / "run.json").write_text(json.dumps({"dataset": "cifar10", key: given}))
    config, _, _ = parse_command_line(["--config", str(tmp_path / "run.json")])
    assert config.recipe == "photos" and getattr(config, key) == given


def test_a_saved_run_from_before_recipes_resumes_as_the_digit_recipe():
    from training.config import TrainConfig

    saved = {**TrainConfig(dataset="cifar10").to_dict(), "config_version": 2}
    del saved["recipe"]
    config = TrainConfig.from_dict(saved)
    assert config.recipe == "digits" and config.width == TrainConfig().width


def test_the_runs_first_line_says_which_recipe_and_why(monkeypatch, capsys):
    import training.run as run

    monkeypatch.setattr(run, "train_and_report", lambda *args: 0)
    assert run.main(["--dataset", "folder", "--data-dir", "photos", "--image-size", "32", "--channels", "3"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("recipe: photos (32x32x3 colour images;") and "--recipe digits" in first, first


# -- the photo classifier and the peers -----------------------------------------------------------


def test_colour_photos_get_the_resnet_classifier_and_its_features(tmp_path, monkeypatch):
    """A tiny run of the photo recipe's classifier: trained, converted to ONNX, cached, 128-d features."""
    from metrics.classifier import PHOTO_RECIPE, Recipe, get_classifier, recipe_for, to_unit_range

    monkeypatch.setenv("GAN_SERVE_CACHE", str(tmp_path))
    assert recipe_for(np.zeros((1, 32, 32, 3), np.uint8)) == PHOTO_RECIPE
    assert recipe_for(np.zeros((1, 28, 28, 1), np.uint8)) == Recipe()
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 256).astype(np.int32)
    images = np.zeros((256, 32, 32, 3), np.uint8)
    images[labels == 1, :, :, 0] = 200  # class 1 is red
    images = np.clip(images + rng.integers(0, 40, images.shape), 0, 255).astype(np.uint8)
    tiny = Recipe(epochs=2, batch_size=64, width=4, arch="resnet")
    classifier = get_classifier(images, labels, tiny)
    assert classifier.path.parent == tmp_path / "classifiers" and classifier.meta["recipe"]["arch"] == "resnet"
    features, probabilities = classifier.features_and_probabilities(to_unit_range(images[:8]))
    assert features.shape == (8, 128) and probabilities.shape == (8, 2)
    assert classifier.accuracy > 0.9, classifier.meta  # red or not: learnable in two epochs


def test_the_digit_classifiers_cache_key_is_unchanged_by_the_recipe_arch_field():
    """The shipped digit classifier is named by its key: `arch` joins the key only when it is not vgg."""
    from common.realdata import read_mnist_sample
    from metrics.classifier import SHIPPED_DIR, Recipe, cache_key

    images, labels = read_mnist_sample()
    assert (SHIPPED_DIR / f"{cache_key(images, labels, Recipe())}.onnx").is_file()
    assert cache_key(images, labels, Recipe()) != cache_key(images, labels, Recipe(arch="resnet"))


def test_the_peers_adapt_to_colour_photos():
    """The seeds' MLP GAN and the keras-io DCGAN build for 32x32x3 and take a step on photos."""
    from benchmarks.references import keras_io_dcgan, seed_gan

    images = np.random.default_rng(0).uniform(-1, 1, (64, 32, 32, 3)).astype(np.float32)
    seeds = seed_gan.SeedGAN(0, image_shape=(32, 32, 3))
    assert seeds.train(images, 10, max_steps=2) == 2
    assert seeds.sample(np.zeros((2, seed_gan.LATENT_DIM), np.float32)).shape == (2, 32, 32, 3)
    sample, steps = keras_io_dcgan.train(images, 10, max_steps=2)
    out = sample(np.zeros((2, keras_io_dcgan.LATENT_DIM), np.float32))
    assert steps == 2 and out.shape == (2, 32, 32, 3) and -1 <= out.min() and out.max() <= 1


def test_the_photos_benchmark_explains_itself_without_tensorflow():
    result = run_python("-c", "import sys; from benchmarks.photos import main; main(['--list']); "
                        "print('tf loaded' if 'tensorflow' in sys.modules else 'no tf')")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "photos:" in result.stdout and "keras-io DCGAN: a peer" in result.stdout and "no tf" in result.stdout


# -- the shipped CIFAR-10 evaluator (second tier: needs ../shared) --------------------------------


@pytest.fixture(scope="module")
def cifar10():
    from training.data import load_folder

    return load_folder(CIFAR10_DIR / "train", 32, 3, True), load_folder(CIFAR10_DIR / "test", 32, 3, True)


@pytest.fixture(scope="module")
def cifar10_evaluator(cifar10):
    from metrics.evaluator import Evaluator

    train, test = cifar10
    return Evaluator(train.images, train.labels, reference_images=test.images, reference_labels=test.labels,
                     num_samples=10_000)


def _blur(images: np.ndarray, passes: int) -> np.ndarray:
    x = images.astype(np.float32)
    for _ in range(passes):  # a 3x3 box filter, edges repeated
        padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
        x = sum(padded[:, i:i + x.shape[1], j:j + x.shape[2]] for i in range(3) for j in range(3)) / 9.0
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


@pytest.mark.tier2
@needs_cifar10
def test_the_shipped_cifar10_classifier_scores_the_test_split(cifar10_evaluator, cifar10):
    from metrics.classifier import SHIPPED_DIR, to_unit_range

    classifier = cifar10_evaluator.classifier
    assert classifier.path.parent == SHIPPED_DIR, "the CIFAR-10 classifier is not the shipped one (stale key?)"
    _, test = cifar10
    accuracy = float(np.mean(classifier.probabilities(to_unit_range(test.images)).argmax(axis=1) == test.labels))
    assert accuracy == pytest.approx(classifier.meta["test_accuracy"], abs=1e-3)
    assert classifier.meta["test_fingerprint"] == test.fingerprint()
    assert cifar10_evaluator.floor["num_images"] == 10_000


@pytest.mark.tier2
@needs_cifar10
def test_real_photos_score_near_the_floor_and_damage_raises_the_score(cifar10_evaluator, cifar10):
    """10,000 other train photos score near the floor; more noise, more blur and fewer classes each
    score strictly worse, step by step."""
    from metrics.classifier import to_unit_range

    train, _ = cifar10
    rng = np.random.default_rng(5)
    chosen = rng.choice(len(train), 10_000, replace=False)
    real, labels = train.images[chosen], train.labels[chosen]
    floor = cifar10_evaluator.floor["fid"]
    same = cifar10_evaluator.score(to_unit_range(real))["fid"]
    assert same < 1.5 * floor + 0.05, (same, floor)

    def noisy(sigma):
        return np.clip(real + rng.normal(0, sigma, real.shape), 0, 255).astype(np.uint8)

    for damage, levels in ((noisy, (8, 24, 64)), (lambda passes: _blur(real, passes), (1, 2, 4))):
        fids = [same] + [cifar10_evaluator.score(to_unit_range(damage(level)))["fid"] for level in levels]
        assert all(a < b for a, b in zip(fids, fids[1:])), fids
    dropped = [cifar10_evaluator.score(to_unit_range(real[labels < keep]))["fid"] for keep in (10, 7, 4, 1)]
    assert all(a < b for a, b in zip(dropped, dropped[1:])), dropped


@pytest.mark.slow
def test_the_samples_page_shows_colour_models_in_colour(tmp_path):
    """A served 8x8x3 generator: samples.png is an RGB picture whose channels differ, and the page
    that shows it names the model, its version labels and what it is."""
    import io

    import httpx
    from PIL import Image

    from tests.onnx_models import write_version
    from tests.server_harness import Server

    base = tmp_path / "photos"
    write_version(base, 1, seed=3, num_classes=10, image=(8, 8, 3))
    server = Server(["--model-base-path", str(base), "--model-name", "photos", "--labels", "stable=1"],
                    tmp_path / "server.log")
    try:
        png = httpx.get(f"{server.url}/v1/models/photos/samples.png", params={"seed": 0, "count": 10}, timeout=30)
        assert png.status_code == 200, png.text
        grid = Image.open(io.BytesIO(png.content))
        assert grid.mode == "RGB"
        pixels = np.asarray(grid).astype(int)
        assert np.abs(pixels[..., 0] - pixels[..., 1]).mean() > 10 and np.abs(pixels[..., 1] - pixels[..., 2]).mean() > 10
        page = httpx.get(f"{server.url}/samples", params={"model": "photos"}, timeout=30)
        assert page.status_code == 200 and "<td>photos</td><td>1</td><td>stable=1</td>" in page.text
        assert '<option value="1">1 (stable)</option>' in page.text and "samples.png" in page.text
        assert "latent size 8; images 8x8x3; 10 classes" in page.text  # what the model is
    finally:
        assert server.stop() == 0


@pytest.mark.slow
def test_a_conditional_photo_run_draws_one_row_per_class(tmp_path):
    """Class folders of colour photos, --conditional: the photo recipe, and a sample grid in colour
    with one row per class (here 3 classes, 2 samples each)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, colour in (("cats", (200, 40, 40)), ("dogs", (40, 200, 40)), ("ships", (40, 40, 200))):
        (tmp_path / "photos" / name).mkdir(parents=True)
        for i in range(8):
            pixels = np.clip(np.array(colour) + rng.normal(0, 30, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / "photos" / name / f"{i}.jpg")
    run = tmp_path / "run"
    result = run_python("-m", "training.run", "--dataset", "folder", "--data-dir", str(tmp_path / "photos"),
                        "--image-size", "32", "--channels", "3", "--conditional", "--epochs", "1",
                        "--steps-per-epoch", "2", "--width", "4", "--batch-size", "8", "--num-samples", "6",
                        "--verbose", "0", "--output-dir", str(run))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("recipe: photos")
    grid = Image.open(run / "samples" / "epoch_0001.png")
    assert grid.mode == "RGB"
    assert grid.size == (2 * 33 + 1, 3 * 33 + 1)  # 2 columns x 3 rows (one per class) of 32 px, 1 px apart and around
