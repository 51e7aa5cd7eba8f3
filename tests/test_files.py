"""files.py: the atomic write and the refusing read of a private file (pyfakefs for layout).

The token file's own behaviour (what its errors mean, a full disk, SIGKILL mid-write, twenty
runs at once) is in test_token_store.py; here the neutral layer that it and the PIN/TOTP
files share.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dhanfeed.errors import PrivateFileError, PrivateFileMissing, UnsafeFile
from dhanfeed.files import read_private_file, remove_stale_temp_files, write_atomic

SECRET = Path("/etc/dhanfeed/pin")


def private_file(fs, mode: int = 0o600) -> Path:  # noqa: ANN001
    fs.create_file(SECRET, contents="1234\n")
    os.chmod(SECRET, mode)
    return SECRET


def test_a_private_file_is_read_whole(fs):
    assert read_private_file(private_file(fs), what="PIN file") == b"1234\n"


def test_a_missing_file_is_a_file_not_found_error_naming_what_and_where(fs):
    with pytest.raises(PrivateFileMissing, match="no PIN file at /etc/dhanfeed/pin") as caught:
        read_private_file(SECRET, what="PIN file")
    assert isinstance(caught.value, FileNotFoundError)
    assert caught.value.path == SECRET


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_a_file_others_can_read_is_a_permission_error_that_says_how_to_fix_it(fs, mode):
    path = private_file(fs, mode)
    with pytest.raises(UnsafeFile, match=r"PIN file .* group or others .*chmod 600") as caught:
        read_private_file(path, what="PIN file")
    assert isinstance(caught.value, PermissionError)
    assert caught.value.path == path


def test_a_symlink_is_refused_even_to_a_private_file(fs):
    private_file(fs)
    os.symlink(SECRET, "/etc/dhanfeed/link")
    with pytest.raises(UnsafeFile, match="is a symlink"):
        read_private_file(Path("/etc/dhanfeed/link"), what="PIN file")


def test_a_directory_is_refused(fs):
    fs.create_dir("/etc/dhanfeed/pin")
    with pytest.raises(UnsafeFile, match="not a regular file"):
        read_private_file(SECRET, what="PIN file")


def test_every_refusal_is_one_private_file_error(fs):
    assert issubclass(PrivateFileMissing, PrivateFileError)
    assert issubclass(UnsafeFile, PrivateFileError)
    with pytest.raises(PrivateFileError):
        read_private_file(Path("/nowhere"), what="file")


def test_the_atomic_write_sets_the_mode_before_the_data_and_creates_the_directory(fs):
    target = Path("/srv/state/status.json")
    write_atomic(target, b"{}", mode=0o644, dir_mode=0o755)
    assert target.read_bytes() == b"{}"
    assert os.stat(target).st_mode & 0o777 == 0o644
    assert os.stat(target.parent).st_mode & 0o777 == 0o755
    assert os.listdir(target.parent) == ["status.json"]


def test_a_failed_atomic_write_keeps_the_old_file_and_leaves_no_temp(fs):
    target = Path("/srv/state/status.json")
    write_atomic(target, b"old")
    fs.set_disk_usage(fs.get_disk_usage().used + 16)
    with pytest.raises(OSError):
        write_atomic(target, b"new" * 100)
    assert target.read_bytes() == b"old"
    assert os.listdir(target.parent) == ["status.json"]


def test_temp_files_left_by_a_killed_writer_are_removed_and_counted(fs):
    target = Path("/srv/state/token.json")
    fs.create_file("/srv/state/.token.json.abc123.tmp")
    fs.create_file("/srv/state/.token.json.def456.tmp")
    fs.create_file("/srv/state/.other.json.xyz.tmp")  # another file's temp: not ours to remove
    assert remove_stale_temp_files(target) == 2
    assert sorted(os.listdir("/srv/state")) == [".other.json.xyz.tmp"]
