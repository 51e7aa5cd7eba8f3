"""errors.py: one tree, each error also the builtin that fits and naming its file; one table
of exit codes, the same in the code and in the README."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import filelock
import pytest

from dhanfeed import errors
from dhanfeed.cli.status import main as status_main
from dhanfeed.clock import SystemClock
from dhanfeed.errors import (
    DhanfeedError,
    ExitCode,
    LockBusy,
    TokenFileCorrupt,
    TokenFileMissing,
    TokenFileUnsafe,
)
from dhanfeed.sim.config_file import write_config
from dhanfeed.store import StoreError, open_store
from dhanfeed.token_store import TokenStore

README = Path(__file__).resolve().parent.parent / "README.md"


def test_every_public_error_is_a_dhanfeed_error_with_a_code_from_the_table() -> None:
    classes = [
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, BaseException)
    ]
    assert len(classes) > 10
    for cls in classes:
        assert issubclass(cls, DhanfeedError), cls
        assert cls.exit_code in ExitCode, cls


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (errors.TokenFileMissing, FileNotFoundError),
        (errors.TokenFileUnsafe, PermissionError),
        (errors.TokenFileCorrupt, ValueError),
        (errors.PrivateFileMissing, FileNotFoundError),
        (errors.UnsafeFile, PermissionError),
        (errors.TokenFormatError, ValueError),
        (errors.LockBusy, BlockingIOError),
        (errors.RunTimeout, TimeoutError),
    ],
)
def test_an_error_is_also_the_builtin_that_fits_and_keeps_its_one_line_text(error, builtin):
    exc = error("what went wrong with /srv/x", path="/srv/x")
    assert isinstance(exc, builtin)
    assert str(exc) == "what went wrong with /srv/x"
    assert exc.path == "/srv/x"


def test_a_missing_token_file_is_a_file_not_found_error_naming_the_file(tmp_path):
    store = TokenStore(tmp_path / "state" / "token.json")
    with pytest.raises(FileNotFoundError) as caught:
        store.read()
    assert isinstance(caught.value, TokenFileMissing)
    assert caught.value.path == store.path
    assert caught.value.exit_code == ExitCode.MANUAL_LOGIN


@pytest.mark.parametrize(
    ("content", "mode", "builtin", "error"),
    [
        ("{}", 0o644, PermissionError, TokenFileUnsafe),  # open to others
        ("{not json", 0o600, ValueError, TokenFileCorrupt),
    ],
)
def test_an_unusable_token_file_is_the_builtin_that_fits_naming_the_file(
    tmp_path, content, mode, builtin, error
):
    path = tmp_path / "token.json"
    path.write_text(content)
    path.chmod(mode)
    with pytest.raises(builtin) as caught:
        TokenStore(path).read()
    assert isinstance(caught.value, error)
    assert caught.value.path == path


def test_a_held_lock_is_a_blocking_io_error_naming_the_lock_file(tmp_path):
    store = TokenStore(tmp_path / "token.json")
    holder = filelock.FileLock(store.lock_path, is_singleton=False)
    with holder, pytest.raises(BlockingIOError) as caught, store.lock():
        pass
    assert isinstance(caught.value, LockBusy)
    assert caught.value.path == store.lock_path
    assert caught.value.exit_code == 75


def test_the_readme_table_lists_exactly_the_exit_codes_of_the_code() -> None:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### Exit codes") :]
    section = section[: section.index("\n###")]
    documented = {int(code) for code in re.findall(r"^\| (\d+) \|", section, re.M)}
    assert documented == {int(code) for code in ExitCode}


def test_a_store_error_names_the_database_file(tmp_path):
    missing = tmp_path / "candles.sqlite"
    with pytest.raises(StoreError, match="no database at") as caught:
        open_store(missing, readonly=True)
    assert caught.value.path == missing


class BrokenClock(SystemClock):
    def now(self) -> dt.datetime:
        raise RuntimeError("a bug")


def test_an_unexpected_error_is_exit_70_with_the_traceback(tmp_path, capsys):
    config = write_config(tmp_path, collector={"instruments": ["NSE_EQ:1333"]})
    assert status_main(["--config", str(config)], clock=BrokenClock()) == ExitCode.INTERNAL == 70
    err = capsys.readouterr().err
    assert "status: unexpected error: RuntimeError" in err and "Traceback" in err


def test_an_expected_error_is_one_line_with_its_exit_code(tmp_path, capsys):
    assert status_main(["--config", str(tmp_path / "missing.toml")]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
