"""The GAN as a TFX pipeline: ImageExampleGen -> Trainer (our training and export) -> QualityGate -> Pusher.

Runs in its own environment (`bash pipelines/tfx/setup.sh` makes `.venv-tfx`): TFX 1.16 needs
TensorFlow 2.16 and protobuf 3, which cannot live beside the product's TensorFlow >= 2.18.
Note: inside this package `import tfx` is still the TFX library (absolute imports).
"""
