"""The run directory under damage: corrupt checkpoints, a full disk, leftovers of a kill, --overwrite."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.conftest import TINY, run_python
from training.config import TrainConfig
from training.rundir import RunDirectory

TWO_CHECKPOINTS = dict(width=4, latent_dim=8, batch_size=16, epochs=2, steps_per_epoch=3, verbose=0,
                       num_samples=16, checkpoint_every=100)


@pytest.fixture(scope="module")
def two_checkpoint_run(tmp_path_factory):
    """A finished tiny run whose checkpoints/ holds step 3 and step 6."""
    from training.trainer import train

    root = tmp_path_factory.mktemp("ckpt") / "run"
    train(TrainConfig(**TWO_CHECKPOINTS, output_dir=str(root)))
    return root


@pytest.fixture(scope="module")
def fresh_gan(two_checkpoint_run):
    """Build an untrained GAN of the run's config (once: restoring overwrites every variable)."""
    from training.trainer import build_gan

    saved = json.loads((two_checkpoint_run / "config.json").read_text())
    return build_gan(TrainConfig.from_dict(saved), None)


def _copy(run, tmp_path):
    shutil.copytree(run, tmp_path / "run")
    return RunDirectory(tmp_path / "run")


def _flip_a_bit_inside_the_weights(path):
    import h5py

    with h5py.File(path, "r") as f:  # find where a weight's bytes lie, so the HDF5 structure stays valid
        offsets = []
        f.visititems(lambda name, obj: offsets.append(obj.id.get_offset()) if isinstance(obj, h5py.Dataset)
                     and obj.size > 16 and obj.id.get_offset() else None)
    data = bytearray(path.read_bytes())
    data[offsets[0] + 5] ^= 0x40
    path.write_bytes(bytes(data))


DAMAGE = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "garbage": lambda p: p.write_bytes(os.urandom(p.stat().st_size)),
    "empty": lambda p: p.write_bytes(b""),
    "bit-flipped": _flip_a_bit_inside_the_weights,
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_newest_checkpoint_is_reported_and_the_previous_one_used(two_checkpoint_run, fresh_gan, tmp_path,
                                                                           capsys, damage):
    run = _copy(two_checkpoint_run, tmp_path)
    entries = run.checkpoint_entries()
    assert [e["step"] for e in entries] == [6, 3] and all(len(e["sha256"]) == 64 for e in entries)
    newest = run.checkpoints_dir / entries[0]["weights"]
    DAMAGE[damage](newest)
    assert run.restore_checkpoint(fresh_gan) == 3
    assert fresh_gan.step == 3
    err = capsys.readouterr().err
    assert f"warning: checkpoint {newest.name} (step 6) is damaged" in err and "trying the one before it" in err
    # The damaged file is set aside and the pointer now names the intact checkpoint only.
    assert [e["step"] for e in run.checkpoint_entries()] == [3]
    assert newest.with_name(newest.name + ".damaged").is_file() and not newest.exists()


def test_after_restoring_past_an_unreadable_pointer_the_next_save_keeps_what_was_restored(two_checkpoint_run,
                                                                                          fresh_gan, tmp_path):
    run = _copy(two_checkpoint_run, tmp_path)
    run.checkpoint_pointer.write_text("{ not json")
    assert run.restore_checkpoint(fresh_gan) == 6
    restored = run.checkpoint_entries()  # rewritten: it names the checkpoint restored, with its checksum
    assert [e["step"] for e in restored] == [6] and len(restored[0]["sha256"]) == 64
    run.save_checkpoint(fresh_gan, 9)
    assert [e["step"] for e in run.checkpoint_entries()] == [9, 6]
    assert (run.checkpoints_dir / "ckpt-000000006.weights.h5").is_file()


def test_a_save_with_an_unreadable_pointer_deletes_no_checkpoint_it_cannot_account_for(two_checkpoint_run,
                                                                                     fresh_gan, tmp_path):
    run = _copy(two_checkpoint_run, tmp_path)
    run.checkpoint_pointer.write_text("")
    run.save_checkpoint(fresh_gan, 9)
    assert [e["step"] for e in run.checkpoint_entries()] == [9, 6]
    assert (run.checkpoints_dir / "ckpt-000000006.weights.h5").is_file()


