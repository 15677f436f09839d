"""Protocol front ends over one `serving.core.RequestCore`: each module turns one wire format into
core calls and the core's errors into its own statuses.

- `tfserving_rest`, `tfserving_grpc`: TF Serving's REST and gRPC APIs (canonical);
- `v2_rest`, `v2_grpc`: the Open Inference Protocol (KServe v2), as KServe, MLServer and Triton speak it;
- `samples_page`: an HTML page and a PNG endpoint that show what the served model draws;
- `rest_common`, `grpc_common`: what the REST and the gRPC front ends share (bodies, errors, timing);
- `rest_app`, `grpc_app`: the Starlette app and the gRPC handlers the server mounts.
"""
