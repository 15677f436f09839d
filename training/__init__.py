"""GAN training with Keras 3 under tf.distribute.

Importing the package registers its Keras-serializable objects, so `keras.models.load_model`
reloads `generator.keras` and `discriminator.keras` in any process that did `import training`.

One exception: `python -m training.<command>` imports this package before the command has parsed
its flags (Python sets `sys.argv[0]` to "-m" while it locates the module). The commands import the
models themselves once their flags are valid, so a usage error never waits for TensorFlow.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ start-up chatter; --tf-logs shows it

if sys.argv[:1] != ["-m"]:
    from training import models as _models  # noqa: F401  (registers the custom layers)
    from training import gan as _gan  # noqa: F401  (registers GAN)
