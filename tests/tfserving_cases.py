"""TF Serving's answers as data: every case of its REST handler test (http_rest_api_handler_test.cc)
and the gRPC counterparts, mapped onto our model, for tests/test_tfserving_compat.py."""

from __future__ import annotations

import json

import numpy as np

from serving import protos

ReloadConfigRequest = protos.message("tensorflow.serving.ReloadConfigRequest")
ReloadConfigResponse = protos.message("tensorflow.serving.ReloadConfigResponse")
RELOAD_CONFIG_METHOD = "/tensorflow.serving.ModelService/HandleReloadConfigRequest"

Z = [[0.1] * 8]
STATUS_1 = {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
STATUS_2 = {**STATUS_1, "version": "2"}
G = "/v1/models/generator"
# Every case of TF Serving's http_rest_api_handler_test.cc on our model: "generator" with versions 1
# and 2, label stable -> 1 (TF's test model has version 123 and label Version_Label).
# (method, path, body, status, error substring or the JSON answer's top-level keys / exact value)
REST_CASES = [
    # UnsupportedApiCalls
    ("GET", "/v1/foo", "", 400, "Malformed request"),
    ("POST", "/v1/foo", "", 400, "Malformed request"),
    ("GET", "/v1/models", "", 400, "Missing model name"),
    ("GET", "/v1/models/debug/model_name", "", 400, "Malformed request"),
    ("POST", "/v1/models", "", 400, "Malformed request"),
    ("GET", "/v1/models/foo:predict", "", 400, "Malformed request"),
    ("GET", "/v1/models/foo/version/50:predict", "", 400, "Malformed request"),
    ("POST", "/v1/models/foo/version/50:regress", "", 400, "Malformed request"),
    ("POST", "/v1/models/foo/versions/HELLO:regress", "", 400, "Malformed request"),
    ("POST", f"/v1/models/foo/versions/{2**64 - 1}:regress", "", 400, "Failed to convert version"),
    ("POST", "/v1/models/foo/metadata", "", 400, "Malformed request"),
    ("POST", "/v1/models/foo/label/some_label:regress", "", 400, "Malformed request"),
    ("POST", "/v1/models/foo/versions/50/labels/some_label:regress", "", 400, "Malformed request"),
    ("POST", "/v1/models/foo/versions/some_label:regress", "", 400, "Malformed request"),
    # PredictModelNameVersionErrors
    ("POST", "/v1/models/foo:predict", '{ "instances": [1] }', 404, "Servable not found"),
    ("POST", "/v1/models/foo/versions/50:predict", '{ "instances": [1] }', 404, "Servable not found"),
    ("POST", f"{G}99:predict", '{ "instances": [1] }', 404, "Servable not found"),
    # PredictRequestErrors
    ("POST", f"{G}:predict", "", 400, "JSON Parse error: The document is empty"),
    ("POST", f"{G}:predict", "instances = [1, 2]", 400, "JSON Parse error: Invalid value"),
    ("POST", f"{G}:predict", '{ "instances": ["x", "y"] }', 400, "not of expected type: float"),
    ("POST", f"{G}/labels/Version_Nonexistent:predict", '{ "instances": ["x", "y"] }', 400,
     "Unrecognized servable version label"),
    ("POST", f"{G}:predict", '{ "signature_name": 100 }', 400, "'signature_name' key must be a string value."),
    # Predict: latest, a version, a label, explicit signature, columnar
    ("POST", f"{G}:predict", json.dumps({"instances": Z * 2}), 200, ["predictions"]),
    ("POST", f"{G}/versions/1:predict", json.dumps({"instances": Z}), 200, ["predictions"]),
    ("POST", f"{G}/labels/stable:predict", json.dumps({"instances": Z}), 200, ["predictions"]),
    ("POST", f"{G}/versions/1:predict", json.dumps({"signature_name": "serving_default", "instances": Z}), 200,
     ["predictions"]),
    ("POST", f"{G}/versions/1:predict", json.dumps({"signature_name": "serving_default", "inputs": Z}), 200,
     ["outputs"]),
    # Regress and Classify: a generator has neither signature, so TF Serving's own refusals
    ("POST", f"{G}:regress", '{"signature_name": "regress_x_to_y", "examples": [{"x": 80.0}]}', 400,
     "No signature was found with the name: regress_x_to_y"),
    ("POST", f"{G}/labels/stable:classify", '{"examples": [{"x": 20.0}]}', 400,
     "Expected classification signature method_name to be tensorflow/serving/classify"),
    # GetStatus: all versions, a version, a label
    ("GET", G, "", 200, {"model_version_status": [STATUS_1, STATUS_2]}),
    ("GET", f"{G}/versions/1", "", 200, {"model_version_status": [STATUS_1]}),
    ("GET", f"{G}/labels/stable", "", 200, {"model_version_status": [STATUS_1]}),
    # GetModelMetadata
    ("GET", f"{G}/metadata", "", 200, ["metadata", "model_spec"]),
]


def _spec(request, **spec):
    for key, value in spec.items():
        if key == "version":
            request.model_spec.version.value = value
        else:
            setattr(request.model_spec, key, value)
    return request


def _predict(**spec):
    request = _spec(protos.PredictRequest(), **spec)
    request.inputs["z"].CopyFrom(protos.to_tensor_proto(np.zeros((1, 8), np.float32)))
    return request


# The gRPC counterparts (get_model_status_impl_test, get_model_metadata_impl, predict_impl,
# model_service_impl): (method, request, response class, code, message substring)
GRPC_CASES = [
    (protos.PREDICT_METHOD, _predict(name="foo"), protos.PredictResponse, "NOT_FOUND", "Servable not found for request"),
    (protos.PREDICT_METHOD, _predict(name="generator", version=9), protos.PredictResponse, "NOT_FOUND",
     "Servable not found for request: Specific(generator, 9)"),
    (protos.PREDICT_METHOD, _predict(name="generator", version_label="nope"), protos.PredictResponse,
     "INVALID_ARGUMENT", "Unrecognized servable version label: nope"),
    (protos.PREDICT_METHOD, _predict(name="generator", signature_name="classify"), protos.PredictResponse,
     "INVALID_ARGUMENT", 'Serving signature name: "classify" not found in signature def'),
    (protos.STATUS_METHOD, protos.GetModelStatusRequest(), protos.GetModelStatusResponse, "INVALID_ARGUMENT",
     "Missing ModelSpec"),
    (protos.STATUS_METHOD, _spec(protos.GetModelStatusRequest(), name="foo"), protos.GetModelStatusResponse,
     "NOT_FOUND", "Could not find any versions of model foo"),
    (protos.STATUS_METHOD, _spec(protos.GetModelStatusRequest(), name="generator", version=9),
     protos.GetModelStatusResponse, "NOT_FOUND", "Could not find version 9 of model generator"),
    (protos.METADATA_METHOD, _spec(protos.GetModelMetadataRequest(), name="generator"),
     protos.GetModelMetadataResponse, "INVALID_ARGUMENT",
     "GetModelMetadataRequest must specify at least one metadata_field"),
    (protos.METADATA_METHOD, _spec(protos.GetModelMetadataRequest(metadata_field=["foo"]), name="generator"),
     protos.GetModelMetadataResponse, "INVALID_ARGUMENT", "Metadata field foo is not supported"),
    (protos.METADATA_METHOD, protos.GetModelMetadataRequest(metadata_field=["signature_def"]),
     protos.GetModelMetadataResponse, "INVALID_ARGUMENT", "Missing ModelSpec"),
    (RELOAD_CONFIG_METHOD, ReloadConfigRequest(), ReloadConfigResponse, "INVALID_ARGUMENT",
     "Only ModelConfigList is currently supported"),
]
