"""GAN training with Keras 3 under tf.distribute.

Importing the package imports no Keras or TensorFlow, so `gan-train --help` and flag errors answer
at once. Before `keras.models.load_model` on `generator.keras` or `discriminator.keras`, import
`training.models` explicitly: it registers the custom layers those files name.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ start-up chatter; --tf-logs shows it
