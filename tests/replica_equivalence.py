"""One `fit` step on 1 replica vs `MirroredStrategy` over 2 logical CPUs, same global batch and noise.

Run as a script by test_distribution.py (logical devices must be set up before TensorFlow starts):
`python tests/replica_equivalence.py LOSS conditional|unconditional D_STEPS [default|photos]`. SGD, not Adam: Adam's
first step divides by a tiny second moment and amplifies rounding. With `default`, the default recipe
instead (training.trainer.build_gan: Adam at the default rates, the EMA half-life with ramp-up) for
DEFAULT_STEPS steps, and the EMA generator's weights are compared too; with `photos`, the photo recipe
(what `--image-size 32 --channels 3` chooses) the same way, on 32x32 digits tinted a random colour each. The learning rate is small enough
that the WGAN-GP critic is not chaotic over two steps (at 0.05 rounding grows to 3e-4). Prints one
JSON line: max |weight difference|, how far the step moved the weights, and
the logged losses of both runs.
"""

import json
import sys

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from training.data import load_data, make_pipeline  # noqa: E402
from training.gan import GAN  # noqa: E402
from training.losses import get_loss  # noqa: E402
from training.models import build_discriminator, build_generator  # noqa: E402


DEFAULT_STEPS = 3


def make_gan(strategy, loss, num_classes, d_steps):
    if DEFAULT_RECIPE:
        from training.config import TrainConfig
        from training.trainer import build_gan

        size, channels = (32, 3) if PHOTOS else (28, 1)
        config = TrainConfig.from_dict({"width": 4, "latent_dim": 8, "batch_size": 16, "loss": loss, "d_steps": d_steps,
                                        "image_size": size, "channels": channels})
        assert config.recipe == ("photos" if PHOTOS else "digits"), config.recipe
        with strategy.scope():
            keras.utils.set_random_seed(0)
            return build_gan(config, num_classes)
    with strategy.scope():
        keras.utils.set_random_seed(0)
        gan = GAN(build_generator(28, 1, latent_dim=8, width=4, num_classes=num_classes),
                  build_discriminator(28, 1, width=4, num_classes=num_classes),
                  latent_dim=8, num_classes=num_classes, ema_decay=0.9)
        gan.compile(d_optimizer=keras.optimizers.SGD(0.01), g_optimizer=keras.optimizers.SGD(0.01),
                    loss=get_loss(loss), gp_weight=10.0, d_steps=d_steps, jit_compile=False)
    return gan


def one_step(strategy, loss, conditional, d_steps, initial=None):
    data = load_data("mnist-sample", image_size=32 if PHOTOS else None, channels=3 if PHOTOS else None,
                     conditional=conditional)
    if PHOTOS:  # colour that differs per channel: each digit tinted one random colour
        tint = np.random.default_rng(0).uniform(0.2, 1.0, (len(data), 1, 1, 3))
        data.images = np.round(data.images * tint).astype(np.uint8)
    gan = make_gan(strategy, loss, data.num_classes, d_steps)
    if initial is not None:
        gan.set_weights(initial)
    before = [w.copy() for w in gan.get_weights()]
    steps = DEFAULT_STEPS if DEFAULT_RECIPE else 1
    history = gan.fit(make_pipeline(data, 16, 8, d_steps, seed=1), steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
    logs = {k: float(np.asarray(v[-1]).reshape(-1)[0]) for k, v in history.history.items()}
    return before, gan.get_weights(), logs


# One case per process: two MirroredStrategy instances in one process can mis-pair collectives.
loss, conditional, d_steps = sys.argv[1], sys.argv[2] == "conditional", int(sys.argv[3])
DEFAULT_RECIPE = sys.argv[4:] in (["default"], ["photos"])
PHOTOS = sys.argv[4:] == ["photos"]
initial, single, single_logs = one_step(tf.distribute.get_strategy(), loss, conditional, d_steps)
mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
_, double, double_logs = one_step(mirrored, loss, conditional, d_steps, initial)
print(json.dumps({
    "loss": loss, "conditional": conditional, "replicas": mirrored.num_replicas_in_sync, "default_recipe": DEFAULT_RECIPE, "photos": PHOTOS,
    "max_weight_diff": max(float(np.max(np.abs(a - b))) for a, b in zip(single, double)),
    "max_update": max(float(np.max(np.abs(a - b))) for a, b in zip(single, initial)),
    "single_logs": single_logs, "mirrored_logs": double_logs,
}), flush=True)
sys.exit(0)
