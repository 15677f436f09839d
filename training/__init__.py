"""GAN training with Keras 3 under tf.distribute.

Importing the package registers its Keras-serializable objects, so `keras.models.load_model`
reloads `generator.keras` and `discriminator.keras` in any process that did `import training`.

One exception: `python -m training.run` imports this package before the command has parsed its
flags. That command imports the models itself once its flags are valid, so a usage error never
waits for TensorFlow; here the package skips its own Keras import for it alone.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ start-up chatter; --tf-logs shows it

_COMMANDS_THAT_PARSE_FIRST = {"training.run"}


def _module_run_by_python_m() -> str | None:
    """The module of `python -m MODULE` while Python is locating it (argv[0] is then "-m")."""
    if sys.argv[:1] != ["-m"]:
        return None
    argv = list(getattr(sys, "orig_argv", []))
    for index, arg in enumerate(argv[1:], start=1):
        if arg == "-m":
            return argv[index + 1] if index + 1 < len(argv) else None
        if arg.startswith("-m"):
            return arg[2:]
    return None


if _module_run_by_python_m() not in _COMMANDS_THAT_PARSE_FIRST:
    from training import models as _models  # noqa: F401  (registers the custom layers)
    from training import gan as _gan  # noqa: F401  (registers GAN)
