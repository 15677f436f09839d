"""The Open Inference Protocol (KServe v2), as KServe, MLServer and Triton speak it: REST
(`rest_api`), gRPC (`grpc_api`), the tensors both carry (`tensors`) and what they share (`targets`)."""
