"""Bad input: exit code 2, one clear message naming the problem and the fix, nothing written."""

import json

import pytest

from tests.conftest import TINY, has_real_mnist, run_python
from training.cli import build_parser, parse_config
from training.config import ConfigError, TrainConfig
from training.run import main


def test_help_documents_every_flag_with_its_default():
    text = build_parser().format_help()
    for field in TrainConfig.__dataclass_fields__.values():
        assert "--" + field.name.replace("_", "-") in text
    assert "(default: mnist-sample)" in text and "(default: 0.999)" in text


def test_config_file_is_overridden_by_flags(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("batch-size: 32\nepochs: 3\nloss: hinge\nd_lr: 1\n")
    config = parse_config(["--config", str(path), "--epochs", "5"])
    assert (config.batch_size, config.epochs, config.loss, config.d_lr) == (32, 5, "hinge", 1.0)
    (tmp_path / "run.json").write_text(json.dumps({"conditional": True}))
    assert parse_config(["--config", str(tmp_path / "run.json")]).conditional is True


@pytest.mark.parametrize("content, message", [
    ("batch_sise: 3\n", "Unknown key(s) in --config file: batch_sise"),
    ("epochs: many\n", "epochs must be int"),
    ("- a\n- b\n", "must hold a mapping"),
    ("epochs: [\n", "not valid YAML"),
])
def test_bad_config_files(tmp_path, content, message):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_config(["--config", str(path)])


@pytest.mark.parametrize("argv, message", [
    (["--batch-size", "0"], "--batch-size must be positive"),
    (["--image-size", "30"], "--image-size must be a multiple of 4"),
    (["--channels", "2"], "--channels must be 1 or 3"),
    (["--dataset", "folder"], "--dataset folder needs --data-dir"),
    (["--ema-kimg", "-1"], "--ema-kimg must be >= 0"),
    (["--config", "/nonexistent.yaml"], "does not exist"),
])
def test_invalid_values_exit_2_with_a_message(argv, message, capsys, tmp_path):
    out = tmp_path / "run"
    assert main(argv + ["--output-dir", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_data_problems_exit_2_before_anything_is_written(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "run"
    assert main(["--dataset", "folder", "--data-dir", str(empty), "--output-dir", str(out)]) == 2
    assert "No PNG or JPEG images under" in capsys.readouterr().err
    assert main(["--dataset", "idx", "--data-dir", str(tmp_path / "nope"), "--output-dir", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["--conditional", "--dataset", "folder", "--data-dir", str(empty), "--output-dir", str(out)]) == 2
    assert not out.exists()


def test_batch_larger_than_dataset_and_output_dir_that_is_a_file(tmp_path, capsys, mnist_test_dir):
    assert main(["--dataset", "idx", "--data-dir", str(mnist_test_dir), "--batch-size", "20000",
                 "--output-dir", str(tmp_path / "run")]) == 2
    images = 10000 if has_real_mnist(mnist_test_dir) else 5000
    assert f"larger than the dataset ({images} images)" in capsys.readouterr().err
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert main(["--steps-per-epoch", "1", "--output-dir", str(a_file)]) == 2
    assert "is a file" in capsys.readouterr().err
    assert a_file.read_text() == "x"


def test_unknown_dataset_from_the_shell_has_no_traceback():
    result = run_python("-m", "training.run", "--dataset", "imagenet", *TINY, timeout=120)
    assert result.returncode == 2
    assert "invalid choice: 'imagenet'" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("argv", [["--batch-size", "0"], ["--dataset", "imagenet"], ["--no-such-flag"]])
def test_a_usage_error_is_one_line_and_imports_no_tensorflow(argv):
    """Flags are parsed and validated before TensorFlow is imported: `-X importtime` lists every
    module the real command imported before it exited."""
    result = run_python("-X", "importtime", "-m", "training.run", *argv, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in lines if line.startswith("import time:")}
    assert "training" in imported and not imported & {"tensorflow", "keras"}
    message = [line for line in lines if not line.startswith("import time:")]
    assert len(message) == 1 and message[0].startswith("error: "), message
