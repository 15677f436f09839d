"""Export: layout, signature, warmup, parity gate, atomic publish, versions, model card, generate."""

import json

import numpy as np
import onnx
import pytest
import tensorflow as tf

from export.model_card import sha256
from export.parity import TFServingSession
from export.run import main
from export.savedmodel import read_warmup_requests


def signature_def(version_dir):
    from tensorflow.python.tools import saved_model_utils

    return saved_model_utils.get_meta_graph_def(str(version_dir), "serve").signature_def


def test_layout_is_what_tf_serving_and_onnxruntime_expect(tiny_export):
    version = tiny_export / "tfserving" / "generator" / "1"
    for name in ("saved_model.pb", "variables/variables.index", "assets.extra/tf_serving_warmup_requests",
                 "assets.extra/model_card.json"):
        assert (version / name).is_file(), name
    for name in ("onnx/generator.onnx", "export_report.json", "model_card.json"):
        assert (tiny_export / name).is_file(), name
    assert [p.name for p in (tiny_export / "tfserving").iterdir()] == ["generator"], "staging left behind"


def test_signature_has_clean_names_dtypes_and_shapes(tiny_export):
    signatures = signature_def(tiny_export / "tfserving" / "generator" / "1")
    sig = signatures["serving_default"]
    assert list(sig.inputs) == ["z"] and list(sig.outputs) == ["images"]
    assert sig.inputs["z"].dtype == tf.float32.as_datatype_enum
    assert [d.size for d in sig.inputs["z"].tensor_shape.dim] == [-1, 8]
    assert sig.outputs["images"].dtype == tf.float32.as_datatype_enum
    assert [d.size for d in sig.outputs["images"].tensor_shape.dim] == [-1, 28, 28, 1]
    assert sig.method_name == "tensorflow/serving/predict"


def test_warmup_records_are_prediction_logs_that_run_against_the_signature(tiny_export):
    version = tiny_export / "tfserving" / "generator" / "1"
    requests = read_warmup_requests(version)
    assert [r.model_spec.name for r in requests] == ["generator", "generator"]
    session = TFServingSession(version)
    try:
        for request in requests:
            assert request.model_spec.signature_name == "serving_default"
            inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
            images = session(inputs)
            assert images.shape == (len(inputs["z"]), 28, 28, 1) and np.all(np.abs(images) <= 1)
    finally:
        session.close()


def test_parity_report_numbers(tiny_export):
    report = json.loads((tiny_export / "export_report.json").read_text())
    assert report["passed"] and report["failures"] == []
    assert set(report["max_abs_diff"]) == {"tfserving_session", "saved_model_load", "onnxruntime"}
    for diffs in report["max_abs_diff"].values():
        assert set(diffs) == {"1", "7", "64"} and max(diffs.values()) <= 1e-4
    assert max(report["batch_consistency"].values()) <= 1e-4