def test_a_file_a_library_wrote_is_fsynced_before_it_is_renamed_into_place(tmp_path, monkeypatch):
    """Keras and h5py write without fsync; atomic_path must sync before the rename makes it visible."""
    from common import atomic

    synced, renamed = set(), []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: (synced.add(os.fstat(fd).st_ino), real_fsync(fd))[1])
    monkeypatch.setattr(atomic.os, "replace",
                        lambda src, dst: (renamed.append(os.stat(src).st_ino in synced), real_replace(src, dst))[1])
    with atomic.atomic_path(tmp_path / "ckpt.weights.h5", suffix=".weights.h5") as tmp:
        with open(tmp, "wb") as f:  # what a library does: write and close, no fsync
            f.write(b"weights")
    assert renamed == [True] and (tmp_path / "ckpt.weights.h5").read_bytes() == b"weights"


@pytest.mark.parametrize("name", ["../../config.json", "/etc/hostname", "ckpt-000000006.weights.h5/../../dataset.json"])
def test_checkpoint_json_cannot_point_outside_the_run_directory(two_checkpoint_run, fresh_gan, tmp_path, capsys, name):
    run = _copy(two_checkpoint_run, tmp_path)
    pointer = json.loads(run.checkpoint_pointer.read_text())
    pointer["checkpoints"][0]["weights"] = name
    run.checkpoint_pointer.write_text(json.dumps(pointer))
    assert run.restore_checkpoint(fresh_gan) == 3
    assert f"names {name!r}, which is not a checkpoint file inside" in capsys.readouterr().err


def test_no_intact_checkpoint_is_one_error_naming_the_fix(two_checkpoint_run, fresh_gan, tmp_path):
    from training.config import ConfigError

    run = _copy(two_checkpoint_run, tmp_path)
    for path in run.checkpoints_dir.glob("ckpt-*.weights.h5"):
        path.write_bytes(b"")
    with pytest.raises(ConfigError, match="No intact checkpoint in .*Pass --overwrite to start this run over"):
        run.restore_checkpoint(fresh_gan)


@pytest.mark.slow
def test_a_truncated_checkpoint_resumes_from_the_previous_one_from_the_shell(two_checkpoint_run, tmp_path):
    run = _copy(two_checkpoint_run, tmp_path)
    newest = run.checkpoints_dir / run.checkpoint_entries()[0]["weights"]
    newest.write_bytes(newest.read_bytes()[:1000])
    args = [*TINY, "--epochs", "3", "--steps-per-epoch", "3", "--checkpoint-every", "100", "--output-dir", str(run.root)]
    result = run_python("-m", "training.run", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "is damaged" in result.stderr and "Traceback" not in result.stderr
    assert "resuming at step 3" in result.stdout and "done: 9/9 steps" in result.stdout
    assert [r["global_step"] for r in json.loads(run.history_path.read_text())] == [3, 6, 9]


def test_overwrite_starts_over_even_with_the_same_config(tmp_path, capsys):
    from training.trainer import train

    root = tmp_path / "run"
    config = TrainConfig(**{**TWO_CHECKPOINTS, "epochs": 1}, output_dir=str(root))
    train(config)
    (root / "checkpoints" / "ckpt-000000099.weights.h5").write_text("the first run's")  # ours: deleted
    capsys.readouterr()
    result = train(TrainConfig(**{**TWO_CHECKPOINTS, "epochs": 1}, output_dir=str(root), overwrite=True))
    assert "| new run in" in capsys.readouterr().out
    assert result.global_step == 3 and not (root / "checkpoints" / "ckpt-000000099.weights.h5").exists()
    # The saved config never carries the flag: rerunning without it resumes.
    assert json.loads((root / "config.json").read_text())["overwrite"] is False
    train(TrainConfig(**TWO_CHECKPOINTS, output_dir=str(root)))
    assert "resuming at step 3" in capsys.readouterr().out


def test_a_run_start_removes_temp_files_a_killed_process_left(two_checkpoint_run, tmp_path):
    run = _copy(two_checkpoint_run, tmp_path)
    # What a process killed mid-write leaves: its pid is gone, nobody holds the file's lock.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    leftovers = [run.checkpoints_dir / f".ckpt-000000009.weights.h5.{pid}-ab12cd34.tmp.weights.h5",
                 run.samples_dir / f".epoch_0003.png.{pid}-ab12cd34.tmp", run.root / f".history.json.{pid}-ab12cd34.tmp"]
    for path in leftovers:
        path.write_bytes(b"half")
    keep = run.checkpoints_dir / ".not-ours"
    keep.write_text("x")
    config = TrainConfig.from_dict(json.loads(run.config_path.read_text()))
    assert run.check_compatible(config, overwrite=False)
    run.create(config, resume=True, dataset=json.loads(run.dataset_path.read_text()))
    assert not any(p.exists() for p in leftovers) and keep.exists()


