"""The client library, kept apart from the server's modules: it imports nothing of the server.

    from serving.client import GeneratorClient

`GeneratorClient` speaks TF Serving's gRPC and REST APIs (to TF Serving or to our server); see
`serving.client.generator_client`.
"""

from serving.client.generator_client import GeneratorClient, RemoteCallError, RemoteModel, predict_body

__all__ = ["GeneratorClient", "RemoteCallError", "RemoteModel", "predict_body"]