def test_onnx_model_is_valid_with_a_dynamic_batch_and_metadata(tiny_export):
    model = onnx.load(str(tiny_export / "onnx" / "generator.onnx"))
    onnx.checker.check_model(model)
    assert model.opset_import[0].version >= 17
    assert [i.name for i in model.graph.input] == ["z"] and [o.name for o in model.graph.output] == ["images"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["latent_dim"] == "8" and meta["num_classes"] == "0"


def test_model_card_describes_the_model_and_hashes_the_published_files(tiny_export):
    card = json.loads((tiny_export / "model_card.json").read_text())
    assert (card["latent_dim"], card["image_shape"], card["value_range"]) == (8, [28, 28, 1], [-1.0, 1.0])
    assert card["conditional"] is False and card["training"]["config"]["width"] == 4
    assert card["training"]["final_metrics"]["global_step"] == 3
    assert {"tensorflow", "keras", "tf2onnx", "onnxruntime"} <= set(card["package_versions"])
    assert "Conv2DBackpropInput" in card["savedmodel_op_set"] or "Conv2DBackpropInputV2" in card["savedmodel_op_set"]
    assert "onnx/generator.onnx" in card["sha256"] and "tfserving/generator/1/saved_model.pb" in card["sha256"]
    for relative, digest in card["sha256"].items():
        assert sha256(tiny_export / relative) == digest, relative


def test_versions_auto_increment_and_existing_ones_are_refused(tiny_run, tmp_path, capsys):
    assert main(["--run-dir", str(tiny_run), "--output-dir", str(tmp_path)]) == 0
    assert main(["--run-dir", str(tiny_run), "--output-dir", str(tmp_path)]) == 0
    assert main(["--run-dir", str(tiny_run), "--output-dir", str(tmp_path), "--version", "7"]) == 0
    base = tmp_path / "tfserving" / "generator"
    assert sorted(p.name for p in base.iterdir()) == ["1", "2", "7"]
    assert main(["--run-dir", str(tiny_run), "--output-dir", str(tmp_path), "--version", "2"]) == 2
    assert "Version 2 already exists" in capsys.readouterr().err
    assert main(["--run-dir", str(tiny_run), "--output-dir", str(tmp_path)]) == 0
    assert sorted(int(p.name) for p in base.iterdir()) == [1, 2, 7, 8]


def test_a_failure_mid_export_publishes_nothing(tiny_run, tmp_path, monkeypatch):
    import export.exporter

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(export.exporter, "write_onnx", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        main(["--run-dir", str(tiny_run), "--output-dir", str(tmp_path)])
    assert list((tmp_path / "tfserving").iterdir()) == []  # no version, no staging directory
    assert list((tmp_path / "onnx").iterdir()) == []


def test_a_parity_failure_exits_1_and_publishes_nothing(tiny_run, tmp_path, monkeypatch, capsys):
    from export.parity import OnnxRuntime

    original = OnnxRuntime.__call__
    monkeypatch.setattr(OnnxRuntime, "__call__", lambda self, inputs: original(self, inputs) + 1e-3)
    assert main(["--run-dir", str(tiny_run), "--output-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "onnxruntime differs from Keras by 0.001" in err and "nothing was published" in err
    assert list((tmp_path / "tfserving").iterdir()) == [] and list((tmp_path / "onnx").iterdir()) == []
    assert json.loads((tmp_path / "export_report.json").read_text())["passed"] is False


def test_bad_input_exits_2_with_a_message(tiny_run, tmp_path, capsys):
    empty = tmp_path / "empty_run"
    empty.mkdir()
    assert main(["--run-dir", str(empty), "--output-dir", str(tmp_path / "out")]) == 2
    assert "has no generator.keras" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt_run"
    corrupt.mkdir()
    (corrupt / "generator.keras").write_bytes(b"PK\x03\x04 this is not a keras archive")
    assert main(["--run-dir", str(corrupt), "--output-dir", str(tmp_path / "out")]) == 2
    assert "cannot be loaded" in capsys.readouterr().err
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    assert main(["--run-dir", str(tiny_run), "--output-dir", str(a_file)]) == 2
    assert "is a file" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_conditional_export_takes_labels_and_passes_parity(tiny_conditional_run, tmp_path):
    assert main(["--run-dir", str(tiny_conditional_run), "--output-dir", str(tmp_path), "--model-name", "digits"]) == 0
    sig = signature_def(tmp_path / "tfserving" / "digits" / "1")["serving_default"]
    assert sorted(sig.inputs) == ["label", "z"] and sig.inputs["label"].dtype == tf.int32.as_datatype_enum
    card = json.loads((tmp_path / "model_card.json").read_text())
    assert card["num_classes"] == 10 and card["class_names"] == [str(i) for i in range(10)]
    assert json.loads((tmp_path / "export_report.json").read_text())["passed"]


def test_generate_from_both_artifacts_gives_the_same_grid(tiny_export, tiny_conditional_run, tmp_path):
    from export.generate import main as generate

    onnx_png, sm_png = tmp_path / "onnx.png", tmp_path / "sm.png"
    assert generate(["--model", str(tiny_export / "onnx" / "generator.onnx"), "--num", "9", "--out", str(onnx_png)]) == 0
    assert generate(["--model", str(tiny_export / "tfserving" / "generator"), "--num", "9", "--out", str(sm_png)]) == 0
    assert onnx_png.read_bytes() == sm_png.read_bytes()
    from PIL import Image

    assert Image.open(onnx_png).size == (3 * 29 + 1, 3 * 29 + 1)
    out = tmp_path / "cond"
    assert main(["--run-dir", str(tiny_conditional_run), "--output-dir", str(out)]) == 0
    assert generate(["--model", str(out / "onnx" / "generator.onnx"), "--num", "20", "--out", str(tmp_path / "c.png")]) == 0
    assert Image.open(tmp_path / "c.png").size == (2 * 29 + 1, 10 * 29 + 1)
    assert generate(["--model", str(tmp_path / "missing.onnx")]) == 2
