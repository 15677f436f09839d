"""Saved generators in Keras's own layers (training.networks.portable): the same images, nothing of ours
named in the file, and export's DepthToSpace form back, for every architecture that pixel-shuffles."""

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest

CASES = [dict(), dict(num_classes=10), dict(arch="resnet", num_classes=10), dict(upsampling="nearest")]


@pytest.mark.parametrize("kwargs", CASES, ids=["dcgan", "conditional", "resnet-conditional", "nearest"])
def test_a_rewritten_file_gives_the_same_images_and_export_gets_depth_to_space_back(kwargs, tmp_path):
    import keras

    from training.models import build_generator, for_export, rewrite_saved_file
    from training.networks.layers import DepthToSpace

    generator = build_generator(28, 1, latent_dim=8, width=4, **kwargs)
    z = np.random.default_rng(0).standard_normal((3, 8)).astype("float32")
    inputs = [z, np.array([1, 2, 3], "int32")] if kwargs.get("num_classes") else z
    expected = np.asarray(generator(inputs, training=False))
    path = tmp_path / "generator.keras"
    generator.save(path)
    rewrite_saved_file(path)

    with zipfile.ZipFile(path) as saved:
        text = saved.read("config.json").decode()
    assert "DepthToSpace" not in text and "ICNR" not in text and '"gan>' not in text
    json.loads(text)  # still one JSON document

    loaded = keras.models.load_model(path, compile=False)
    np.testing.assert_array_equal(np.asarray(loaded(inputs, training=False)), expected)
    exported = for_export(loaded)
    np.testing.assert_array_equal(np.asarray(exported(inputs, training=False)), expected)
    shuffles = sum(isinstance(layer, DepthToSpace) for layer in generator.layers)
    assert sum(isinstance(layer, DepthToSpace) for layer in exported.layers) == shuffles


def test_a_rewritten_file_loads_in_a_process_that_imports_nothing_of_ours(tmp_path):
    from training.models import build_generator, rewrite_saved_file

    path = tmp_path / "generator.keras"
    build_generator(28, 1, latent_dim=8, width=4, num_classes=10).save(path)
    rewrite_saved_file(path)
    code = ("import sys, warnings, keras, numpy as np\nwarnings.simplefilter('error')\n"
            "g = keras.models.load_model(sys.argv[1], compile=False)\n"
            "g([np.zeros((2, 8), 'float32'), np.array([0, 9], 'int32')], training=False)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('training', 'export', 'serving', 'common')))")
    result = subprocess.run([sys.executable, "-c", code, str(path)], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("[]"), result.stdout
