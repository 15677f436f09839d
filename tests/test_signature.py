"""The generator's signature has one owner (common.signature): the model card export writes says it,
serving reads it back and refuses a model that disagrees with its card, and every reader draws the
same inputs from the same seed. No TensorFlow."""

from __future__ import annotations

import json

import numpy as np
import pytest

from common.signature import GeneratorSignature, labels_in_turn, random_z
from tests.onnx_models import LATENT, write_version


def test_the_card_entries_read_back_as_the_same_signature():
    for signature in (GeneratorSignature(64, (28, 28, 1)), GeneratorSignature(128, (32, 32, 3), 10)):
        card = json.loads(json.dumps(signature.card_entries()))  # as written to and read from disk
        assert GeneratorSignature.from_card(card) == signature
        assert list(card["inputs"]) == list(signature.input_names)
        assert card["outputs"]["images"]["shape"] == [-1, *signature.image_shape]
    assert GeneratorSignature(8, (4, 4, 1), 3).card_entries()["inputs"]["label"]["range"] == [0, 2]


def test_inputs_drawn_from_a_seed_are_the_same_wherever_they_are_drawn():
    signature = GeneratorSignature(8, (4, 4, 1), 3)
    inputs = signature.random_inputs(5, seed=11)
    assert np.array_equal(inputs["z"], np.random.default_rng(11).standard_normal((5, 8)).astype(np.float32))
    assert inputs["label"].tolist() == [0, 1, 2, 0, 1] and inputs["label"].dtype == np.int32
    assert signature.random_inputs(4, seed=11, label=2)["label"].tolist() == [2, 2, 2, 2]
    rng = np.random.default_rng(3)  # a Generator is drawn on, not restarted
    assert not np.array_equal(random_z(2, 8, rng), random_z(2, 8, rng))
    assert labels_in_turn(4, 3, start=2).tolist() == [2, 0, 1, 2]
    assert set(GeneratorSignature(8, (4, 4, 1)).random_inputs(3, seed=0)) == {"z"}


def test_the_served_generator_and_the_samples_page_draw_what_the_signature_draws(tmp_path):
    from serving.samples_page import sample_inputs
    from serving.engine.onnx_generator import OnnxGenerator

    generator = OnnxGenerator(write_version(tmp_path / "g", 1, num_classes=3))
    expected = generator.info.signature.random_inputs(6, seed=5)
    assert np.array_equal(generator.generate(num=6, seed=5), generator.run(expected))
    page = sample_inputs(generator.info, 5, 6, None)
    assert all(np.array_equal(page[k], expected[k]) for k in expected)


def test_a_model_that_disagrees_with_its_card_is_refused(tmp_path):
    from serving.engine.onnx_generator import OnnxGenerator

    path = write_version(tmp_path / "g", 1)
    card = {**GeneratorSignature(LATENT, (4, 4, 1)).card_entries(), "model_name": "g"}
    (path.parent / "model_card.json").write_text(json.dumps(card))
    assert OnnxGenerator(path).info.signature == GeneratorSignature(LATENT, (4, 4, 1))
    (path.parent / "model_card.json").write_text(json.dumps({**card, "latent_dim": LATENT + 1}))
    with pytest.raises(ValueError, match="does not match its model card"):
        OnnxGenerator(path)
