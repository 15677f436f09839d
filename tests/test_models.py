import keras
import numpy as np
import pytest

from training.models import ProjectionHead, build_discriminator, build_generator, upsampling_plan


@pytest.mark.parametrize("size, expected", [(28, (7, 2)), (32, (4, 3)), (64, (4, 4)), (48, (6, 3)), (8, (4, 1))])
def test_upsampling_plan(size, expected):
    assert upsampling_plan(size) == expected


def test_upsampling_plan_rejects_sizes_it_cannot_reach():
    with pytest.raises(ValueError, match="multiple of 4"):
        upsampling_plan(30)


@pytest.mark.parametrize("size", [28, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_generator_and_discriminator_shapes(size, channels):
    generator = build_generator(size, channels, latent_dim=8, width=4)
    discriminator = build_discriminator(size, channels, width=4)
    images = keras.ops.convert_to_numpy(generator(np.random.normal(size=(3, 8)).astype("float32")))
    assert images.shape == (3, size, size, channels)
    assert images.dtype == np.float32
    assert np.all(np.abs(images) <= 1.0)
    assert tuple(discriminator(images).shape) == (3, 1)


def test_conditional_models_take_labels_and_labels_change_the_output():
    generator = build_generator(32, 3, latent_dim=8, width=4, num_classes=10)
    discriminator = build_discriminator(32, 3, width=4, num_classes=10)
    assert [i.name for i in generator.inputs] == ["z", "label"]
    z = np.repeat(np.random.normal(size=(1, 8)).astype("float32"), 2, axis=0)
    images = keras.ops.convert_to_numpy(generator([z, np.array([0, 1], "int32")]))
    assert tuple(images.shape) == (2, 32, 32, 3)
    assert not np.allclose(images[0], images[1])
    scores = discriminator([images, np.array([3, 3], "int32")])
    assert tuple(scores.shape) == (2, 1)


def test_projection_head_equals_dense_plus_inner_product():
    head = ProjectionHead(4)
    features = np.random.normal(size=(5, 6)).astype("float32")
    labels = np.array([0, 1, 2, 3, 1], "int32")
    out = keras.ops.convert_to_numpy(head([features, labels]))
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in head.dense.weights)
    table = keras.ops.convert_to_numpy(head.embedding.embeddings)
    expected = features @ kernel + bias + np.sum(table[labels] * features, axis=1, keepdims=True)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_models_round_trip_through_keras_files(tmp_path):
    generator = build_generator(28, 1, latent_dim=8, width=4, num_classes=10)
    discriminator = build_discriminator(28, 1, width=4, num_classes=10)
    z, labels = np.random.normal(size=(2, 8)).astype("float32"), np.array([1, 2], "int32")
    fake = keras.ops.convert_to_numpy(generator([z, labels]))
    for model, inputs in ((generator, [z, labels]), (discriminator, [fake, labels])):
        path = tmp_path / f"{model.name}.keras"
        model.save(path)
        reloaded = keras.models.load_model(path)
        np.testing.assert_allclose(reloaded(inputs), model(inputs), atol=1e-6)


def test_discriminator_width_is_priced_apart_from_the_generators():
    """`--d-width` widens or narrows the discriminator alone; unset, it follows `--width`."""
    from training.config import ConfigError, TrainConfig
    from training.models import discriminator_for, generator_for

    def widest_conv(model):
        return max(layer.filters for layer in model.layers if isinstance(layer, keras.layers.Conv2D))

    config = TrainConfig(width=4, d_width=12, image_size=28, channels=1, latent_dim=8)
    assert widest_conv(discriminator_for(config, None)) == 12 * 4  # 28 px: two halvings, last conv 4x width
    assert widest_conv(generator_for(config, None)) == 4 * 2 * 4  # the 7x7 pixel-shuffle conv: 2x width, 4x filters
    same = TrainConfig(width=4, image_size=28, channels=1, latent_dim=8)
    assert widest_conv(discriminator_for(same, None)) == 4 * 4
    with pytest.raises(ConfigError, match="--d-width must be positive"):
        TrainConfig(d_width=0).validate()
