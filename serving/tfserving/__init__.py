"""TensorFlow Serving deployment kit: models.config, batching parameters, monitoring config."""
