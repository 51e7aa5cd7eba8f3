"""Files that hold state or secrets: the atomic write, and the refusing read of a private file.

Write: temp file `.NAME.*.tmp` in the same directory (so the rename is atomic), the final mode
set before any data is written, fsync, `os.replace`, then fsync of the directory so the rename
itself survives a power cut. A failure leaves the old file untouched and no temp behind.

Read: a private file (the token file, a PIN or TOTP seed file) must be a regular file, not a
symlink, with no group/other access, like ssh's StrictModes; the caller turns the neutral
errors raised here into its own (a token-file error, a credentials error).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from dhanfeed.errors import PrivateFileError, PrivateFileMissing, UnsafeFile

TEMP_PREFIX = "."
TEMP_SUFFIX = ".tmp"


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


def remove_stale_temp_files(path: Path) -> int:
    """Temp files of `path` left by a process killed mid-write (call under the writer's lock)."""
    removed = 0
    for stale in path.parent.glob(f"{TEMP_PREFIX}{path.name}.*{TEMP_SUFFIX}"):
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
