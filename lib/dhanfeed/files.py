"""Files that hold state or secrets: the atomic write, and the refusing read of a private file.

Write: temp file `.NAME.*.tmp` in the same directory (so the rename is atomic), the final mode
set before any data is written, fsync, `os.replace`, then fsync of the directory so the rename
itself survives a power cut. A failure leaves the old file untouched and no temp behind.
`reserve` goes one step further for a write that must not fail later (a token Dhan has just
issued): the temp file's blocks are allocated and fsynced up front, so that writing into them
and renaming cannot run out of space. (Copy-on-write filesystems such as btrfs and ZFS make
no such promise; ext4, XFS and tmpfs do.)

Read: a private file (the token file, a PIN or TOTP seed file) must be a regular file, not a
symlink, with no group/other access, like ssh's StrictModes; the caller turns the neutral
errors raised here into its own (a token-file error, a credentials error).

State: a small JSON object kept only to save work (alert de-duplication, Dhan's last word on
a token): an unreadable one is a warning and starts afresh, a failed save is a warning; losing
it costs a repeat next run, never the run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

from dhanfeed.errors import PrivateFileError, PrivateFileMissing, UnsafeFile
from dhanfeed.shield import shielded

logger = logging.getLogger(__name__)

TEMP_PREFIX = "."
TEMP_SUFFIX = ".tmp"


@shielded()  # a run timeout waits until the file is replaced (or left intact)
def write_atomic(path: Path, data: bytes, *, mode: int = 0o600, dir_mode: int = 0o700) -> None:
    """Replace `path` with `data`; raise OSError (old file intact) when that fails."""
    path.parent.mkdir(mode=dir_mode, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f"{TEMP_PREFIX}{path.name}.", suffix=TEMP_SUFFIX
    )
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


class Reserved:
    """A temp file next to its target whose `size` bytes are allocated on disk already.

    `fill` overwrites the allocated blocks (then shrinks the file to the data, which frees
    blocks and never needs one); `commit` renames it onto a target in the same directory.
    A filled file that was never committed is left in place: it may hold the only copy of
    what was written (see `leftover_temp_files`).
    """

    def __init__(self, file: BinaryIO, path: Path, size: int) -> None:
        self._file: BinaryIO | None = file
        self.path = path
        self.size = size
        self.filled = False

    @shielded()
    def fill(self, data: bytes) -> None:
        if len(data) > self.size:
            raise ValueError(f"{len(data)} bytes do not fit the {self.size} reserved")
        f = self._file
        assert f is not None, "already committed or discarded"
        f.seek(0)
        f.write(data)
        f.truncate(len(data))
        f.flush()
        os.fsync(f.fileno())
        self.filled = True

    @shielded()
    def commit(self, target: Path) -> None:
        """Rename onto `target` (same directory) and make the rename durable."""
        os.replace(self.path, target)
        self._close()
        fsync_dir(target.parent)

    def discard(self) -> None:
        self._close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)

    def _close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None

    def __enter__(self) -> Reserved:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.filled:
            self._close()  # committed, or the only copy of the data: keep it
        else:
            self.discard()


def reserve(path: Path, size: int, *, mode: int = 0o600, dir_mode: int = 0o700) -> Reserved:
    """Allocate (and fsync) `size` bytes in a temp file beside `path`; raise OSError
    (nothing left behind) when the directory cannot be written or lacks the space."""
    path.parent.mkdir(mode=dir_mode, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f"{TEMP_PREFIX}{path.name}.", suffix=TEMP_SUFFIX
    )
    try:
        os.fchmod(fd, mode)
        f = os.fdopen(fd, "r+b")
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    try:
        # Written, not fallocated: random bytes leave a compressing filesystem no hole to
        # make, and fsync makes a delayed-allocation one (ext4) take the blocks now.
        f.write(os.urandom(size))
        f.flush()
        os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            f.close()  # may fail again (ENOSPC on the flush); the fd is closed regardless
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
    return Reserved(f, Path(tmp), size)


def free_space(directory: Path) -> int | None:
    """Bytes an unprivileged writer may still use in `directory` (None when unknown)."""
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return None


def fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot fsync a directory; the rename is still atomic
    finally:
        os.close(fd)


def leftover_temp_files(path: Path) -> list[Path]:
    """Temp files of `path` left by a process killed mid-write or a rename that failed."""
    return sorted(path.parent.glob(f"{TEMP_PREFIX}{path.name}.*{TEMP_SUFFIX}"))


def remove_stale_temp_files(path: Path) -> int:
    """Temp files of `path` left by a process killed mid-write (call under the writer's lock)."""
    removed = 0
    for stale in leftover_temp_files(path):
        with contextlib.suppress(OSError):
            stale.unlink()
            removed += 1
    return removed


def read_private_file(path: Path, *, what: str) -> bytes:
    """The bytes of `path`; PrivateFileMissing, UnsafeFile or PrivateFileError naming `what`."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise PrivateFileMissing(f"no {what} at {path}", path=path) from None
    except OSError as exc:
        raise PrivateFileError(f"cannot read {what} {path}: {exc.strerror}", path=path) from None
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeFile(f"{what} {path} is a symlink; refusing it (use a regular file)", path=path)
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeFile(f"{what} {path} is not a regular file", path=path)
    if st.st_mode & 0o077:
        raise UnsafeFile(
            f"{what} {path} is accessible by group or others (mode "
            f"{stat.S_IMODE(st.st_mode):04o}); refusing it; run: chmod 600 {path}",
            path=path,
        )
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise PrivateFileError(f"cannot read {what} {path}: {exc.strerror}", path=path) from None
    with os.fdopen(fd, "rb") as f:
        return f.read()


def load_state(path: Path, *, what: str) -> dict[str, Any]:
    """The JSON object in `path`; {} when it is missing, unreadable or not an object."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        logger.warning("%s %s is unreadable; starting afresh", what, path)
        return {}
    return raw if isinstance(raw, dict) else {}


def save_state(path: Path, state: dict[str, Any], *, what: str) -> None:
    """Write `state` atomically; a failure is only a warning."""
    try:
        write_atomic(path, (json.dumps(state, indent=2) + "\n").encode("utf-8"))
    except OSError as exc:
        logger.warning("cannot save %s %s: %s", what, path, exc.strerror or exc)
