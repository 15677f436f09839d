"""Run inside a throwaway venv holding TF Serving's TensorFlow: load an export the way TF Serving does.

    <venv>/bin/python tools/tfserving_load_probe.py VERSION_DIR INPUTS.npz OUT.npz

TF Serving (servables/tensorflow) loads a version with the `serve` tag into a v1 session, looks up
the `serving_default` signature_def and runs it by tensor name; at load it replays every record of
`assets.extra/tf_serving_warmup_requests` (PredictionLog). This script does the same steps with the
Python API of that TensorFlow release and saves the outputs for the caller to compare. It imports
nothing from this repository: the venv has only tensorflow and tensorflow-serving-api.
"""

import json
import sys

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

SIGNATURE = "serving_default"
WARMUP = "assets.extra/tf_serving_warmup_requests"


def main(version_dir: str, inputs_path: str, out_path: str) -> int:
    tf.get_logger().setLevel("ERROR")
    graph = tf.Graph()
    session = tf.compat.v1.Session(graph=graph)
    with graph.as_default():
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], version_dir)
    signature = meta_graph.signature_def[SIGNATURE]
    facts = {"tensorflow": tf.__version__, "method_name": signature.method_name,
             "inputs": {k: v.name for k, v in signature.inputs.items()},
             "outputs": {k: v.name for k, v in signature.outputs.items()}}

    def run(named: dict) -> np.ndarray:
        feeds = {signature.inputs[name].name: value for name, value in named.items()}
        return session.run(signature.outputs["images"].name, feed_dict=feeds)

    given = dict(np.load(inputs_path))
    result = {"given/images": run({k: v for k, v in given.items()})}
    records = list(tf.compat.v1.io.tf_record_iterator(f"{version_dir}/{WARMUP}"))
    facts["warmup_records"] = len(records)
    for i, record in enumerate(records):
        request = prediction_log_pb2.PredictionLog.FromString(record).predict_log.request
        assert request.model_spec.signature_name in ("", SIGNATURE), request.model_spec.signature_name
        named = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
        for k, v in named.items():
            result[f"warmup{i}/{k}"] = v
        result[f"warmup{i}/images"] = run(named)
    np.savez(out_path, **result)
    print(json.dumps(facts))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
