"""The one typed configuration of a training run.

Every knob lives here, with its default and its help text; the CLI, config files, the run
directory's `config.json` and the export's model card are all views of this dataclass.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.errors import ConfigError  # noqa: F401 (one class for training and serving; re-exported)

DATASETS = ("mnist-sample", "mnist", "fashion_mnist", "cifar10", "folder", "idx")
LOSSES = ("bce", "rpgan", "wgan-gp", "hinge")
ARCHITECTURES = ("dcgan", "resnet", "mlp")
UPSAMPLING = ("pixelshuffle", "transposed", "nearest")
AUGMENTATIONS = ("color", "translation", "cutout")
LR_DECAYS = ("none", "cosine", "linear")
STRATEGIES = ("auto", "default", "one-device", "mirrored", "multi-worker")
CLUSTERS = ("auto", "tf-config", "slurm", "indexed-job", "trainjob")
RECIPES = ("auto", "digits", "photos")

# Each dataset's image size and channels when --image-size and --channels are left out.
DATASET_SHAPES = {"mnist-sample": (28, 1), "mnist": (28, 1), "fashion_mnist": (28, 1), "idx": (28, 1),
                  "cifar10": (32, 3), "folder": (64, 3)}
# The photo recipe: the settings that differ from the dataclass defaults (the digit recipe), for
# colour images of 32 px and up; chosen at equal wall clock on CIFAR-10 (BENCHMARKS.md, "Photos").
PHOTO_RECIPE: dict[str, Any] = {"upsampling": "nearest", "d_lr": 4e-4, "g_lr": 4e-4}

# Keys that may change between a run and its resumption without making it a different run.
# Learning rates may change too: lowering them and resuming is the usual answer to divergence.
RESUMABLE_KEYS = frozenset({"epochs", "max_minutes", "output_dir", "verbose", "checkpoint_every",
                            "d_lr", "g_lr", "eval_every", "eval_samples", "eval_reference_dir",
                            "cluster", "cluster_port", "worker_hosts", "num_workers",
                            "preempted_exit_code"})  # where, not what


# config.json's schema. Version 1 files carry no "config_version"; MIGRATIONS[v] turns a version-v
# mapping into version v + 1, so a run whose flags were renamed since it started still resumes.
CONFIG_VERSION = 3
VERSION_KEY = "config_version"
# Paths, compared as absolute paths (runs before version 2 stored them as typed).
PATH_KEYS = ("data_dir", "eval_reference_dir")


def _from_v1(values: dict[str, Any]) -> dict[str, Any]:
    """--ema-decay (a per-step decay, no ramp-up) became --ema-kimg (a half-life in thousands of
    images) with --ema-rampup: the same averaging, said the new way."""
    values = dict(values)
    decay = values.pop("ema_decay", None)
    if decay is not None and "ema_kimg" not in values:
        batch = int(values.get("batch_size", 64))
        values["ema_kimg"] = 0.0 if decay <= 0 else round(batch * math.log(0.5) / math.log(decay) / 1000.0, 6)
        values.setdefault("ema_rampup", None)
    return values


def _from_v2(values: dict[str, Any]) -> dict[str, Any]:
    """--recipe arrived: every saved run before it used the dataclass defaults, the digit recipe.
    (`migrate` skips this for unversioned mappings: flags and --config files get the recipe for
    their shape.)"""
    return {"recipe": "digits", **values}


MIGRATIONS = {1: _from_v1, 2: _from_v2}


# What this invocation does with the run directory, not what the run is: never compared, and
# config.json records it as False so that the saved config never wipes a run when reused.
ACTION_KEYS = frozenset({"overwrite"})



def _opt(default: Any, help: str, **metadata: Any) -> Any:
    return field(default=default, metadata={"help": help, **metadata})


@dataclass
class TrainConfig:
    # Data
    dataset: str = _opt("mnist-sample", "Dataset to train on.", choices=DATASETS)
    data_dir: str | None = _opt(None, "Directory of images (folder) or idx files (idx).")
    image_size: int | None = _opt(
        None, "Square image size in pixels (multiple of 4). Default: the dataset's own (28/32/64)."
    )
    channels: int | None = _opt(None, "1 (grayscale) or 3 (RGB). Default: the dataset's own.")
    conditional: bool = _opt(False, "Class-conditional GAN: needs a labelled dataset.")
    recipe: str = _opt("digits", "The defaults every other flag starts from. auto: photos for colour images of 32 px and "
                       "up (--channels 3, --dataset cifar10, or --dataset folder, whose default is 64x64x3), else "
                       "digits. digits: the defaults shown below, chosen on MNIST. photos: the same but "
                       + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in PHOTO_RECIPE.items())
                       + ", chosen at equal wall clock on CIFAR-10. A flag you give always wins.",
                       choices=RECIPES, cli_default="auto")
    # Model
    latent_dim: int = _opt(64, "Size of the generator's noise vector z.")
    width: int = _opt(16, "Width multiplier: filters of the widest-resolution conv layer. 16 beat 24 and 32 at equal "
                      "wall clock (a 32-wide step costs ~2.5x a 16-wide one; BENCHMARKS.md section 0).")
    d_width: int | None = _opt(None, "Discriminator width multiplier, when it should differ from the generator's. "
                               "Default: --width. The generator costs ~2.5x the discriminator per step at equal width "
                               "(BENCHMARKS.md section 0), so the two are priced apart.")
    arch: str = _opt("dcgan", "Architecture: dcgan (28-64 px), resnet (SNGAN-style residual, 32-128 px colour), "
                     "mlp (the tutorial's fully connected GAN).", choices=ARCHITECTURES)
    upsampling: str = _opt("pixelshuffle", "Generator upsampling: pixelshuffle (conv + depth_to_space; quantizes "
                           "to int8), transposed (Conv2DTranspose) or nearest (+ conv).", choices=UPSAMPLING)
    spectral_norm: bool = _opt(False, "Spectral normalization in the discriminator (always on for resnet).")
    # Optimisation
    batch_size: int = _opt(64, "Global batch size, split evenly across replicas.")
    epochs: int = _opt(64, "Number of epochs. The default is fixed so one command gives one model everywhere: on "
                       "mnist-sample (78 steps an epoch) 4.7-5.6 min (282-336 s in six runs) at ~1,080-1,300 "
                       "img/s median, measured on a 2-core AMD EPYC with AVX-512, "
                       "about 10 min without AVX-512 (estimated), less on a GPU; quality still improves at 64 "
                       "(BENCHMARKS.md section 0), so raise it where time allows, or bound a run with --max-minutes.")
    steps_per_epoch: int | None = _opt(None, "Steps per epoch. Default: dataset size // batch size.")
    loss: str = _opt("bce", "GAN loss.", choices=LOSSES)
    label_smoothing: float = _opt(0.0, "One-sided label smoothing for real labels (bce only).")
    gp_weight: float = _opt(10.0, "Gradient-penalty weight (wgan-gp only).")
    d_steps: int | None = _opt(None, "Discriminator steps per generator step. Default: 5 for wgan-gp, else 1.")
    d_lr: float = _opt(1.6e-3, "Discriminator learning rate (Adam). With R1 + R2 (and beta_1 0), 1.6e-3 beat 8e-4 at "
                       "equal wall clock on 3 seeds, and 1.2e-3 on the one seed tried (BENCHMARKS.md section 0); "
                       "without the penalties 8e-4 was best.")
    g_lr: float = _opt(1.6e-3, "Generator learning rate (Adam); the EMA generator smooths what a high rate makes noisy.")
    lr_decay: str = _opt("none", "Decay both learning rates over the run's steps (--epochs x steps per epoch), as a "
                         "function of the step alone so a resumed run follows the same curve: cosine or linear, down "
                         "to --lr-final x the rate at the last step; none keeps them constant. --max-minutes does not "
                         "shorten the curve: set --epochs to what fits.", choices=LR_DECAYS)
    lr_final: float = _opt(0.0, "With --lr-decay: the rates at the last step, as a fraction of --d-lr and --g-lr.")
    beta_1: float = _opt(0.0, "Adam beta_1 for both optimizers (0, no momentum: R3GAN's setting, part of the default "
                         "recipe with the R1 and R2 penalties; 0.5 was the default before).")
    beta_2: float = _opt(0.999, "Adam beta_2 for both optimizers.")
    ema_kimg: float = _opt(10.0, "Generator EMA half-life in thousands of images; 0 disables EMA. The EMA generator "
                           "(BatchNorm re-estimated for its weights) is what is sampled, saved and exported.")
    ema_rampup: float | None = _opt(0.05, "EMA ramp-up: half-life at most this fraction of the images seen (StyleGAN2-ADA).")
    diffaugment: str = _opt("", "DiffAugment policy for real and fake images: a comma list of color, translation, cutout.")
    r1_gamma: float = _opt(0.05, "R1 penalty weight gamma (gamma/2 * |grad D(real)|^2); 0 disables. With --r2-gamma "
                           "and --r1-every 8 the default: better FID at equal wall clock (BENCHMARKS.md section 0).")
    r2_gamma: float = _opt(0.05, "R2 penalty weight: R1's zero-centred penalty on fake images (R3GAN pairs it with "
                           "R1); 0 disables.")
    r1_every: int = _opt(8, "Apply R1 and R2 lazily every N steps (scaled by N); 1: every step. Every 8 adds ~4 percent "
                         "to the step time; every step, ~19 percent.")
    # Execution
    strategy: str = _opt("auto", "tf.distribute strategy (auto: mirrored on >1 GPU, one-device on 1 GPU, default on CPU).", choices=STRATEGIES)
    jit_compile: bool = _opt(False, "Compile the train step with XLA.")
    mixed_precision: bool = _opt(False, "Mixed precision: float16 compute with loss scaling on GPU, bfloat16 on CPU.")
    deterministic: bool = _opt(False, "TensorFlow op determinism: same seed, bit-identical weights (slower on GPU).")
    steps_per_execution: int = _opt(1, "Train steps run per tf.function call (helps small models).")
    cluster: str = _opt("auto", "Where multi-worker finds its cluster: tf-config (TF_CONFIG), slurm (the job step), "
                        "indexed-job (a Kubernetes Indexed Job), trainjob (a Kubeflow Trainer v2 TrainJob on the plainML "
                        "runtime); auto: TF_CONFIG if set, else Slurm if in a step, "
                        "else this machine alone.", choices=CLUSTERS)
    cluster_port: int = _opt(12345, "Workers' port: Slurm tasks on one node count up from it; indexed-job and "
                             "trainjob pods all use it.")
    worker_hosts: str | None = _opt(None, "indexed-job: each pod's host name with {index}, e.g. train-{index}.train "
                                          "(Job name, index, headless Service).")
    num_workers: int | None = _opt(None, "indexed-job: number of pods (the Job's completions); trainjob: the "
                                   "TrainJob's numNodes.")
    preempted_exit_code: int = _opt(0, "Exit status after a preemption checkpoint: 0, or e.g. 143 so a Kubernetes "
                                     "Job/TFJob or a Slurm requeue restarts the workers and they resume.")
    seed: int = _opt(0, "Seed for weights, data order and noise: same seed, same run.")
    # Run directory
    output_dir: str | None = _opt(None, "Run directory. Default: runs/<timestamp>. An existing one is resumed.")
    overwrite: bool = _opt(False, "Start over: delete the run --output-dir holds (of any config) and train from step 0. "
                           "A directory holding anything a run does not write is refused, never emptied.")
    checkpoint_every: int = _opt(200, "Write a checkpoint every N steps (and at each epoch end).")
    num_samples: int = _opt(64, "Images in each sample grid (one row per class when conditional).")
    eval_every: int | None = _opt(None, "Every N epochs, log FID/KID (domain-classifier features) and keep the best generator.")
    eval_samples: int = _opt(2000, "Generated images per evaluation during training.")
    eval_reference_dir: str | None = _opt(
        None, "Held-out real images --eval-every scores against (idx files or an image folder, e.g. the MNIST test "
        "set). Default: the dataset's test split (mnist, fashion_mnist, cifar10), else the training data, which "
        "rewards memorising it (a warning says so).")
    max_minutes: float | None = _opt(None, "Stop cleanly after this wall-clock budget, still writing all artifacts.")
    verbose: int = _opt(1, "Keras verbosity: 0 silent, 1 progress bar, 2 one line per epoch.")

    @property
    def resolved_d_steps(self) -> int:
        if self.d_steps is not None:
            return self.d_steps
        return 5 if self.loss == "wgan-gp" else 1

    def validate(self) -> TrainConfig:
        """Raise ConfigError on values no run can use; return self for chaining."""
        positive = ["latent_dim", "width", "batch_size", "epochs", "steps_per_execution",
                    "checkpoint_every", "num_samples", "eval_samples", "cluster_port"]
        positive += [k for k in ("image_size", "channels", "steps_per_epoch", "d_steps", "max_minutes", "eval_every",
                                 "num_workers", "d_width")
                     if getattr(self, k) is not None]
        for key in positive:
            if getattr(self, key) <= 0:
                raise ConfigError(f"--{_flag(key)} must be positive, got {getattr(self, key)}.")
        for key, choices in (("dataset", DATASETS), ("loss", LOSSES), ("strategy", STRATEGIES), ("recipe", RECIPES)):
            if getattr(self, key) not in choices:
                raise ConfigError(
                    f"Unknown --{key} {getattr(self, key)!r}. Choose one of: {', '.join(choices)}."
                )
        if self.image_size is not None and (self.image_size % 4 or self.image_size < 8):
            raise ConfigError(
                f"--image-size must be a multiple of 4 and at least 8 (the generator upsamples at "
                f"least twice), got {self.image_size}. Try 28, 32 or 64."
            )
        if self.channels is not None and self.channels not in (1, 3):
            raise ConfigError(f"--channels must be 1 or 3, got {self.channels}.")
        if not 0 <= self.preempted_exit_code <= 255:
            raise ConfigError(f"--preempted-exit-code must be 0..255, got {self.preempted_exit_code}.")
        if self.cluster not in CLUSTERS:
            raise ConfigError(f"Unknown --cluster {self.cluster!r}. Choose one of: {', '.join(CLUSTERS)}.")
        if self.cluster != "auto" and self.strategy != "multi-worker":
            raise ConfigError(f"--cluster {self.cluster} needs --strategy multi-worker.")
        if self.cluster == "indexed-job" and not (self.num_workers and self.worker_hosts and "{index}" in self.worker_hosts):
            raise ConfigError("--cluster indexed-job needs --num-workers N (the Job's completions) and --worker-hosts "
                              "with {index}, e.g. --worker-hosts 'gan-train-{index}.gan-train'.")
        if self.cluster == "trainjob" and not self.num_workers:
            raise ConfigError("--cluster trainjob needs --num-workers N, equal to the TrainJob's trainer.numNodes.")
        if self.dataset in ("folder", "idx") and not self.data_dir:
            raise ConfigError(f"--dataset {self.dataset} needs --data-dir pointing at your files.")
        for key in ("ema_kimg", "r1_gamma", "r2_gamma"):
            if getattr(self, key) < 0:
                raise ConfigError(f"--{_flag(key)} must be >= 0, got {getattr(self, key)}.")
        if self.ema_rampup is not None and self.ema_rampup < 0:
            raise ConfigError(f"--ema-rampup must be >= 0, got {self.ema_rampup}.")
        if self.r1_every <= 0:
            raise ConfigError(f"--r1-every must be positive, got {self.r1_every}.")
        for key, choices in (("arch", ARCHITECTURES), ("upsampling", UPSAMPLING)):
            if getattr(self, key) not in choices:
                raise ConfigError(f"Unknown --{key} {getattr(self, key)!r}. Choose one of: {', '.join(choices)}.")
        unknown = [p for p in self.diffaugment.split(",") if p.strip() and p.strip() not in AUGMENTATIONS + ("none",)]
        if unknown:
            raise ConfigError(f"Unknown --diffaugment {', '.join(unknown)}: use a comma list of "
                              f"{', '.join(AUGMENTATIONS)} (e.g. --diffaugment translation,cutout), or none.")
        if not 0.0 <= self.label_smoothing < 0.5:
            raise ConfigError(f"--label-smoothing must be in [0, 0.5), got {self.label_smoothing}.")
        if self.lr_decay not in LR_DECAYS:
            raise ConfigError(f"Unknown --lr-decay {self.lr_decay!r}. Choose one of: {', '.join(LR_DECAYS)}.")
        if not 0.0 <= self.lr_final <= 1.0:
            raise ConfigError(f"--lr-final is a fraction of the learning rates: 0 to 1, got {self.lr_final}.")
        for key in ("d_lr", "g_lr"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"--{_flag(key)} must be positive, got {getattr(self, key)}.")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> TrainConfig:
        """Build from a flat mapping, accepting `image-size` or `image_size`; unknown keys are an error.
        A mapping of an older schema version (config.json of an older run) is migrated first. Keys the
        mapping leaves out take the recipe's value (`recipe_for`), else the dataclass default."""
        known = {f.name for f in dataclasses.fields(cls)}
        normalized = migrate({str(k).replace("-", "_"): v for k, v in values.items()}, source)
        unknown = sorted(set(normalized) - known)
        if unknown:
            raise ConfigError(
                f"Unknown key(s) in {source}: {', '.join(unknown)}. "
                f"Valid keys are the long flag names, e.g. image_size or batch_size (see --help)."
            )
        name, _ = recipe_for(normalized)
        return cls(**{**(PHOTO_RECIPE if name == "photos" else {}), **normalized, "recipe": name})

    def save(self, path: Path) -> None:
        from common.atomic import write_text_atomic

        write_text_atomic(path, json.dumps({**self.to_dict(), VERSION_KEY: CONFIG_VERSION}, indent=2, sort_keys=True)
                          + "\n")

    def differences(self, other: TrainConfig) -> list[str]:
        """Keys that make `other` a different run from this one (RESUMABLE_KEYS may differ)."""
        mine, theirs = self.to_dict(), other.to_dict()
        for key in PATH_KEYS:
            mine[key], theirs[key] = absolute_path(mine[key]), absolute_path(theirs.get(key))
        ignored = RESUMABLE_KEYS | ACTION_KEYS
        return sorted(k for k in mine if k not in ignored and mine[k] != theirs.get(k))


