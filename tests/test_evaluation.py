"""FID, KID and class coverage on known cases, the evaluation CLI on exported artifacts, and --eval-every."""

import json

import numpy as np
import pytest

from metrics.coverage import class_coverage
from metrics.frechet import fid, frechet_distance
from metrics.kernel import kid, mmd2_unbiased, polynomial_kernel


def test_fid_of_a_set_against_itself_is_zero_and_of_a_shift_is_its_squared_norm():
    x = np.random.default_rng(0).standard_normal((500, 16))
    assert fid(x, x) == pytest.approx(0.0, abs=1e-6)
    shift = np.zeros(16)
    shift[:4] = 1.0
    assert fid(x, x + shift) == pytest.approx(4.0, rel=1e-6)


def test_frechet_distance_matches_the_closed_form_for_isotropic_gaussians():
    d = 8
    # N(0, aI) vs N(0, bI): d * (sqrt(a) - sqrt(b))^2
    assert frechet_distance(np.zeros(d), 4 * np.eye(d), np.zeros(d), np.eye(d)) == pytest.approx(d * 1.0)
    # Rank-deficient covariances (fewer samples than dimensions) stay real, finite and non-negative.
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((5, 32)), rng.standard_normal((5, 32)) * 3
    value = fid(a, b)
    assert np.isfinite(value) and value > 0


def test_kid_is_exact_on_point_masses_and_unbiased_on_one_distribution():
    a, b = np.ones((50, 4)), np.full((50, 4), 2.0)
    expected = polynomial_kernel(a[:1], a[:1]) + polynomial_kernel(b[:1], b[:1]) - 2 * polynomial_kernel(a[:1], b[:1])
    assert mmd2_unbiased(a, b) == pytest.approx(float(expected[0, 0]))
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((4000, 8)), rng.standard_normal((4000, 8))
    mean, std = kid(x, y, subsets=40, subset_size=200)
    # The biased (V-statistic) estimator keeps the diagonal and sits well above zero; ours averages to ~0.
    k = lambda u, v: polynomial_kernel(u, v).mean()  # noqa: E731
    biased = k(x[:200], x[:200]) + k(y[:200], y[:200]) - 2 * k(x[:200], y[:200])
    assert abs(mean) < 3 * std / np.sqrt(40) + 1e-3
    assert biased > 10 * abs(mean)
    shifted_mean, _ = kid(x, y + 1.0, subsets=10, subset_size=200)
    assert shifted_mean > 20 * std


def test_class_coverage_sees_mode_collapse():
    real = np.repeat(np.arange(10), 10)
    balanced = class_coverage(np.repeat(np.arange(10), 5), real, 10)
    collapsed = class_coverage(np.full(50, 3), real, 10, probabilities=np.full((50, 10), 0.1))
    assert balanced["kl_from_real"] == pytest.approx(0.0, abs=1e-6) and balanced["classes_covered"] == 10
    assert collapsed["kl_from_real"] == pytest.approx(np.log(10), rel=1e-3) and collapsed["classes_covered"] == 1
    assert collapsed["histogram"][3] == 50 and collapsed["mean_confidence"] == pytest.approx(0.1)


def test_evaluate_cli_on_an_onnx_model_and_a_run_directory(tiny_export, tiny_run, tmp_path, capsys):
    from export.evaluate import main

    out = tmp_path / "report.json"
    assert main(["--model", str(tiny_export / "onnx" / "generator.onnx"), "--num-samples", "200",
                 "--output", str(out)]) == 0
    report = json.loads(out.read_text())
    assert {"fid", "kid", "kid_std", "fid_real_vs_real", "class_coverage", "classifier", "readable_rate"} <= set(report)
    assert any("only 200 samples" in w for w in report["warnings"])
    assert report["fid"] > report["fid_real_vs_real"]  # a 3-step generator is far from real digits
    assert "FID" in capsys.readouterr().out
    assert main(["--run-dir", str(tiny_run), "--num-samples", "200"]) == 0
    assert json.loads((tiny_run / "evaluation.json").read_text())["num_samples"] == 200
    assert main(["--model", str(tmp_path / "missing.onnx")]) == 2
    assert "missing.onnx does not exist" in capsys.readouterr().err


