"""Crash-safe file writes: write beside the target, fsync, rename into place, fsync the directory.

A reader (or a resumed run) therefore sees either the old file or the new one, never half of one.
Published files get the mode a plain `open(path, "w")` would give under the umask (not mkstemp's
0600), so a server running as another user can read them.

Leftovers of a process killed with -9 (temp files, staging directories) are found by locks, not
by pids (containers reuse small pids): a writer holds a shared `flock` on the directory it writes
in, and a staging directory is exclusively locked by its owner. `remove_stale(dir)` takes the
directory's lock exclusively, so it only ever deletes what no live process is writing.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

# `.<name>.<pid>-<random>.tmp<suffix>` and `.staging-<label>.<pid>-<random>`
_TEMP_NAME = re.compile(r"^\..+\.(\d+)-[A-Za-z0-9_]+\.tmp[\w.]*$")
_STAGING_NAME = re.compile(r"^\.staging-.+\.(\d+)-[A-Za-z0-9_]+$")
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(OSError):
    """No space left while writing `path`; `needed` is the free space (bytes) the whole job needs."""

    def __init__(self, path: str | os.PathLike, needed: int | None = None):
        self.path, self.needed = Path(path), needed
        free = _free_bytes(self.path)
        need = f"about {format_bytes(needed)} free" if needed else "more free space"
        super().__init__(errno.ENOSPC, f"No space left on the device writing {self.path}: it needs {need} "
                         f"there ({format_bytes(free)} free). Free some space or choose another directory; "
                         "nothing half-written was kept.")

    def __str__(self) -> str:
        return self.strerror


def is_disk_full(err: BaseException) -> bool:
    """True for ENOSPC/EDQUOT, also when a library re-raised it as its own error with the text."""
    if isinstance(err, OSError) and err.errno in DISK_FULL_ERRNOS:
        return True
    text = str(err)
    return "No space left on device" in text or "Disk quota exceeded" in text


def format_bytes(n: int | None) -> str:
    if n is None:
        return "unknown"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _free_bytes(path: Path) -> int | None:
    for candidate in (path, *path.parents):
        try:
            return shutil.disk_usage(candidate).free
        except OSError:
            continue
    return None


def umask() -> int:
    """The process umask, read without changing it where Linux allows (os.umask only swaps it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a rename in `path` durable: the directory entry is data too."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a file's data to the disk, whoever wrote it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def _directory_lock(directory: Path, exclusive: bool) -> Iterator[bool]:
    """flock the directory itself: shared for writers (blocking), exclusive for cleaners (try once).

    Yields whether the caller may go on. Where a filesystem has no flock, writers go on unlocked
    and cleaners never clean (they cannot tell a live writer from a dead one)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX | fcntl.LOCK_NB) if exclusive else fcntl.LOCK_SH)
        except BlockingIOError:
            yield False
            return
        except OSError:
            yield not exclusive
            return
        yield True
    finally:
        os.close(fd)


def _unique(name: str) -> str:
    return f"{name}.{os.getpid()}-{secrets.token_hex(4)}"


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path in the target's directory; fsync it and rename it onto `path` if the
    block succeeds.

    `suffix` keeps an extension that a writer insists on (Keras wants `.keras`, `.weights.h5`).
    Writers such as Keras and h5py do not fsync, so the file is synced here, before the rename: a
    power loss can then never leave the new name on an empty or partial file.
    The file itself is not locked (HDF5 flocks the files it writes); its directory is, shared.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = path.parent / f"{_unique('.' + path.name)}.tmp{suffix}"
    with _directory_lock(path.parent, exclusive=False):
        os.close(os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # umask applies, as for open()
        try:
            yield tmp_path
            fsync_file(tmp_path)
            os.replace(tmp_path, path)
            fsync_dir(path.parent)
        finally:
            tmp_path.unlink(missing_ok=True)


@contextmanager
def staging_dir(parent: str | os.PathLike, label: str) -> Iterator[Path]:
    """A locked, uniquely named directory in `parent` to build something in; removed on exit.

    Rename what should survive out of it before the block ends. It gets the umask's mode, so what
    is renamed out of it (or the directory itself) is readable like a plain mkdir.
    """
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    with _directory_lock(parent, exclusive=False):  # a cleaner never sees it before it is locked
        path = Path(tempfile.mkdtemp(prefix=f".staging-{label}.{os.getpid()}-", dir=parent))
        os.chmod(path, 0o777 & ~umask())
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:  # new and private, so only a filesystem without flock refuses
            if isinstance(err, BlockingIOError):
                raise
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(fd)


def is_temporary(name: str) -> bool:
    """Whether `name` is a temp file or staging directory this module makes (ours to remove)."""
    return bool(_TEMP_NAME.match(name) or _STAGING_NAME.match(name))


def staging_dirs(parent: str | os.PathLike) -> list[Path]:
    """The staging directories in `parent` that a live process holds (see `staging_dir`)."""
    parent = Path(parent)
    if not parent.is_dir():
        return []
    return [p for p in parent.iterdir() if _STAGING_NAME.match(p.name) and p.is_dir() and _held(p)]


def _held(directory: Path) -> bool:
    try:
        with _directory_lock(directory, exclusive=True) as got:
            return not got
    except OSError:  # vanished meanwhile
        return False


def remove_stale(directory: str | os.PathLike) -> list[Path]:
    """Delete the temp files and staging dirs in `directory` that no live process holds.

    Does nothing (returns []) while a writer is busy in `directory`: the next call cleans up.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    with _directory_lock(directory, exclusive=True) as idle:
        if not idle:
            return []
        for path in directory.iterdir():
            if path.is_symlink():
                continue
            if path.is_dir() and _STAGING_NAME.match(path.name) and not _held(path):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
            elif path.is_file() and _TEMP_NAME.match(path.name):
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


@contextmanager
def locked(lock_file: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive flock on `lock_file` (created if missing) for the block: one process at a time."""
    lock_file = Path(lock_file)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class PendingFiles:
    """Files written beside their targets now and renamed into place together by `commit`; see
    `pending_files`."""

    def __init__(self, stack):
        self._stack, self._files, self._locked = stack, [], set()

    def _temp_for(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.parent not in self._locked:  # a cleaner leaves our temp files alone meanwhile
            self._stack.enter_context(_directory_lock(path.parent, exclusive=False))
            self._locked.add(path.parent)
        tmp = path.parent / f"{_unique('.' + path.name)}.tmp"
        self._files.append((tmp, path))
        return tmp

    def copy(self, source: str | os.PathLike, path: str | os.PathLike) -> None:
        tmp = self._temp_for(Path(path))
        shutil.copyfile(source, tmp)
        fsync_file(tmp)

    def write_json(self, path: str | os.PathLike, obj: Any) -> None:
        tmp = self._temp_for(Path(path))
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        fsync_file(tmp)

    def commit(self) -> None:
        """Rename every file into place (renames need no space), then make the renames durable."""
        for tmp, path in self._files:
            os.replace(tmp, path)
        for directory in {path.parent for _, path in self._files}:
            fsync_dir(directory)


@contextmanager
def pending_files() -> Iterator[PendingFiles]:
    """Write several files first and rename them all at the end: a write that fails (a full disk)
    leaves every target as it was. What was written but not committed is removed on exit."""
    from contextlib import ExitStack

    with ExitStack() as stack:
        pending = PendingFiles(stack)
        try:
            yield pending
        finally:
            for tmp, _ in pending._files:
                tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def copy_file_atomic(source: str | os.PathLike, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        shutil.copyfile(source, tmp)


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def sha256_of(path: str | os.PathLike) -> str:
    """SHA-256 of a file, read in 1 MiB blocks (checkpoints and exported models can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
