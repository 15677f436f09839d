"""Publishing a version is all or nothing, whatever fails (issue 21, item 8). No TensorFlow: the
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