def default_output_dir() -> str:
    """Where a run goes without --output-dir: runs/<timestamp>."""
    import datetime

    return os.path.join("runs", datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))


def recipe_for(values: dict[str, Any]) -> tuple[str, str]:
    """`(recipe, why)` for a mapping of settings: its `recipe` unless "auto" or absent, else photos
    for colour images of 32 px and up (the shape the dataset and flags describe), else digits."""
    given = values.get("recipe", "auto")
    if given != "auto":
        return given, f"--recipe {given}"
    size, channels = DATASET_SHAPES.get(values.get("dataset", "mnist-sample"), (28, 1))
    size, channels = values.get("image_size") or size, values.get("channels") or channels
    if channels == 3 and size >= 32:
        return "photos", f"{size}x{size}x3 colour images"
    return "digits", f"{size}x{size}x{channels} images" + (" (photos are colour, 32 px and up)" if channels == 3 else "")


def _flag(key: str) -> str:
    return key.replace("_", "-")


def absolute_path(path: str | None) -> str | None:
    """`path` made absolute against the working directory (no links resolved); None stays None."""
    return os.path.abspath(os.path.expanduser(path)) if path else path


def migrate(values: dict[str, Any], source: str) -> dict[str, Any]:
    """A mapping of any known schema version, as the current version (without the version key)."""
    values = dict(values)
    stated = VERSION_KEY in values
    version = values.pop(VERSION_KEY, 1)
    if not isinstance(version, int) or not 1 <= version <= CONFIG_VERSION:
        raise ConfigError(f"{source} has {VERSION_KEY} {version!r}; this gan-serve reads versions 1 to "
                          f"{CONFIG_VERSION}. Use the gan-serve version that wrote it, or a newer one.")
    for step in range(version, CONFIG_VERSION):
        if step == 2 and not stated:
            continue
        values = MIGRATIONS[step](values)
    return values
