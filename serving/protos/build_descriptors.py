"""Regenerate `tfserving_apis.binpb` (and `open_inference.binpb`) from an environment that has
tensorflow-serving-api (and tritonclient) installed.

    python -m serving.protos.build_descriptors

The file is a protobuf FileDescriptorSet of TF Serving's prediction and model APIs and everything
they import. `serving.protos` builds message classes from it with plain `protobuf`, so the ONNX
server and the client speak TF Serving's wire format without importing TensorFlow (whose own
generated modules import the whole `tensorflow` package). `tests/test_protos.py` fails when this
file and the installed tensorflow-serving-api disagree.

tensorflow-serving-api does not ship `BatchingParameters` (session_bundle_config.proto) or
`MonitoringConfig` (monitoring_config.proto), which the server reads with text_format from
--batching_parameters_file and --monitoring_config_file: `compile_config_protos()` compiles TF
Serving's own .proto files (`tfserving_src/`, copied unchanged from its 2.20.0 release) with
grpcio-tools' protoc, their imports (TensorFlow's config.proto, ...) given as the installed
TensorFlow's descriptors. No field is declared by hand.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2

OUTPUT = Path(__file__).with_name("tfserving_apis.binpb")
OIP_OUTPUT = Path(__file__).with_name("open_inference.binpb")
PROTO_SOURCES = Path(__file__).with_name("tfserving_src")
CONFIG_PROTOS = ["tensorflow_serving/servables/tensorflow/session_bundle_config.proto",
                 "tensorflow_serving/config/monitoring_config.proto"]


def _with_dependencies(roots) -> list:
    """File descriptors of `roots` and everything they import, dependencies first (as a pool needs)."""
    ordered, seen = [], set()

    def visit(file_descriptor):
        if file_descriptor.name in seen:
            return
        seen.add(file_descriptor.name)
        for dependency in file_descriptor.dependencies:
            visit(dependency)
        ordered.append(file_descriptor)

    for root in roots:
        visit(root)
    return ordered


def _config_imports() -> list:
    """What session_bundle_config.proto imports, from the installed TensorFlow's generated modules."""
    from google.protobuf import wrappers_pb2
    from tensorflow.core.protobuf import config_pb2, named_tensor_pb2

    return _with_dependencies([wrappers_pb2.DESCRIPTOR, config_pb2.DESCRIPTOR, named_tensor_pb2.DESCRIPTOR])


def compile_config_protos(imports: list | None = None) -> descriptor_pb2.FileDescriptorSet:
    """TF Serving's session_bundle_config.proto and monitoring_config.proto, compiled by protoc."""
    imports = _config_imports() if imports is None else imports
    with tempfile.TemporaryDirectory() as tmp:
        given, out = Path(tmp) / "imports.binpb", Path(tmp) / "out.binpb"
        given.write_bytes(_as_set(imports).SerializeToString())
        # In a process of its own: grpc_tools' protoc crashes inside one that has loaded TensorFlow.
        done = subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"--proto_path={PROTO_SOURCES}",
                               f"--descriptor_set_in={given}", f"--descriptor_set_out={out}", *CONFIG_PROTOS],
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"protoc failed on {CONFIG_PROTOS} under {PROTO_SOURCES} (is grpcio-tools "
                               f"installed? pip install -e '.[dev]'): {done.stderr.strip()[-2000:]}")
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def _as_set(file_descriptors) -> descriptor_pb2.FileDescriptorSet:
    result = descriptor_pb2.FileDescriptorSet()
    for file_descriptor in file_descriptors:
        file_descriptor.CopyToProto(result.file.add())
    return result


def descriptor_set() -> descriptor_pb2.FileDescriptorSet:
    from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_service_pb2,
                                         predict_pb2, prediction_log_pb2, prediction_service_pb2)
    from tensorflow_serving.config import model_server_config_pb2

    roots = [m.DESCRIPTOR for m in (predict_pb2, get_model_metadata_pb2, get_model_status_pb2, model_service_pb2,
                                    prediction_service_pb2, prediction_log_pb2, model_server_config_pb2)]
    apis = _with_dependencies(roots)
    names = {f.name for f in apis}
    imports = _config_imports()
    result = _as_set(apis + [f for f in imports if f.name not in names])
    result.file.extend(compile_config_protos(imports).file)
    return result


def oip_descriptor_set() -> descriptor_pb2.FileDescriptorSet:
    """The Open Inference Protocol's gRPC API (package `inference`, service GRPCInferenceService) as
    Triton's `grpc_service.proto` defines it (with the `model_config.proto` it imports), taken from
    the installed tritonclient (2.73.0 when shipped): the protocol's origin, of which KServe's
    open_inference_grpc.proto (github.com/kserve/open-inference-protocol, specification/protocol/)
    is the subset with the same messages and field numbers. Our server implements that subset."""
    from tritonclient.grpc import service_pb2

    return _as_set(_with_dependencies([service_pb2.DESCRIPTOR]))


def main() -> None:
    for path, build in ((OUTPUT, descriptor_set), (OIP_OUTPUT, oip_descriptor_set)):
        data = build().SerializeToString(deterministic=True)
        path.write_bytes(data)
        print(f"wrote {path} ({len(data)} bytes)")


if __name__ == "__main__":
    main()
