"""The architectures (`--arch`): one module each, over shared building blocks in `layers`."""

from training.networks import dcgan, mlp, resnet

ARCHITECTURES = {"dcgan": dcgan, "resnet": resnet, "mlp": mlp}
