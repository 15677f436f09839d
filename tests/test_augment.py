import numpy as np
import pytest
from keras import ops

from training.augment import (NUM_RANDOMS, color, cutout, cutout_size, diff_augment, max_shift, parse_policy,
                              shift_amounts, translation)


def _np(x):
    return ops.convert_to_numpy(x)


def _u_for_shift(shift, size):
    """The uniform value that `shift_amounts` maps to exactly `shift`."""
    limit = max_shift(size)
    return (shift + limit + 0.5) / (2 * limit + 1)


@pytest.mark.parametrize("dy, dx", [(0, 0), (2, -3), (-4, 4)])
def test_translation_shifts_by_the_known_amount_and_zero_fills(dy, dx):
    images = np.random.default_rng(0).uniform(0.1, 1.0, (2, 28, 28, 3)).astype("float32")
    u_y = np.full(2, _u_for_shift(dy, 28), "float32")
    u_x = np.full(2, _u_for_shift(dx, 28), "float32")
    assert list(_np(shift_amounts(u_y, 28))) == [dy, dy]
    out = _np(translation(images, u_y, u_x))
    expected = np.zeros_like(images)
    src = images[:, max(0, -dy):28 - max(0, dy), max(0, -dx):28 - max(0, dx)]
    expected[:, max(0, dy):28 - max(0, -dy), max(0, dx):28 - max(0, -dx)] = src
    np.testing.assert_array_equal(out, expected)


def test_shifts_cover_plus_minus_an_eighth_of_the_side_uniformly():
    u = (np.arange(9000) + 0.5) / 9000
    shifts = _np(shift_amounts(u.astype("float32"), 28))
    assert max_shift(28) == 4
    values, counts = np.unique(shifts, return_counts=True)
    assert list(values) == list(range(-4, 5))
    assert counts.min() == counts.max() == 1000


def test_cutout_zeroes_exactly_a_quarter_of_each_image_in_one_square():
    images = np.ones((16, 28, 28, 1), "float32")
    rng = np.random.default_rng(1)
    out = _np(cutout(images, rng.uniform(size=16).astype("float32"), rng.uniform(size=16).astype("float32")))
    assert cutout_size(28) == 14
    for image in out[..., 0]:
        assert (image == 0).mean() == 0.25
        rows, cols = np.nonzero(image == 0)
        assert rows.max() - rows.min() == 13 and cols.max() - cols.min() == 13


def test_color_at_the_midpoint_is_identity_and_brightness_adds_its_offset():
    images = np.random.default_rng(2).uniform(-1, 1, (3, 8, 8, 3)).astype("float32")
    half = np.full(3, 0.5, "float32")
    np.testing.assert_allclose(_np(color(images, half, half, half)), images, atol=1e-6)
    bright = _np(color(images, np.full(3, 0.9, "float32"), half, half))
    np.testing.assert_allclose(bright, images + 0.4, atol=1e-5)
    grey = _np(color(images, half, np.zeros(3, "float32"), half))  # saturation 0: every channel the mean
    np.testing.assert_allclose(grey, np.repeat(images.mean(-1, keepdims=True), 3, -1), atol=1e-6)


def test_diff_augment_is_differentiable_and_policies_parse():
    import tensorflow as tf

    images = tf.constant(np.random.default_rng(3).uniform(-1, 1, (4, 28, 28, 1)).astype("float32"))
    randoms = tf.constant(np.random.default_rng(4).uniform(size=(4, NUM_RANDOMS)).astype("float32"))
    policy = parse_policy("translation, cutout,color")
    with tf.GradientTape() as tape:
        tape.watch(images)
        total = tf.reduce_sum(diff_augment(images, randoms, policy))
    grads = tape.gradient(total, images).numpy()
    assert np.isfinite(grads).all() and np.abs(grads).sum() > 0
    assert parse_policy("") == parse_policy("none") == ()
    with pytest.raises(ValueError, match="Unknown DiffAugment policy flip"):
        parse_policy("translation,flip")
