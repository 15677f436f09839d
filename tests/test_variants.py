"""int8 and fp16 ONNX variants: exported beside float32, quality-gated, picked by OnnxGenerator and
served by the real server. A tiny conditional run on 200 real digits keeps the gate's evaluator
(its domain classifier included) fast; the gate then warns that its few samples are unreliable."""

from __future__ import annotations

import json

import httpx
import numpy as np
import onnx
import pytest
from PIL import Image

from serving.engine.onnx_generator import OnnxGenerator
from tests.conftest import _train_tiny
from tests.server_harness import Server

pytestmark = pytest.mark.slow
GATE = ["--variant-samples", "60"]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    from training.data import load_mnist_sample

    data = load_mnist_sample()
    folder = tmp_path_factory.mktemp("digits")
    for digit in range(10):
        (folder / str(digit)).mkdir()
        for i in np.flatnonzero(data.labels == digit)[:20]:
            Image.fromarray(data.images[i, :, :, 0]).save(folder / str(digit) / f"{i}.png")
    return _train_tiny(tmp_path_factory.mktemp("run") / "run", dataset="folder", data_dir=str(folder),
                       image_size=28, channels=1, conditional=True)


@pytest.fixture(scope="module")
def exported(digits_run, tmp_path_factory):
    from export.run import main

    out = tmp_path_factory.mktemp("exports")
    code = main(["--run-dir", str(digits_run), "--output-dir", str(out), "--variants", "int8,fp16",
                 "--max-fid-increase", "0.5", *GATE])
    assert code == 0
    return out


def test_variants_are_published_with_fp32_io_and_their_numbers_on_the_card(exported):
    card = json.loads((exported / "model_card.json").read_text())
    for variant in ("int8", "fp16"):
        numbers = card["variants"][variant]
        assert numbers["published"] and not numbers["reliable"] and numbers["num_samples"] < 2000
        assert numbers["fid"] > 0 and numbers["fid_float32"] > 0 and 0 < numbers["max_abs_diff"] <= 2
        assert f"onnx/generator.{variant}.onnx" in card["sha256"]
        versioned = exported / "onnx-models" / "generator" / "1" / f"model.{variant}.onnx"
        model = onnx.load(str(versioned))
        io = {v.name: v.type.tensor_type.elem_type for v in list(model.graph.input) + list(model.graph.output)}
        assert io == {"z": onnx.TensorProto.FLOAT, "label": onnx.TensorProto.INT32, "images": onnx.TensorProto.FLOAT}
        assert {p.key: p.value for p in model.metadata_props}["variant"] == variant
    int8 = onnx.load(str(exported / "onnx" / "generator.int8.onnx"))
    assert any(node.op_type == "QuantizeLinear" for node in int8.graph.node)


def test_onnx_generator_picks_a_variant_and_auto_says_which(exported):
    path = exported / "onnx" / "generator.onnx"
    fp32 = OnnxGenerator(path, device="cpu")
    int8 = OnnxGenerator(path, device="cpu", variant="int8")
    auto = OnnxGenerator(path, device="auto", variant="auto")
    assert int8.path.name == "generator.int8.onnx" and int8.variant == "int8"
    assert auto.variant == "int8" and auto.description == "generator.int8.onnx (int8) on CPUExecutionProvider"
    assert int8.info.num_classes == 10  # the float32 model's card and metadata serve the variant too
    a, b = fp32.generate(num=16, seed=3), int8.generate(num=16, seed=3)
    assert np.max(np.abs(a - b)) > 0 and np.all(np.abs(b) <= 1)  # a 3-step model's int8 error is large: the gate judges


def test_the_server_serves_a_variant(exported, tmp_path):
    local = OnnxGenerator(exported / "onnx" / "generator.onnx", device="cpu", variant="int8")
    server = Server(["--model-base-path", str(exported / "onnx-models" / "generator"), "--variant", "int8",
                     "--model-name", "generator-int8"], tmp_path / "server.log")
    try:
        z = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
        body = {"inputs": {"z": z.tolist(), "label": [1, 2, 3]}}
        response = httpx.post(server.url + "/v1/models/generator-int8:predict", json=body, timeout=30)
        assert response.status_code == 200, response.text
        np.testing.assert_allclose(np.array(response.json()["outputs"]),
                                   local.run({"z": z, "label": np.array([1, 2, 3], np.int32)}), atol=1e-6)
    finally:
        assert server.stop() == 0
    assert "model.int8.onnx (int8) on CPUExecutionProvider" in (tmp_path / "server.log").read_text()


def test_a_variant_that_fails_the_gate_publishes_nothing(exported, digits_run, capsys):
    """A limit no variant can meet (FID at most 10% of float32's): the float32 model is published as
    version 2, the variant nowhere, and version 1's stale variant leaves exports/onnx/."""
    from export.run import main

    code = main(["--run-dir", str(digits_run), "--output-dir", str(exported), "--variants", "int8",
                 "--max-fid-increase", "-0.9", *GATE])
    assert code == 3
    out = capsys.readouterr().out
    assert "int8: FID" in out and "FAILED" in out and "NOT published" in out
    card = json.loads((exported / "model_card.json").read_text())
    assert card["version"] == 2 and not card["variants"]["int8"]["published"]
    assert not card["variants"]["int8"]["passed"] and "onnx/generator.int8.onnx" not in card["sha256"]
    assert sorted(p.name for p in (exported / "onnx-models" / "generator" / "2").iterdir()) == ["model.onnx",
                                                                                                "model_card.json"]
    assert not (exported / "onnx" / "generator.int8.onnx").exists()
    assert not (exported / "onnx" / "generator.fp16.onnx").exists()
    assert (exported / "tfserving" / "generator" / "2").is_dir()
    assert not [p for p in (exported / "tfserving").iterdir() if p.name.startswith(".")]
    with pytest.raises(FileNotFoundError, match="--variants int8"):
        OnnxGenerator(exported / "onnx" / "generator.onnx", variant="int8")
