"""The error tree and the exit-code table shared by every executable."""

from __future__ import annotations

import enum
import os


class ExitCode(enum.IntEnum):
    OK = 0  # token valid and not due, postponed, or renewed
    RENEWAL_FAILED = 1  # an attempt failed; the current token is still valid; next run retries
    USAGE = 2  # usage or configuration error
    MANUAL_LOGIN = 3  # no valid token and no automatic way to get one
    LOCKED = 75  # another run holds the lock (EX_TEMPFAIL)


class DhanfeedError(Exception):
    """An expected failure: printed as one line, mapped to an exit code."""

    exit_code: ExitCode = ExitCode.RENEWAL_FAILED

    def __init__(self, message: str, *, path: os.PathLike[str] | str | None = None) -> None:
        super().__init__(message)
        self.path = path  # the file the error is about, when there is one


class ConfigError(DhanfeedError):
    """Every problem found in a config file, one per line, each with its key."""

    exit_code = ExitCode.USAGE

    def __init__(self, path: os.PathLike[str] | str | None, problems: list[str]) -> None:
        self.problems = list(problems)
        if len(self.problems) == 1:  # one problem, one line
            message = f"bad config {path}: {self.problems[0]}"
        else:  # every problem at once, each on its own line with its key
            lines = "\n".join(f"  {p}" for p in self.problems)
            message = f"bad config {path}: {len(self.problems)} problems:\n{lines}"
        super().__init__(message, path=path)


class UsageError(DhanfeedError):
    exit_code = ExitCode.USAGE


class TokenFileError(DhanfeedError):
    """The token file is missing, unreadable, corrupt, unsafe or expired."""

    exit_code = ExitCode.MANUAL_LOGIN


class TokenRefused(DhanfeedError):
    """Dhan refused a token (HTTP 401 / DH-901): a person must get another one."""

    exit_code = ExitCode.MANUAL_LOGIN


class LockBusy(DhanfeedError):
    exit_code = ExitCode.LOCKED


class DhanApiError(DhanfeedError):
    """Dhan (or the network to it) answered with something other than success.

    `code` is Dhan's error code (e.g. "DH-901") when the body had one; `status` the HTTP
    status or None when no answer came; `retryable` whether trying again may help.
    """

    exit_code = ExitCode.RENEWAL_FAILED

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.retryable = retryable


class StoreError(DhanfeedError):
    """The candle database cannot be opened, written or read (names the path)."""

    exit_code = ExitCode.RENEWAL_FAILED  # 1


class PrivateFileError(DhanfeedError, OSError):
    """A private file (token, PIN, TOTP seed) cannot be read; its owner re-raises it as its own."""

    exit_code = ExitCode.USAGE


class PrivateFileMissing(PrivateFileError, FileNotFoundError):
    """There is no file at the path."""


class UnsafeFile(PrivateFileError, PermissionError):
    """A symlink, not a regular file, or readable by group or others: refused, not used."""
