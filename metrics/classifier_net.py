"""Build and train the domain classifier with Keras, then convert it to the ONNX file scoring uses.

Only `metrics.classifier` imports this, and only when a classifier is missing from the cache.
Everything is float32 whatever the global dtype policy, and every random choice (weights, dropout,
augmentation, data order) comes from the recipe's own seed: training a classifier never touches
the global random state, so a run that trains one and a resumed run that finds it cached see the
same random numbers (see issue 10, item 16).
"""

from __future__ import annotations

import numpy as np

DTYPE = "float32"


def build_classifier(image_size: int, channels: int, num_classes: int, width: int, seed: int):
    """A small VGG-style CNN: three stages of 3x3 convolutions, then the 128-d `features` layer."""
    import keras
    from keras import layers

    seeds = iter(range(seed * 1000, seed * 1000 + 1000))
    init = lambda: keras.initializers.HeNormal(seed=next(seeds))  # noqa: E731
    images = keras.Input((image_size, image_size, channels), name="images", dtype=DTYPE)
    x = images
    for stage, filters in enumerate((width, 2 * width, 4 * width)):
        for j in range(2 if stage < 2 else 1):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_initializer=init(), dtype=DTYPE,
                              name=f"clf_conv{stage}{j}")(x)
            x = layers.BatchNormalization(momentum=0.9, dtype=DTYPE, name=f"clf_bn{stage}{j}")(x)
            x = layers.ReLU(dtype=DTYPE, name=f"clf_relu{stage}{j}")(x)
        if stage < 2:
            x = layers.MaxPooling2D(dtype=DTYPE, name=f"clf_pool{stage}")(x)
    x = layers.GlobalAveragePooling2D(dtype=DTYPE, name="clf_gap")(x)
    features = layers.Dense(128, activation="relu", kernel_initializer=init(), dtype=DTYPE, name="features")(x)
    dropped = layers.Dropout(0.3, seed=next(seeds), dtype=DTYPE, name="clf_dropout")(features)
    logits = layers.Dense(num_classes, kernel_initializer=keras.initializers.GlorotUniform(seed=next(seeds)),
                          dtype=DTYPE, name="logits")(dropped)
    return keras.Model(images, {"features": features, "logits": logits}, name="domain_classifier")


def augmentation(seed: int, rotate: bool):
    """Random small rotations (labelled data only), zooms and shifts in one affine warp per batch."""
    import keras

    class RandomAffine(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(dtype=DTYPE, name="clf_augment", **kwargs)
            self.seed_generator = keras.random.SeedGenerator(seed)

        def call(self, images, training=False):
            if not training:
                return images
            ops, uniform = keras.ops, keras.random.uniform
            n, h, w = ops.shape(images)[0], images.shape[1], images.shape[2]
            angle = uniform((n,), -0.2, 0.2, seed=self.seed_generator) if rotate else ops.zeros((n,))
            zoom = uniform((n,), 0.9, 1.1, seed=self.seed_generator)
            shift_x = uniform((n,), -0.1, 0.1, seed=self.seed_generator) * w
            shift_y = uniform((n,), -0.1, 0.1, seed=self.seed_generator) * h
            cos, sin = ops.cos(angle) / zoom, ops.sin(angle) / zoom
            cx, cy = (w - 1) / 2.0, (h - 1) / 2.0  # output pixel -> input pixel, about the centre
            transform = ops.stack([cos, -sin, cx - cos * cx + sin * cy + shift_x,
                                   sin, cos, cy - sin * cx - cos * cy + shift_y,
                                   ops.zeros((n,)), ops.zeros((n,))], axis=1)
            return ops.image.affine_transform(images, transform, interpolation="bilinear", fill_mode="constant",
                                              fill_value=-1.0)

    return RandomAffine()


def _rotation_task(images: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    turns = np.random.default_rng(seed).integers(0, 4, size=len(images))
    return np.stack([np.rot90(im, k) for im, k in zip(images, turns)]), turns.astype(np.int32)


def train_and_convert(images_uint8, labels, recipe, onnx_path, meta_path, verbose: int = 0) -> None:
    """Train per `recipe` on 90% of the data, write the ONNX file, measure it on the other 10%, write the meta."""
    import keras
    import tensorflow as tf

    from common.atomic import atomic_path, write_json_atomic
    from metrics.classifier import to_unit_range

    if tf.distribute.has_strategy() and tf.distribute.in_cross_replica_context():
        raise RuntimeError("Build the evaluator outside strategy.scope(): only one worker trains the classifier.")
    images = to_unit_range(images_uint8)
    task = "classes" if labels is not None else "rotation"
    targets = np.asarray(labels, np.int32) if labels is not None else None
    if targets is None:
        images, targets = _rotation_task(images, recipe.seed)
    num_classes = int(targets.max()) + 1
    rng = np.random.default_rng(recipe.seed)
    order = rng.permutation(len(images))
    split = max(1, len(images) // 10)
    val, fit = order[:split], order[split:]

    classifier = build_classifier(images.shape[1], images.shape[-1], num_classes, recipe.width, recipe.seed)
    augment = augmentation(recipe.seed, rotate=task == "classes")
    inputs = keras.Input(images.shape[1:], dtype=DTYPE, name="clf_train_images")
    trainer = keras.Model(inputs, classifier(augment(inputs))["logits"], name="clf_trainer")
    steps_per_epoch = max(1, len(fit) // recipe.batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(0.0, recipe.epochs * steps_per_epoch, alpha=0.0,
                                                      warmup_target=recipe.learning_rate, warmup_steps=steps_per_epoch)
    trainer.compile(optimizer=keras.optimizers.Adam(schedule, name="clf_adam"),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    for epoch in range(recipe.epochs):  # data order from our own generator, not the global one
        batch = fit[rng.permutation(len(fit))][: steps_per_epoch * recipe.batch_size]
        trainer.fit(images[batch], targets[batch], batch_size=recipe.batch_size, epochs=epoch + 1,
                    initial_epoch=epoch, shuffle=False, verbose=verbose)

    with atomic_path(onnx_path, suffix=".onnx") as tmp:
        write_onnx(classifier, images.shape[1:], tmp)
    from metrics.classifier import DomainClassifier

    scored = DomainClassifier(onnx_path, {"task": task, "num_classes": num_classes, "held_out_accuracy": 0.0})
    accuracy = float(np.mean(scored.probabilities(images[val]).argmax(axis=1) == targets[val]))
    write_json_atomic(meta_path, {"task": task, "num_classes": num_classes, "held_out_accuracy": accuracy,
                                  "held_out_images": int(split), "num_images": len(images_uint8), "dtype": DTYPE,
                                  "recipe": {k: getattr(recipe, k) for k in recipe.__dataclass_fields__}})


def write_onnx(classifier, image_shape, path) -> None:
    import onnx
    import tensorflow as tf
    import tf2onnx

    spec = [tf.TensorSpec((None, *image_shape), tf.float32, name="images")]

    @tf.function(input_signature=spec)
    def serve(images):
        outputs = classifier(images, training=False)
        return {"features": tf.identity(outputs["features"], name="features"),
                "logits": tf.identity(outputs["logits"], name="logits")}

    model, _ = tf2onnx.convert.from_function(serve, input_signature=spec, opset=17)
    onnx.save(model, str(path))
