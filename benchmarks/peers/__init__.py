"""The peer model servers `benchmarks.server_peers` runs beside ours, each in its own virtual
environment (their dependency pins clash with each other and with this project's): one small
adapter each, serving the same ONNX generator through onnxruntime with the same thread settings."""
