"""Regenerate `tfserving_apis.binpb` from an environment that has tensorflow-serving-api installed.

    python -m serving.protos.build_descriptors

The file is a protobuf FileDescriptorSet of TF Serving's prediction and model APIs and everything
they import. `serving.protos` builds message classes from it with plain `protobuf`, so the ONNX
server and the client speak TF Serving's wire format without importing TensorFlow (whose own
generated modules import the whole `tensorflow` package). `tests/test_protos.py` fails when this
file and the installed tensorflow-serving-api disagree.
"""

from __future__ import annotations

from pathlib import Path

from google.protobuf import descriptor_pb2

OUTPUT = Path(__file__).with_name("tfserving_apis.binpb")


def descriptor_set() -> descriptor_pb2.FileDescriptorSet:
    from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_service_pb2,
                                         predict_pb2, prediction_log_pb2, prediction_service_pb2)
    from tensorflow_serving.config import model_server_config_pb2

    roots = [m.DESCRIPTOR for m in (predict_pb2, get_model_metadata_pb2, get_model_status_pb2, model_service_pb2,
                                    prediction_service_pb2, prediction_log_pb2, model_server_config_pb2)]
    ordered, seen = [], set()

    def visit(file_descriptor):  # dependencies first, as a descriptor pool needs them
        if file_descriptor.name in seen:
            return
        seen.add(file_descriptor.name)
        for dependency in file_descriptor.dependencies:
            visit(dependency)
        ordered.append(file_descriptor)

    for root in roots:
        visit(root)
    result = descriptor_pb2.FileDescriptorSet()
    for file_descriptor in ordered:
        proto = result.file.add()
        file_descriptor.CopyToProto(proto)
    return result


def main() -> None:
    data = descriptor_set().SerializeToString(deterministic=True)
    OUTPUT.write_bytes(data)
    print(f"wrote {OUTPUT} ({len(data)} bytes)")


if __name__ == "__main__":
    main()
