"""Publishing a version is all or nothing, whatever fails. No TensorFlow: the
staged "models" here are plain files, which is all `ExportRoot.publish` moves and copies."""

from __future__ import annotations

import errno
import json
import shutil

import pytest

from export.publish import ExportRoot


def _stage(root: ExportRoot, version: int, content: str):
    claim = root.claim(version)
    staged = claim.__enter__()
    staged.savedmodel.mkdir()
    (staged.savedmodel / "saved_model.pb").write_text(content)
    staged.onnx_dir.mkdir()
    staged.onnx.write_text(content)
    return claim, staged


def _publish(root: ExportRoot, version: int, content: str):
    claim, staged = _stage(root, version, content)
    try:
        return root.publish(staged, {"version": version}, {"version": version, "passed": True})
    finally:
        claim.__exit__(None, None, None)


def _tree(path):
    return {p.relative_to(path).as_posix(): p.read_text() for p in sorted(path.rglob("*")) if p.is_file()
            and not p.name.startswith(".")}


def test_a_full_disk_while_copying_the_latest_files_publishes_no_part_of_the_version(tmp_path, monkeypatch):
    root = ExportRoot(tmp_path, "generator")
    (tmp_path / "onnx").mkdir()
    assert _publish(root, 1, "v1")
    before = _tree(tmp_path)

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copyfile", no_space)
    with pytest.raises(OSError, match="No space left"):
        _publish(root, 2, "v2")
    assert _tree(tmp_path) == before  # no version 2 for a polling server, and the latest copies still say 1
    assert not root.version_dir(2).exists() and not root.onnx_version_dir(2).exists()
    assert [p.name for p in (tmp_path / "onnx").iterdir() if p.name.startswith(".")] == []  # no temp files left


def test_a_published_version_moves_everything_together(tmp_path):
    root = ExportRoot(tmp_path, "generator")
    (tmp_path / "onnx").mkdir()
    assert _publish(root, 1, "v1") and _publish(root, 2, "v2")
    tree = _tree(tmp_path)
    assert tree["onnx/generator.onnx"] == "v2" and tree["tfserving/generator/2/saved_model.pb"] == "v2"
    assert json.loads(tree["export_report.json"])["version"] == 2
    assert json.loads(tree["model_card.json"])["version"] == 2


def test_a_failed_export_leaves_the_published_report_alone(tmp_path):
    root = ExportRoot(tmp_path, "generator")
    (tmp_path / "onnx").mkdir()
    _publish(root, 1, "v1")
    root.write_failure({"version": 2, "passed": False})
    assert json.loads(root.report_path.read_text()) == {"model_name": "generator", "version": 1, "passed": True}
    assert json.loads(root.failure_path.read_text())["passed"] is False


# -- versions, claims and leftovers, on fake staged directories (the real-export versions of these
#    tests run in the second tier: test_export.py's concurrent and killed exports) -------------------


def test_versions_auto_increment_and_existing_ones_are_refused(tmp_path):
    from export import ExportError

    root = ExportRoot(tmp_path, "generator")
    (tmp_path / "onnx").mkdir()
    for requested in (None, None, 7):
        claim, staged = _stage(root, requested, "x")
        try:
            root.publish(staged, {"version": staged.version}, {"version": staged.version, "passed": True})
        finally:
            claim.__exit__(None, None, None)
    assert sorted(p.name for p in root.base.iterdir()) == ["1", "2", "7"]
    with pytest.raises(ExportError, match="Version 2 already exists"):
        root.claim(2).__enter__()
    with pytest.raises(ExportError, match="--version must be a positive integer"):
        root.claim(0).__enter__()
    claim, staged = _stage(root, None, "x")
    claim.__exit__(None, None, None)
    assert staged.version == 8 and not staged.root.exists()  # an abandoned claim leaves nothing


PUBLISH_IN_A_PROCESS = """
import sys, time
from export.publish import ExportRoot
root = ExportRoot(sys.argv[1], "generator")
with root.claim(None) as staged:
    print(staged.version, flush=True)
    sys.stdin.readline()  # hold the claim until told to publish
    staged.savedmodel.mkdir(); (staged.savedmodel / "saved_model.pb").write_text(sys.argv[2])
    staged.onnx_dir.mkdir(); staged.onnx.write_text(sys.argv[2])
    root.publish(staged, {"version": staged.version}, {"version": staged.version, "passed": True})
"""


def test_concurrent_exports_claim_distinct_versions_and_publish_them_whole(tmp_path):
    """Two processes claim at once (both hold their claims before either publishes): versions 1 and 2,
    each with its own files, no staging left. Plain Python processes: no TensorFlow."""
    import subprocess
    import sys

    from tests.conftest import REPO

    (tmp_path / "onnx").mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", PUBLISH_IN_A_PROCESS, str(tmp_path), name], cwd=REPO,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for name in ("a", "b")]
    versions = [int(p.stdout.readline()) for p in procs]  # both claims are held now
    for proc in procs:
        proc.communicate("\n", timeout=60)
        assert proc.returncode == 0
    assert sorted(versions) == [1, 2]
    root = ExportRoot(tmp_path, "generator")
    for version, name in zip(versions, "ab"):
        assert (root.version_dir(version) / "saved_model.pb").read_text() == name
        assert (root.onnx_version_dir(version) / "model.onnx").read_text() == name
    assert sorted(p.name for p in (tmp_path / "tfserving").iterdir()) == ["generator"]
    assert (tmp_path / "onnx" / "generator.onnx").read_text() == dict(zip(versions, "ab"))[2]


def test_a_killed_exports_claim_is_removed_and_freed_while_a_live_one_is_kept(tmp_path):
    import signal
    import subprocess
    import sys

    from common.atomic import staging_dir
    from tests.conftest import REPO

    (tmp_path / "onnx").mkdir()
    killed = subprocess.Popen([sys.executable, "-c", PUBLISH_IN_A_PROCESS, str(tmp_path), "dead"], cwd=REPO,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert killed.stdout.readline().strip() == "1"  # it holds version 1's staging directory
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    (dead,) = (tmp_path / "tfserving").glob(".staging-generator-v1.*")
    root = ExportRoot(tmp_path, "generator")
    with staging_dir(tmp_path / "tfserving", "generator-v7") as live:  # an export still running beside us
        (live / "model").mkdir()
        assert _publish(root, None, "v8") is True
        assert not dead.exists(), "the killed export's staging directory was left"
        assert (live / "model").is_dir(), "a live export's staging directory was removed"
        assert sorted(int(p.name) for p in root.base.iterdir()) == [8]  # 1 was freed; 7 is claimed
    assert not live.exists()
