"""The Open Inference Protocol's (KServe v2) gRPC messages without generated code: classes built
from the shipped `open_inference.binpb` (see `build_descriptors.oip_descriptor_set`), wire-identical
to tritonclient's and KServe's, needing only `protobuf`."""

from __future__ import annotations

from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

SERVICE = "inference.GRPCInferenceService"
_POOL = descriptor_pool.DescriptorPool()
for _file in descriptor_pb2.FileDescriptorSet.FromString(
        Path(__file__).with_name("open_inference.binpb").read_bytes()).file:
    _POOL.Add(_file)


def message(name: str):
    """The message class for a name in package `inference`, e.g. 'ModelInferRequest'."""
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"inference.{name}"))


ServerLiveRequest, ServerLiveResponse = message("ServerLiveRequest"), message("ServerLiveResponse")
ServerReadyRequest, ServerReadyResponse = message("ServerReadyRequest"), message("ServerReadyResponse")
ServerMetadataRequest, ServerMetadataResponse = message("ServerMetadataRequest"), message("ServerMetadataResponse")
ModelReadyRequest, ModelReadyResponse = message("ModelReadyRequest"), message("ModelReadyResponse")
ModelMetadataRequest, ModelMetadataResponse = message("ModelMetadataRequest"), message("ModelMetadataResponse")
ModelInferRequest, ModelInferResponse = message("ModelInferRequest"), message("ModelInferResponse")
