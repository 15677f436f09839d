"""What a run directory may delete and what a resumed run must refuse.

The unit tests need no TensorFlow: `training.rundir` and `training.config` import none.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO, TINY, run_python
from training.config import CONFIG_VERSION, ConfigError, TrainConfig
from training.rundir import RunDirectory

DATASET = {"name": "mnist-sample", "data_dir": None, "num_images": 5000, "image_shape": [28, 28, 1],
           "class_names": None, "fingerprint": "a" * 24}


def _users_directory(root):
    root.mkdir()
    (root / "thesis.tex").write_text("\\chapter{Results}")
    (root / "photos").mkdir()
    (root / "photos" / "a.jpg").write_bytes(b"jpeg")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    return root


def _a_run(root, config=None):
    run = RunDirectory(root)
    run.create(config or TrainConfig(output_dir=str(root)), resume=False, dataset=DATASET)
    return run


def _names(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


# -- --overwrite deletes only a run ----------------------------------------------------------


def test_overwrite_refuses_a_directory_of_a_users_files_and_names_them(tmp_path):
    root = _users_directory(tmp_path / "home")
    before = _names(root)
    run = RunDirectory(root)
    with pytest.raises(ConfigError, match=r"not a run directory \(it holds \.git, photos, thesis\.tex\)\. Choose"):
        run.check_compatible(TrainConfig(output_dir=str(root)), overwrite=False)
    with pytest.raises(ConfigError, match=r"\.git, photos, thesis\.tex\); --overwrite replaces only a run, so nothing was deleted"):
        run.check_compatible(TrainConfig(output_dir=str(root)), overwrite=True)
    with pytest.raises(ConfigError, match="nothing was deleted"):
        run.create(TrainConfig(output_dir=str(root)), resume=False, dataset=DATASET)
    assert _names(root) == before


def test_the_refusal_of_a_non_run_directory_does_not_suggest_overwrite(tmp_path):
    root = _users_directory(tmp_path / "home")
    with pytest.raises(ConfigError) as refused:
        RunDirectory(root).check_compatible(TrainConfig(output_dir=str(root)), overwrite=False)
    assert "--overwrite" not in str(refused.value)


def test_overwrite_refuses_a_run_that_also_holds_a_users_file(tmp_path):
    run = _a_run(tmp_path / "run")
    (run.root / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"\(notes\.txt\)"):
        run.check_compatible(TrainConfig(output_dir=str(run.root)), overwrite=True)
    assert (run.root / "notes.txt").read_text() == "mine"
    # Resuming deletes nothing, so it goes on.
    assert run.check_compatible(TrainConfig(output_dir=str(run.root)), overwrite=False, dataset=DATASET)


@pytest.mark.parametrize("users_file", ["samples/my_favourite.png", "checkpoints/mine/data.bin",
                                       "tensorboard/notes.md", "tensorboard/train/notes.md", "checkpoints/keep.txt"])
def test_overwrite_refuses_a_users_file_inside_the_runs_own_folders(tmp_path, users_file):
    run = _a_run(tmp_path / "run")
    (run.samples_dir / "epoch_0001.png").write_bytes(b"png")  # ours
    (run.checkpoints_dir / "checkpoint.json").write_text("{}")
    (run.tensorboard_dir / "train").mkdir()
    (run.tensorboard_dir / "train" / "events.out.tfevents.1.host").write_bytes(b"")
    assert run.foreign_entries() == []
    path = run.root / users_file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"the user's")
    before = _names(run.root)
    top = users_file.split("/")[0] + "/" + users_file.split("/")[1]
    with pytest.raises(ConfigError, match=f"{top}.*--overwrite replaces only a run, so nothing was deleted"):
        run.check_compatible(TrainConfig(output_dir=str(run.root)), overwrite=True)
    with pytest.raises(ConfigError):
        run.create(TrainConfig(output_dir=str(run.root)), resume=False, dataset=DATASET)
    assert _names(run.root) == before and path.read_bytes() == b"the user's"


def test_overwrite_empties_a_run_directory_including_a_killed_writers_temp_file(tmp_path):
    run = _a_run(tmp_path / "run")
    (run.checkpoints_dir / "ckpt-000000003.weights.h5").write_bytes(b"weights")
    (run.root / ".history.json.12345-abcd1234.tmp").write_text("half")
    assert run.check_compatible(TrainConfig(output_dir=str(run.root)), overwrite=True) is False
    run.create(TrainConfig(output_dir=str(run.root)), resume=False, dataset=DATASET)
    assert _names(run.root) == ["checkpoints", "config.json", "dataset.json", "samples", "tensorboard"]


def test_a_symlinked_output_dir_is_used_through_the_link_and_the_link_is_kept(tmp_path):
    target = tmp_path / "disk" / "runs"
    target.mkdir(parents=True)
    link = tmp_path / "runs"
    link.symlink_to(target, target_is_directory=True)
    run = RunDirectory(link)
    assert run.check_compatible(TrainConfig(output_dir=str(link)), overwrite=False) is False
    run.create(TrainConfig(output_dir=str(link)), resume=False, dataset=DATASET)
    assert (target / "config.json").is_file() and link.is_symlink()
    run.create(TrainConfig(output_dir=str(link)), resume=False, dataset=DATASET)  # --overwrite's path
    assert (target / "config.json").is_file() and link.is_symlink()


def test_a_dangling_symlink_is_one_error(tmp_path):
    link = tmp_path / "runs"
    link.symlink_to(tmp_path / "gone", target_is_directory=True)
    with pytest.raises(ConfigError, match="which does not exist"):
        RunDirectory(link).check_compatible(TrainConfig(output_dir=str(link)), overwrite=False)


@pytest.mark.slow
def test_overwrite_of_a_users_directory_from_the_shell_exits_2_and_deletes_nothing(tmp_path):
    root = _users_directory(tmp_path / "home")
    before = _names(root)
    result = run_python("-m", "training.run", *TINY, "--epochs", "1", "--steps-per-epoch", "1",
                        "--output-dir", str(root), "--overwrite", timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "thesis.tex" in result.stderr and "Traceback" not in result.stderr
    assert _names(root) == before


# -- resume on the data it started with; versioned config ----------------------------------


def test_resume_refuses_data_with_another_fingerprint_or_size(tmp_path):
    run = _a_run(tmp_path / "run")
    config = TrainConfig(output_dir=str(run.root))
    assert run.check_compatible(config, overwrite=False, dataset=DATASET)
    changed = {**DATASET, "num_images": 2500, "fingerprint": "b" * 24}
    with pytest.raises(ConfigError, match="training data changed.*num_images: 5000 -> 2500"):
        run.check_compatible(config, overwrite=False, dataset=changed)


def test_a_dataset_json_without_a_fingerprint_is_compared_on_its_size(tmp_path):
    run = _a_run(tmp_path / "run")
    old = {k: v for k, v in DATASET.items() if k not in ("fingerprint", "data_dir")}
    run.dataset_path.write_text(json.dumps(old))
    config = TrainConfig(output_dir=str(run.root))
    assert run.check_compatible(config, overwrite=False, dataset=DATASET)
    with pytest.raises(ConfigError, match="num_images"):
        run.check_compatible(config, overwrite=False, dataset={**DATASET, "num_images": 10})


def test_the_fingerprint_sees_pixels_and_labels():
    from training.data import ImageData

    images = np.zeros((4, 8, 8, 1), np.uint8)
    same = ImageData(images.copy(), None).fingerprint()
    assert ImageData(images, None).fingerprint() == same
    changed = images.copy()
    changed[2, 3, 3, 0] = 1
    assert ImageData(changed, None).fingerprint() != same
    assert ImageData(images, np.array([0, 1, 0, 1])).fingerprint() != same


def test_config_json_is_versioned_and_an_old_one_with_a_renamed_key_still_resumes(tmp_path):
    run = _a_run(tmp_path / "run")
    assert json.loads(run.config_path.read_text())["config_version"] == CONFIG_VERSION
    old = json.loads(run.config_path.read_text())
    del old["config_version"], old["ema_kimg"], old["ema_rampup"]
    old["ema_decay"] = 0.5 ** (1 / (10_000 / old["batch_size"]))  # the 10 kimg half-life, said per step
    run.config_path.write_text(json.dumps(old))
    config = TrainConfig(output_dir=str(run.root), ema_rampup=None)
    assert run.check_compatible(config, overwrite=False, dataset=DATASET)
    assert TrainConfig.from_dict(old).ema_kimg == pytest.approx(10.0)


def test_a_config_from_a_newer_version_is_refused_with_a_message():
    with pytest.raises(ConfigError, match="config_version 99"):
        TrainConfig.from_dict({"config_version": 99})


def test_a_relative_data_dir_compares_equal_to_its_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    relative = TrainConfig(dataset="idx", data_dir="digits")
    absolute = TrainConfig(dataset="idx", data_dir=str(tmp_path / "digits"))
    assert relative.differences(absolute) == []
    assert TrainConfig(dataset="idx", data_dir="other").differences(absolute) == ["data_dir"]


def _image_folder(root, count):
    root.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.new("L", (8, 8), (i * 7) % 256).save(root / f"{i:03d}.png")


@pytest.mark.slow
def test_a_folder_that_lost_images_is_refused_on_resume_and_paths_are_stored_absolute(tmp_path):
    _image_folder(tmp_path / "images", 32)
    def train(epochs):
        return run_python("-m", "training.run", *TINY, "--dataset", "folder", "--data-dir", "images",
                          "--image-size", "8", "--channels", "1", "--epochs", str(epochs), "--output-dir", "run",
                          cwd=tmp_path, env={"PYTHONPATH": str(REPO)}, timeout=300)

    first = train(1)
    assert first.returncode == 0, first.stderr[-3000:]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    dataset = json.loads((tmp_path / "run" / "dataset.json").read_text())
    assert config["data_dir"] == os.path.abspath(tmp_path / "images") == dataset["data_dir"]
    for image in sorted((tmp_path / "images").iterdir())[16:]:
        image.unlink()
    again = train(2)
    assert again.returncode == 2, again.stderr[-3000:]
    assert "training data changed" in again.stderr and "num_images: 32 -> 16" in again.stderr
