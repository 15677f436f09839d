"""Every architecture (`--arch`) and upsampling builds, saves, trains, exports through the parity
gate and is served by onnxruntime; pixel shuffle exports as one ONNX DepthToSpace."""

import json

import keras
import numpy as np
import onnx
import pytest
from keras import ops

from training.models import build_discriminator, build_generator
from training.networks.layers import ICNR, DepthToSpace


@pytest.mark.parametrize("arch, upsampling", [("dcgan", "transposed"), ("dcgan", "nearest"),
                                               ("resnet", "pixelshuffle"), ("mlp", "pixelshuffle")])
def test_every_architecture_and_upsampling_makes_images_and_round_trips(arch, upsampling, tmp_path):
    generator = build_generator(32, 3, latent_dim=8, width=4, num_classes=10, arch=arch, upsampling=upsampling)
    discriminator = build_discriminator(32, 3, width=4, num_classes=10, arch=arch, spectral_norm=True)
    z, labels = ops.convert_to_tensor(np.random.normal(size=(2, 8)).astype("float32")), ops.convert_to_tensor([1, 2])
    images = generator([z, labels])
    assert tuple(images.shape) == (2, 32, 32, 3) and images.dtype == "float32"
    assert tuple(discriminator([images, labels]).shape) == (2, 1)
    assert any(isinstance(layer, keras.layers.SpectralNormalization) for layer in discriminator._flatten_layers())
    for model, inputs in ((generator, [z, labels]), (discriminator, [images, labels])):
        model.save(tmp_path / f"{model.name}.keras")
        reloaded = keras.models.load_model(tmp_path / f"{model.name}.keras")
        np.testing.assert_allclose(reloaded(inputs), model(inputs), atol=1e-5)


def test_resnet_discriminator_is_spectrally_normalized_without_asking():
    discriminator = build_discriminator(32, 3, width=4, arch="resnet", spectral_norm=False)
    wrapped = [layer for layer in discriminator._flatten_layers() if isinstance(layer, keras.layers.SpectralNormalization)]
    convs = [layer for layer in discriminator._flatten_layers() if isinstance(layer, keras.layers.Conv2D)]
    assert len(wrapped) == len(convs) + 1  # every conv and the logit


def test_icnr_pixel_shuffle_starts_as_nearest_neighbour_upsampling():
    conv = keras.layers.Conv2D(4 * 3, 3, padding="same", use_bias=False, kernel_initializer=ICNR())
    x = ops.convert_to_tensor(np.random.normal(size=(2, 5, 5, 6)).astype("float32"))
    out = ops.convert_to_numpy(DepthToSpace(2)(conv(x)))
    assert out.shape == (2, 10, 10, 3)
    for dy in (0, 1):
        for dx in (0, 1):
            np.testing.assert_allclose(out[:, dy::2, dx::2], out[:, ::2, ::2], atol=1e-6)


def test_mlp_is_the_tutorial_architecture():
    generator = build_generator(28, 1, latent_dim=100, arch="mlp")
    dense = [layer.units for layer in generator.layers if isinstance(layer, keras.layers.Dense)]
    norms = [layer.momentum for layer in generator.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert dense == [256, 512, 1024, 784] and norms == [0.8] * 3
    discriminator = build_discriminator(28, 1, arch="mlp")
    assert [layer.units for layer in discriminator.layers if isinstance(layer, keras.layers.Dense)] == [512, 256, 1]


@pytest.mark.slow
@pytest.mark.parametrize("arch, conditional", [("resnet", True), ("mlp", False)])
def test_architecture_trains_exports_through_the_parity_gate_and_serves(arch, conditional, tmp_path):
    from export.run import main
    from serving.engine.onnx_generator import OnnxGenerator
    from tests.conftest import _train_tiny

    run = _train_tiny(tmp_path / "run", arch=arch, conditional=conditional, diffaugment="translation,cutout,color",
                      spectral_norm=True, r1_gamma=1.0, r1_every=2)
    assert main(["--run-dir", str(run), "--output-dir", str(tmp_path / "out")]) == 0
    assert json.loads((tmp_path / "out" / "export_report.json").read_text())["passed"]
    path = tmp_path / "out" / "onnx" / "generator.onnx"
    op_types = {node.op_type for node in onnx.load(str(path)).graph.node}
    if arch == "resnet":
        assert "DepthToSpace" in op_types and "ConvTranspose" not in op_types and "Tile" not in op_types
    served = OnnxGenerator(path)
    feed = {"z": np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)}
    if conditional:
        feed["label"] = np.array([0, 4, 9], np.int32)
    images = served.run(feed)
    assert images.shape == (3, 28, 28, 1) and np.isfinite(images).all()
