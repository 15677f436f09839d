"""One package per protocol, each holding everything that changes with it: `tfserving` (TF Serving's
REST and gRPC APIs, its flags and config files) and `open_inference` (KServe v2's REST and gRPC
APIs and their tensors)."""
