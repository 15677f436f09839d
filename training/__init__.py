"""GAN training with Keras 3 under tf.distribute.

Importing the package imports no Keras or TensorFlow, so `gan-train --help` and flag errors answer
at once. `generator.keras` loads with `keras.models.load_model` alone (Keras's own layers); before
loading `discriminator.keras` (a conditional or ResNet critic), or a generator saved by an older version, import
`training.models`: it registers the custom layers those files name.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ start-up chatter; --tf-logs shows it
