"""The engine under every protocol: the request core (`core`), the model manager and its versions
(`model_manager`, `model_config`, `version_watch`), the dynamic batcher (`batching`), input checks
(`validation`) and the onnxruntime generator (`onnx_generator`, also the in-process API for apps).
It knows no wire format and imports nothing above it."""
