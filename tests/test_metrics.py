"""The evaluator agrees with reality: an accurate classifier, FID that rises with every
disturbance of the FID paper, honest warnings, and a scoring path that imports no TensorFlow."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageFilter

from common.realdata import read_idx_dir, read_mnist_sample
from metrics.classifier import to_unit_range
from tests.conftest import MNIST_TEST_DIR, REPO, has_real_mnist, run_python


@pytest.fixture(scope="session")
def sample_data():
    return read_mnist_sample()


@pytest.fixture(scope="session")
def mnist_evaluator(sample_data):
    """Classifier trained on the shipped 5k sample (cached for the session); the training images split
    in halves: the reference, and the real images the disturbances are applied to."""
    from metrics.evaluator import Evaluator

    images, labels = sample_data
    return Evaluator(images, labels, num_samples=2500)


def test_the_classifier_reads_held_out_digits_of_the_sample(mnist_evaluator):
    classifier = mnist_evaluator.classifier
    assert classifier.task == "classes" and classifier.meta["held_out_images"] == 500
    assert classifier.accuracy >= 0.97, classifier.describe()


def test_mnist_sample_is_scored_in_the_shipped_classifier_and_it_is_current(mnist_evaluator):
    """The package ships the mnist-sample classifier (same features on every machine, no training on
    first use). If the data, the recipe or its version changes, its cache key moves and this fails."""
    from metrics.classifier import SHIPPED_DIR

    shipped = sorted(p.name for p in SHIPPED_DIR.glob("*.onnx"))
    assert mnist_evaluator.classifier.path.parent == SHIPPED_DIR, (
        f"the shipped classifier {shipped} is stale (the evaluator wants {mnist_evaluator.classifier.path.name}): "
        "run python -m metrics.classifier --ship, delete the old files and commit the new ones")
    trained = mnist_evaluator.classifier.meta["trained"]
    assert trained["command"] == "python -m metrics.classifier --ship" and trained["cpu"]
    # One classifier per shipped dataset (the CIFAR-10 one's key is checked where its photos are).
    datasets = [json.loads((SHIPPED_DIR / name).with_suffix(".json").read_text())["trained"]["dataset"]
                for name in shipped]
    assert sorted(datasets) == ["cifar10", "mnist-sample"], f"one current classifier per dataset: {shipped}"


@pytest.mark.tier2
def test_training_the_shipped_classifier_again_gives_the_same_scores(tmp_path, sample_data):
    """Retrained from scratch (on this machine's CPU, so not bit for bit): the same held-out
    accuracy within a point, and the same FIDs within 10% for disturbances big and small."""
    from metrics.classifier import SHIPPED_DIR, DomainClassifier, ship
    from metrics.frechet import fid

    retrained = ship(tmp_path)
    shipped = SHIPPED_DIR / retrained.name
    assert shipped.is_file(), "the retrained classifier's key differs from the shipped one's"
    meta = json.loads(retrained.with_suffix(".json").read_text())
    classifiers = [DomainClassifier(path, json.loads(path.with_suffix(".json").read_text()))
                   for path in (shipped, retrained)]
    assert abs(meta["held_out_accuracy"] - classifiers[0].accuracy) <= 0.01
    images, _ = sample_data
    rng = np.random.default_rng(0)
    reference, real = to_unit_range(images[:2500]), images[2500:]
    for level in (0.1, 0.4):
        disturbed = _gaussian_noise(real, level, rng)
        fids = [fid(c.features(reference), c.features(disturbed)) for c in classifiers]
        assert fids[1] == pytest.approx(fids[0], rel=0.10), (level, fids)


@pytest.mark.tier2  # needs ../shared, which CI has beside the clone and a fresh clone has not
@pytest.mark.skipif(not has_real_mnist(), reason=f"the real MNIST test set is not at {MNIST_TEST_DIR} (a fresh clone "
                    "has no ../shared): the mnist-sample fallback trained this classifier, so it could not fail")
def test_the_classifier_reaches_98_5_percent_on_the_real_mnist_test_set(mnist_evaluator):
    images, labels = read_idx_dir(MNIST_TEST_DIR)
    assert len(images) == 10_000, "not the MNIST test set"
    accuracy = np.mean(mnist_evaluator.classifier.probabilities(to_unit_range(images)).argmax(axis=1) == labels)
    assert accuracy >= 0.985, accuracy


def _other_half(evaluator, sample_data):
    """The sample's images that are not the evaluator's reference half (what its floor scores)."""
    images, labels = sample_data
    order = np.random.default_rng(evaluator.seed).permutation(len(images))
    rest = order[len(order) // 2 :]
    return images[rest], labels[rest]


def _gaussian_noise(images, level, rng):
    return np.clip(to_unit_range(images) + rng.normal(0, level, images.shape), -1, 1)


def _blur(images, level, rng):
    return to_unit_range(np.stack([np.asarray(Image.fromarray(im[..., 0]).filter(ImageFilter.GaussianBlur(level)))
                                   for im in images])[..., None]) if level else to_unit_range(images)


def _salt_and_pepper(images, level, rng):
    out = to_unit_range(images)
    hit = rng.random(out.shape) < level
    return np.where(hit, rng.choice([-1.0, 1.0], out.shape), out).astype(np.float32)


DISTURBANCES = {"gaussian noise": (_gaussian_noise, [0.0, 0.1, 0.25, 0.5, 1.0]),
                "gaussian blur": (_blur, [0.0, 0.5, 1.0, 1.5, 2.5]),
                "salt and pepper": (_salt_and_pepper, [0.0, 0.02, 0.05, 0.1, 0.25])}


@pytest.mark.parametrize("name", list(DISTURBANCES))
def test_fid_rises_monotonically_as_real_images_are_disturbed(mnist_evaluator, sample_data, name):
    disturb, levels = DISTURBANCES[name]
    images, _ = _other_half(mnist_evaluator, sample_data)
    rng = np.random.default_rng(0)
    scores = [mnist_evaluator.score(disturb(images, level, rng)) for level in levels]
    fids = [s["fid"] for s in scores]
    assert all(a < b for a, b in zip(fids, fids[1:])), (name, fids)
    assert fids[0] == pytest.approx(mnist_evaluator.floor["fid"], rel=1e-6)  # level 0 is the floor itself
    assert fids[-1] > 10 * fids[0]
    readable = [s["readable_rate"] for s in scores]  # not monotonic: pure noise can look confidently like an 8
    assert readable[0] > 0.9 and min(readable[1:]) < readable[0], readable


def test_fid_rises_monotonically_as_classes_are_dropped(mnist_evaluator, sample_data):
    images, labels = _other_half(mnist_evaluator, sample_data)
    fids, kls = [], []
    for dropped in (0, 2, 4, 6, 8):
        kept = np.flatnonzero(labels >= dropped)  # same count: resample the kept classes
        pick = np.random.default_rng(dropped).choice(kept, len(images), replace=dropped > 0)
        result = mnist_evaluator.score(to_unit_range(images[pick] if dropped else images))
        fids.append(result["fid"])
        kls.append(result["class_coverage"]["kl_from_real"])
    assert all(a < b for a, b in zip(fids, fids[1:])), fids
    assert all(a < b for a, b in zip(kls, kls[1:])), kls


def test_scores_come_with_warnings_when_they_should_not_be_trusted(mnist_evaluator, sample_data):
    from metrics.classifier import Recipe
    from metrics.evaluator import Evaluator

    images, labels = sample_data  # the classifier's data stays as shipped, so its cached copy is reused
    order = np.random.default_rng(1).permutation(len(images))  # the sample is sorted by class
    few = mnist_evaluator.score(to_unit_range(images[order[:300]]))
    assert any("only 300 samples" in w for w in few["warnings"])
    assert any("training data" in w for w in few["warnings"])  # no held-out reference was given
    reference, scored = order[:2500], order[2500:4500]
    enough = Evaluator(images, labels, reference_images=images[reference], reference_labels=labels[reference],
                       num_samples=2000).score(to_unit_range(images[scored]))
    assert enough["warnings"] == [] and enough["reference"] == "held-out"
    # Labels that mean nothing: the classifier cannot learn them, and the scores say so.
    few_images, shuffled = images[order[:400]], np.random.default_rng(0).permutation(labels[order[:400]])
    # (5 epochs: random labels are no easier to generalise from with 30, and it takes a sixth of the time)
    weak = Evaluator(few_images, shuffled, num_samples=100, recipe=Recipe(epochs=5)).score(to_unit_range(few_images[:100]))
    assert weak["classifier"]["held_out_accuracy"] < 0.5
    assert any("accurate on held-out data" in w for w in weak["warnings"])


def test_the_classifier_is_float32_and_built_outside_any_dtype_policy(sample_data):
    import keras

    from metrics.classifier import Recipe, cache_key, get_classifier

    images, labels = sample_data
    order = np.random.default_rng(2).permutation(len(images))[:300]
    images, labels = images[order], labels[order]
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        classifier = get_classifier(images, labels, Recipe(epochs=2))
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert classifier.meta["dtype"] == "float32" and classifier.features(to_unit_range(images[:4])).dtype == np.float32
    assert cache_key(images, labels, Recipe(epochs=2)) in classifier.path.name


def test_scoring_an_onnx_generator_imports_no_tensorflow(mnist_evaluator, tiny_export, tmp_path):
    """A fresh process: the cached classifier runs in onnxruntime, the generator too."""
    model = tiny_export / "onnx" / "generator.onnx"
    out = tmp_path / "report.json"
    code = ("import sys; from export.evaluate import main; "
            f"rc = main(['--model', {str(model)!r}, '--num-samples', '300', '--output', {str(out)!r}]); "
            "loaded = sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras', 'tf2onnx'}); "
            "print('loaded:', loaded); sys.exit(rc)")
    result = run_python("-c", code, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "loaded: []" in result.stdout, result.stdout[-2000:]
    assert "FID" in result.stdout and "warning: only 300 samples" in result.stdout


def test_two_runs_on_one_dataset_train_one_classifier_and_its_files_match(tmp_path, monkeypatch):
    """The cache is checked, trained and written under a lock: the second run waits, then reads."""
    import threading
    import time

    import metrics.classifier as classifier

    monkeypatch.setenv("GAN_SERVE_CACHE", str(tmp_path))
    trained = []

    def slow_training(images, labels, recipe, onnx_path, meta_path, verbose=0):
        me = str(threading.get_ident())
        trained.append(me)
        onnx_path.parent.mkdir(parents=True, exist_ok=True)
        onnx_path.write_text(me)
        time.sleep(0.5)  # a real one takes minutes
        meta_path.write_text(json.dumps({"writer": me}))

    monkeypatch.setattr(classifier, "train_and_convert", slow_training)
    monkeypatch.setattr(classifier, "DomainClassifier", lambda path, meta: (path.read_text(), meta["writer"]))
    images = np.zeros((8, 28, 28, 1), np.uint8)
    opened = []
    runs = [threading.Thread(target=lambda: opened.append(classifier.get_classifier(images, None, verbose=0)))
            for _ in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    assert len(trained) == 1
    assert [onnx == meta for onnx, meta in opened] == [True, True]