def _mount_tmpfs(path, size):
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a real small filesystem")
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount tmpfs here: {done.stderr.decode().strip()}")


@pytest.mark.tier2
@pytest.mark.slow
def test_a_full_disk_stops_with_a_message_and_exit_74_and_the_rerun_resumes(two_checkpoint_run, tmp_path):
    # Room for the step-5 checkpoint (the same model as the fixture's), not for a second beside it:
    # whichever write comes first at step 10 (the sample grid, TensorBoard, the checkpoint) fails.
    size = max(p.stat().st_size for p in (two_checkpoint_run / "checkpoints").glob("ckpt-*.weights.h5"))
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, f"{int(size * 1.6) // 1024}k")
    try:
        run_dir = disk / "run"
        args = [*TINY, "--epochs", "3", "--steps-per-epoch", "5", "--checkpoint-every", "100", "--output-dir", str(run_dir)]
        full = run_python("-m", "training.run", *args)
        assert full.returncode == 74, full.stdout[-2000:] + full.stderr[-3000:]
        lines = full.stderr.strip().splitlines()
        assert len(lines) == 1 and "No space left on the device writing" in lines[0], full.stderr[-3000:]
        assert re.search(r"it needs about [\d.]+ [KM]iB free there \([\d.]+ K?i?B free\)", lines[0]), lines[0]
        assert "resumes from its last checkpoint (step 5), which is intact" in lines[0]
        pointer = json.loads((run_dir / "checkpoints" / "checkpoint.json").read_text())
        assert pointer["step"] == 5 and not (run_dir / "generator.keras").exists()
        assert not [p for p in run_dir.rglob(".*") if ".tmp" in p.name], "a temporary file was left behind"
        subprocess.run(["mount", "-o", "remount,size=4m", str(disk)], check=True)
        resumed = run_python("-m", "training.run", *args)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert "resuming at step 5" in resumed.stdout and "done: 15/15 steps" in resumed.stdout
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_finished_run_opens_read_only_with_its_typed_config(tmp_path):
    """What export and evaluation read of a run (training.finished_run), and the errors that name
    what is missing."""
    from training.config import TrainConfig
    from training.finished_run import FinishedRun, NotARunError

    with pytest.raises(NotARunError, match="does not exist"):
        FinishedRun.open(tmp_path / "missing")
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(NotARunError, match="has no generator.keras: the run has not finished"):
        FinishedRun.open(run)
    (run / "generator.keras").write_bytes(b"a generator")
    bare = FinishedRun.open(run)
    assert bare.config is None and bare.history == [] and bare.final_metrics is None
    with pytest.raises(NotARunError, match="--variants needs the run's config.json"):
        bare.require_config("--variants")
    TrainConfig(width=8, dataset="folder", data_dir="photos", image_size=32, channels=3).save(run / "config.json")
    (run / "history.json").write_text('[{"epoch": 1, "d_loss": 1.0}, {"epoch": 2, "d_loss": 0.5}]')
    finished = FinishedRun.open(run)
    assert finished.config.width == 8 and finished.config.channels == 3
    assert finished.final_metrics == {"epoch": 2, "d_loss": 0.5} and finished.generator_path == run / "generator.keras"
    (run / "config.json").write_text("{not json")
    with pytest.raises(NotARunError, match="cannot be read as a training config"):
        FinishedRun.open(run)
