"""How bytes reach the protocols: HTTP request plumbing (`rest_common`, `json_bodies`), gRPC call
plumbing (`grpc_common`), the connection policy for slow and excess clients (`connections`) and
`--workers N` processes on shared ports (`workers`)."""
