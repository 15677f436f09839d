"""The SavedModel for TensorFlow Serving: the serving function, a warmup file, the op set.

Layout inside a version directory (what TF Serving loads):

    saved_model.pb, variables/        the `serve` tag with the `serving_default` signature
    assets.extra/tf_serving_warmup_requests   PredictionLog records TF Serving replays at load
    assets.extra/model_card.json      written by export.run, read by export.generate
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from common.signature import LABEL, Z, random_z
from export.signature import SIGNATURE_NAME, GeneratorSpec, serving_function

WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
WARMUP_BATCH_SIZES = (1, 8)


def write_savedmodel(generator: keras.Model, spec: GeneratorSpec, path: Path) -> None:
    """Save `generator` behind the `serving_default` signature into the (new) directory `path`."""
    archive = keras.export.ExportArchive()
    archive.track(generator)
    fn = serving_function(generator, spec)
    archive.add_endpoint(name=SIGNATURE_NAME, fn=fn, input_signature=spec.input_signature)
    archive.write_out(str(path), verbose=False)


def example_inputs(spec: GeneratorSpec, batch_size: int, seed: int) -> dict[str, np.ndarray]:
    """Random named inputs for `spec`: standard-normal `z` and uniform labels."""
    rng = np.random.default_rng(seed)
    inputs = {Z: random_z(batch_size, spec.latent_dim, rng)}
    if spec.num_classes:
        inputs[LABEL] = rng.integers(0, spec.num_classes, size=batch_size).astype(np.int32)
    return inputs


def write_warmup_file(spec: GeneratorSpec, version_dir: Path, model_name: str) -> Path:
    """`assets.extra/tf_serving_warmup_requests`: a TFRecord of PredictionLog, one per batch size."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    path = version_dir / WARMUP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for i, batch_size in enumerate(WARMUP_BATCH_SIZES):
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=SIGNATURE_NAME))
            for name, value in example_inputs(spec, batch_size, seed=i).items():
                request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return path


def read_warmup_requests(version_dir: Path):
    """Parse the warmup file back into PredictRequests (what TF Serving does at load)."""
    from tensorflow_serving.apis import prediction_log_pb2

    requests = []
    for record in tf.data.TFRecordDataset(str(version_dir / WARMUP_FILE)):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        requests.append(log.predict_log.request)
    return requests


def op_set(version_dir: Path) -> list[str]:
    """Every op type the SavedModel's graph and functions use: a serving image must register them all."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel.FromString((version_dir / "saved_model.pb").read_bytes())
    ops = set()
    for meta_graph in saved.meta_graphs:
        ops.update(node.op for node in meta_graph.graph_def.node)
        for function in meta_graph.graph_def.library.function:
            ops.update(node.op for node in function.node_def)
    return sorted(ops)
