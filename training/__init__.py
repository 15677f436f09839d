"""GAN training with Keras 3 under tf.distribute.

Importing the package registers its Keras-serializable objects, so `keras.models.load_model`
reloads `generator.keras` and `discriminator.keras` in any process that did `import training`.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter quiet

from training import models as _models  # noqa: F401  (registers ProjectionHead)
from training import gan as _gan  # noqa: F401  (registers GAN)