def test_extra_feature_fids_are_scored_beside_the_classifiers_and_rise_for_noise():
    """The --keras-inception-weights path through the evaluator (extra_features), with a stand-in
    extractor: Keras's ImageNet InceptionV3 weights cannot be downloaded here and no package ships
    them, and random weights test nothing, so the network itself is not run (its file check is below)."""
    from common.realdata import read_mnist_sample
    from metrics.evaluator import KERAS_INCEPTION_FID, Evaluator

    def pooled_pixels(images):  # 7x7 average-pooled pixels: a fixed, non-trivial feature map
        images = np.asarray(images, np.float64)[..., 0]
        return images.reshape(len(images), 7, 4, 7, 4).mean(axis=(2, 4)).reshape(len(images), -1)

    images, labels = read_mnist_sample()  # as test_metrics' evaluator: one cached classifier per session
    evaluator = Evaluator(images, labels, num_samples=500,
                          extra_features={KERAS_INCEPTION_FID: pooled_pixels})
    noise = evaluator.evaluate(lambda z, labels: np.random.default_rng(1).uniform(-1, 1, (len(z), 28, 28, 1))
                               .astype(np.float32), 8)
    floor = noise[KERAS_INCEPTION_FID + "_real_vs_real"]
    assert np.isfinite(floor) and noise[KERAS_INCEPTION_FID] > 10 * floor, noise


def test_keras_inception_features_refuse_a_missing_weights_file_before_building_anything(tmp_path):
    from metrics.inception import KerasInceptionFeatures

    with pytest.raises(FileNotFoundError, match="does not exist; download Keras's InceptionV3"):
        KerasInceptionFeatures(tmp_path / "missing.h5")


def test_the_inception_fid_says_what_network_it_is_and_that_papers_used_another():
    """It is Keras's ImageNet InceptionV3 with bilinear resizing, not the reference FID network."""
    from metrics.evaluator import KERAS_INCEPTION_FID, format_report

    assert KERAS_INCEPTION_FID == "fid_keras_inceptionv3_bilinear"
    result = {"fid": 1.0, "fid_real_vs_real": 0.1, "num_samples": 10, "num_reference": 10, "reference": "held-out",
              "kid": 0.0, "kid_std": 0.0, "kid_real_vs_real": 0.0, KERAS_INCEPTION_FID: 2.0,
              KERAS_INCEPTION_FID + "_real_vs_real": 0.2, "classifier": {"task": "classes", "held_out_accuracy": 0.9}}
    line = next(l for l in format_report(result).splitlines() if "Inception" in l)
    assert "Keras ImageNet InceptionV3" in line and "not comparable with published FIDs" in line


def test_evaluate_help_says_the_inception_fid_is_not_the_published_one(capsys):
    from export.evaluate import main as evaluate

    with pytest.raises(SystemExit):
        evaluate(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--keras-inception-weights" in text and "not comparable with published FIDs" in text


def test_eval_every_logs_fid_and_keeps_the_best_generator(tmp_path):
    from training.config import TrainConfig
    from training.trainer import train

    run = tmp_path / "run"
    result = train(TrainConfig(width=4, latent_dim=8, batch_size=16, epochs=2, steps_per_epoch=3, verbose=0,
                               eval_every=1, eval_samples=200, output_dir=str(run)))
    assert all("fid" in row and "kid" in row and "readable_rate" in row for row in result.history)
    best = json.loads((run / "best.json").read_text())
    assert best["fid"] == min(row["fid"] for row in result.history)
    import keras

    import training.models  # noqa: F401  (registers the custom layers load_model needs)

    assert keras.models.load_model(run / "generator_best.keras").output_shape == (None, 28, 28, 1)
