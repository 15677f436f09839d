"""TensorFlow Serving's APIs on our engine: REST paths and bodies (`rest_paths`, `rest_bodies`,
`rest_api`), gRPC (`grpc_api`), the signature it reports (`signature`), its command-line flags
(`flags`) and its config files (`config_files`)."""
