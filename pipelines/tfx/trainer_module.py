"""The Trainer's `run_fn`: our training and our export, run inside TFX's Trainer component.

TFX hands over the ExampleGen splits as TFRecord patterns and the TrainConfig as `custom_config`:

    custom_config = {"train_config": {"epochs": 1, "steps_per_epoch": 5, ...},  # TrainConfig keys
                     "model_name": "generator"}

The train split becomes an image folder (`--dataset folder`, its PNGs byte for byte, one folder per
class), so training reads and shapes it exactly as it reads a user's folder; the generator is then exported by
`export.exporter` (SavedModel + ONNX + model card, parity-gated) and the serving directory TFX pushes
is assembled from that export: the SavedModel at its top for TF Serving, `model.onnx` and
`model_card.json` beside it for our onnxruntime server (each ignores the other's files).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from pipelines.tfx.image_examples import native_shape, read_records, write_image_folder

# TrainConfig keys the pipeline decides, never custom_config: where the data and the run live.
OWNED_KEYS = ("dataset", "data_dir", "output_dir", "overwrite")


def train_config(custom: dict, data_dir: Path, run_dir: Path, image_shape: tuple[int, ...]):
    """Our TrainConfig from the Trainer's custom_config (its `train_config` mapping), on the folder of
    training images; a key the pipeline owns is refused with one line naming it. image_size and
    channels default to the images' own (`image_shape`), not to the folder dataset's 64 px RGB."""
    from training.config import ConfigError, TrainConfig

    values = dict(custom.get("train_config") or {})
    owned = sorted(k for k in values if k.replace("-", "_") in OWNED_KEYS)
    if owned:
        raise ConfigError(f"custom_config['train_config'] may not set {', '.join(owned)}: the pipeline's "
                          "ExampleGen gives the data and the Trainer's artifact is the run directory.")
    values.setdefault("image_size", int(image_shape[0]))
    values.setdefault("channels", int(image_shape[-1]))
    values.update(dataset="folder", data_dir=str(data_dir), output_dir=str(run_dir))
    return TrainConfig.from_dict(values, source="custom_config['train_config']").validate()


def expand(patterns: list[str]) -> list[str]:
    import tensorflow as tf

    return sorted(f for pattern in patterns for f in tf.io.gfile.glob(pattern))


def run_fn(fn_args) -> None:
    """TFX's entry point (tfx.v1.components.Trainer(run_fn="pipelines.tfx.trainer_module.run_fn"))."""
    from training.trainer import train

    custom = fn_args.custom_config or {}
    records = read_records(expand(fn_args.train_files))
    run_root = Path(fn_args.model_run_dir)
    data_dir = write_image_folder(records, run_root / "train-images")
    config = train_config(custom, data_dir, run_root / "run", native_shape(records))
    result = train(config)
    if result.preempted:
        raise RuntimeError(f"training was preempted at step {result.global_step}; rerun the pipeline to resume")
    export_to_serving_dir(result.run_dir, run_root / "export", custom.get("model_name", "generator"),
                          Path(fn_args.serving_model_dir))


def export_to_serving_dir(run_dir: Path, export_root: Path, model_name: str, serving_dir: Path) -> dict:
    """Export as `python -m export.run` does, then lay out the directory Pusher copies into a version:
    SavedModel (saved_model.pb, variables/, assets.extra/ with warmup and card) + model.onnx + card."""
    from export.exporter import export_generator

    result = export_generator(run_dir, export_root, model_name, version=1)
    onnx_dir = export_root / "onnx-models" / model_name / "1"
    serving_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=serving_dir.parent) as staging:
        staged = Path(staging) / "serving"
        shutil.copytree(result.version_dir, staged)
        for name in ("model.onnx", "model_card.json"):
            shutil.copy2(onnx_dir / name, staged / name)
        for item in staged.iterdir():
            shutil.move(str(item), serving_dir / item.name)
    print(f"serving directory {serving_dir}: SavedModel + model.onnx (parity {json.dumps(result.report['passed'])})")
    return result.card
