"""Regenerate `tfserving_apis.binpb` from an environment that has tensorflow-serving-api installed.

    python -m serving.protos.build_descriptors

The file is a protobuf FileDescriptorSet of TF Serving's prediction and model APIs and everything
they import. `serving.protos` builds message classes from it with plain `protobuf`, so the ONNX
server and the client speak TF Serving's wire format without importing TensorFlow (whose own
generated modules import the whole `tensorflow` package). `tests/test_protos.py` fails when this
file and the installed tensorflow-serving-api disagree.

tensorflow-serving-api does not ship `BatchingParameters` (session_bundle_config.proto) or
`MonitoringConfig` (monitoring_config.proto), which the server reads with text_format from
--batching_parameters_file and --monitoring_config_file; `config_messages()` declares them here
with TF Serving's field names and numbers.
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
    result.file.append(config_messages())
    return result


def config_messages() -> descriptor_pb2.FileDescriptorProto:
    """BatchingParameters, PrometheusConfig and MonitoringConfig as TF Serving defines them."""
    field = descriptor_pb2.FieldDescriptorProto
    f = descriptor_pb2.FileDescriptorProto(name="gan_serve/tfserving_server_files.proto", package="tensorflow.serving",
                                           syntax="proto3", dependency=["google/protobuf/wrappers.proto"])
    batching = f.message_type.add(name="BatchingParameters")
    for number, name, kind in [(1, "max_batch_size", "Int64Value"), (2, "batch_timeout_micros", "Int64Value"),
                               (3, "max_enqueued_batches", "Int64Value"), (4, "num_batch_threads", "Int64Value"),
                               (5, "thread_pool_name", "StringValue")]:
        batching.field.add(name=name, number=number, type=field.TYPE_MESSAGE, label=field.LABEL_OPTIONAL,
                           type_name=f".google.protobuf.{kind}")
    batching.field.add(name="allowed_batch_sizes", number=6, type=field.TYPE_INT64, label=field.LABEL_REPEATED)
    batching.field.add(name="pad_variable_length_inputs", number=7, type=field.TYPE_BOOL, label=field.LABEL_OPTIONAL)
    prometheus = f.message_type.add(name="PrometheusConfig")
    prometheus.field.add(name="enable", number=1, type=field.TYPE_BOOL, label=field.LABEL_OPTIONAL)
    prometheus.field.add(name="path", number=2, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    monitoring = f.message_type.add(name="MonitoringConfig")
    monitoring.field.add(name="prometheus_config", number=1, type=field.TYPE_MESSAGE, label=field.LABEL_OPTIONAL,
                         type_name=".tensorflow.serving.PrometheusConfig")
    return f


def main() -> None:
    data = descriptor_set().SerializeToString(deterministic=True)
    OUTPUT.write_bytes(data)
    print(f"wrote {OUTPUT} ({len(data)} bytes)")


if __name__ == "__main__":
    main()
