"""--lr-decay: the schedule's shape, and a run that follows it step by step (logged per epoch)."""

import json
import math

import pytest

from training.callbacks import decay_factor
from training.config import ConfigError, TrainConfig


@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_the_rate_starts_at_the_configured_one_and_ends_at_the_final_fraction(kind):
    assert decay_factor(kind, 0.0, 0.1) == pytest.approx(1.0)
    assert decay_factor(kind, 1.0, 0.1) == pytest.approx(0.1)
    assert decay_factor(kind, 0.5, 0.1) == pytest.approx(0.55)  # both pass the midpoint halfway
    assert decay_factor(kind, 2.0, 0.1) == pytest.approx(0.1)  # past the end: held, never negative


def test_cosine_is_flat_at_both_ends_and_linear_is_not():
    assert decay_factor("cosine", 0.25, 0.0) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert decay_factor("linear", 0.25, 0.0) == pytest.approx(0.75)
    assert decay_factor("none", 0.9, 0.0) == 1.0


def test_bad_values_name_the_flag():
    with pytest.raises(ConfigError, match="--lr-decay"):
        TrainConfig(lr_decay="step").validate()
    with pytest.raises(ConfigError, match="--lr-final"):
        TrainConfig(lr_decay="cosine", lr_final=1.5).validate()


def test_a_run_follows_the_schedule_to_its_last_step(tmp_path):
    from training.trainer import train

    config = TrainConfig(width=4, latent_dim=8, batch_size=16, epochs=2, steps_per_epoch=3, verbose=0,
                         num_samples=4, output_dir=str(tmp_path / "run"), g_lr=1e-3, d_lr=2e-3,
                         lr_decay="linear", lr_final=0.5)
    result = train(config)
    assert result.global_step == 6
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    # The rate set for each epoch's last step: steps 2 and 5 of 0..5, linear from 1 to 0.5.
    assert [row["g_lr"] for row in history] == pytest.approx([1e-3 * (1 - 0.5 * 2 / 5), 1e-3 * 0.5], rel=1e-6)
