"""Orchestrated pipelines around the product: `pipelines.tfx` runs it under TFX (its own environment)."""
