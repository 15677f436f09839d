"""OnnxGenerator: the in-process onnxruntime path other apps use."""

import numpy as np
import onnxruntime as ort
import pytest

from serving.engine.onnx_generator import InputError, OnnxGenerator


@pytest.fixture(scope="module")
def generator(tiny_export):
    return OnnxGenerator(tiny_export / "onnx" / "generator.onnx", device="cpu", intra_op_threads=1)


def test_reads_the_model_facts_and_the_card(generator):
    assert (generator.info.latent_dim, generator.info.image_shape, generator.info.num_classes) == (8, (28, 28, 1), None)
    assert generator.info.card["model_name"] == "generator"
    assert generator.providers == ["CPUExecutionProvider"]


def test_generate_float_and_uint8_is_seeded_and_matches_a_plain_session(generator, tiny_export):
    images = generator.generate(num=5, seed=3)
    assert images.shape == (5, 28, 28, 1) and images.dtype == np.float32 and np.abs(images).max() <= 1
    np.testing.assert_array_equal(images, generator.generate(num=5, seed=3))
    assert not np.array_equal(images, generator.generate(num=5, seed=4))
    as_bytes = generator.generate(num=5, seed=3, output="uint8")
    assert as_bytes.dtype == np.uint8 and np.abs(as_bytes.astype(int) - np.rint((images + 1) * 127.5)).max() == 0
    z = np.random.default_rng(3).standard_normal((5, 8)).astype(np.float32)
    plain = ort.InferenceSession(str(tiny_export / "onnx" / "generator.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(images, plain.run(["images"], {"z": z})[0], atol=1e-6)


def test_large_batches_are_chunked_with_the_same_result(tiny_export):
    small_chunks = OnnxGenerator(tiny_export / "onnx" / "generator.onnx", device="cpu", max_chunk=7)
    z = np.random.default_rng(0).standard_normal((30, 8)).astype(np.float32)
    np.testing.assert_allclose(small_chunks.generate(z=z), OnnxGenerator(tiny_export / "onnx" / "generator.onnx").generate(z=z), atol=1e-6)


@pytest.mark.parametrize("inputs, message", [
    ({"z": np.zeros((2, 3))}, "must have shape [batch, 8]"),
    ({"z": np.zeros((0, 8))}, "the batch is empty"),
    ({"z": np.full((1, 8), np.nan)}, "NaN or infinity"),
    ({"z": [["a"] * 8]}, "must be numeric"),
    ({"z": [[1.0] * 8, [1.0] * 7]}, "not a rectangular numeric array"),
    ({"x": np.zeros((1, 8))}, "missing ['z']; unknown ['x']"),
    ({"z": np.zeros((1, 8)), "label": [1]}, "unknown ['label']"),
])
def test_bad_inputs_name_the_problem(generator, inputs, message):
    with pytest.raises(InputError) as err:
        generator.run(inputs)
    assert message in str(err.value)


def test_cuda_is_refused_loudly_when_it_is_not_really_there(tiny_export):
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA: the refusal cannot be shown here")
    with pytest.raises(RuntimeError, match="no CUDA provider"):
        OnnxGenerator(tiny_export / "onnx" / "generator.onnx", device="cuda")
    assert OnnxGenerator(tiny_export / "onnx" / "generator.onnx", device="auto").providers == ["CPUExecutionProvider"]


def test_conditional_model_cycles_classes_and_checks_labels(tiny_conditional_export):
    generator = OnnxGenerator(tiny_conditional_export / "onnx-models" / "digits" / "1" / "model.onnx")
    assert generator.info.num_classes == 10 and generator.info.card["class_names"][3] == "3"
    z = np.repeat(np.random.default_rng(0).standard_normal((1, 8)).astype(np.float32), 2, axis=0)
    two_classes = generator.generate(z=z)  # labels 0 and 1 by default
    assert not np.allclose(two_classes[0], two_classes[1])
    np.testing.assert_array_equal(generator.generate(z=z, labels=4)[0], generator.generate(z=z[:1], labels=[4])[0])
    with pytest.raises(InputError, match=r"must be in \[0, 9\]"):
        generator.generate(z=z, labels=10)
    for wrapping in (2**32 + 3, np.array([2**32 + 3, 1], np.int64), -(2**32) + 1):  # int32 casts would give 3, 3, 1
        with pytest.raises(InputError, match=r"must be in \[0, 9\]"):  # the server's words: one shared check
            generator.generate(z=z, labels=wrapping)
    with pytest.raises(InputError, match="not booleans"):
        generator.run({"z": z, "label": np.array([True, False])})


def test_unconditional_model_refuses_labels_and_missing_files_are_named(generator, tmp_path):
    with pytest.raises(ValueError, match="unconditional"):
        generator.generate(num=1, labels=1)
    with pytest.raises(FileNotFoundError, match="missing.onnx does not exist"):
        OnnxGenerator(tmp_path / "missing.onnx")


@pytest.mark.parametrize("labels, message", [
    ([True, 1], "input 'label' must hold integer class ids, not booleans"),  # a cast would make True class 1
    ([2**32 + 1, 0], "input 'label' must be in [0, 2]"),
    (np.array([2**40, 0]), "input 'label' must be in [0, 2]"),
    ([1.5, 0], "input 'label' must hold integers"),
    ([-1, 0], "input 'label' must be in [0, 2]"),
])
def test_in_process_and_server_check_labels_alike_before_any_cast(labels, message):
    """No model needed: OnnxGenerator.validate and the server's predict call one check."""
    import asyncio
    import contextlib

    from serving.engine.core import RequestCore, RequestError
    from serving.engine.onnx_generator import ModelInfo

    info = ModelInfo(latent_dim=2, image_shape=(4, 4, 1), num_classes=3, input_names=("z", "label"), card=None)
    in_process = OnnxGenerator.__new__(OnnxGenerator)
    in_process.info = info
    z = np.zeros((2, 2), np.float32)
    with pytest.raises(InputError) as err:
        in_process.validate({"z": z, "label": labels})
    assert str(err.value) == message

    class Servable:  # what the model manager leases: a version whose generator has this signature
        version, generator = 1, in_process

    class Manager:
        def lease(self, name, version=None, label=None):
            return contextlib.nullcontext(Servable())

    core = RequestCore(Manager())
    with pytest.raises(RequestError) as refused:
        asyncio.run(core.predict("generator", {"z": z.tolist(), "label": labels if isinstance(labels, list)
                                               else labels.tolist()}))
    assert refused.value.message == message
