"""The error tree and the exit-code table shared by every executable (a leaf).

Every program maps a `DhanfeedError` to its `exit_code` and prints it as one line; anything
else is a bug: "unexpected error", a traceback, exit 70. Where a builtin fits, an error is
also that builtin (`TokenFileMissing` is a `FileNotFoundError`, `LockBusy` a
`BlockingIOError`, ...) so callers may catch either, and it carries the file it is about as
`.path`. Exceptions that never leave their part (the feed's `ConnectFailed`, the
renewer's `RenewalFailed` and `Rejected`) stay beside their code.

    DhanfeedError                      exit 1 unless a subclass says otherwise
    ├── UsageError                     2  bad arguments
    │   └── CredentialsError           2  PIN / TOTP seed unusable
    ├── ConfigError                    2  every problem in the config, each with its key
    ├── PrivateFileError (OSError)     2  a private file cannot be read (owners re-raise)
    │   ├── PrivateFileMissing (FileNotFoundError)
    │   └── UnsafeFile (PermissionError)
    ├── TokenFileError                 3  the token file cannot be used
    │   ├── TokenFileMissing (FileNotFoundError)
    │   ├── TokenFileUnsafe (PermissionError)
    │   ├── TokenFileCorrupt (ValueError)
    │   └── TokenExpired
    ├── TokenRefused                   3  Dhan refused a token (401 / DH-901)
    ├── TokenFormatError (ValueError)  1  a string that is not a Dhan JWT
    ├── LockBusy (BlockingIOError)     75 another run holds the lock
    ├── RunTimeout (TimeoutError)      1  the run took longer than run_timeout
    ├── DhanApiError                   1  Dhan or the network to it said no
    │   └── MalformedAnswer            1  a success status with a body we cannot use
    ├── TokenDirUnwritable (OSError)   1  no room for a new token file: Dhan is not asked
    ├── StoreError                     1  the candle database cannot be opened, read or written
    └── NoData                         1  nothing to export
"""

from __future__ import annotations

import enum
import os
from pathlib import Path


class ExitCode(enum.IntEnum):
    """One table for every program (README "Exit codes")."""

    OK = 0  # done: token fine or renewed; collector stopped cleanly; candles written; healthy
    FAILED = 1  # not done this time, nothing lost; a later run may succeed (status: degraded)
    RENEWAL_FAILED = 1  # renew_token's name for FAILED: the current token is still valid
    USAGE = 2  # usage or configuration error
    MANUAL_LOGIN = 3  # no valid token and no automatic way to get one: a person must act
    INTERNAL = 70  # an unexpected internal error (EX_SOFTWARE); units do not restart on it
    LOCKED = 75  # another run holds the lock (EX_TEMPFAIL)


Where = os.PathLike[str] | str | None


class DhanfeedError(Exception):
    """An expected failure: printed as one line, mapped to an exit code."""

    exit_code: ExitCode = ExitCode.FAILED

    def __init__(self, message: str, *, path: Where = None) -> None:
        super().__init__(message)
        self.path = path  # the file the error is about, when there is one


class UsageError(DhanfeedError):
    exit_code = ExitCode.USAGE


class CredentialsError(UsageError):
    """PIN/TOTP configuration is unusable (exit 2)."""


class ConfigError(DhanfeedError):
    """Every problem found in a config file, one per line, each with its key."""

    exit_code = ExitCode.USAGE

    def __init__(self, path: Where, problems: list[str]) -> None:
        self.problems = list(problems)
        if len(self.problems) == 1:  # one problem, one line
            message = f"bad config {path}: {self.problems[0]}"
        else:  # every problem at once, each on its own line with its key
            lines = "\n".join(f"  {p}" for p in self.problems)
            message = f"bad config {path}: {len(self.problems)} problems:\n{lines}"
        super().__init__(message, path=path)


class PrivateFileError(DhanfeedError, OSError):
    """A private file (token, PIN, TOTP seed) cannot be read; its owner re-raises it as its own."""

    exit_code = ExitCode.USAGE


class PrivateFileMissing(PrivateFileError, FileNotFoundError):
    """There is no file at the path."""


class UnsafeFile(PrivateFileError, PermissionError):
    """A symlink, not a regular file, or readable by group or others: refused, not used."""


class TokenFileError(DhanfeedError):
    """The token file is missing, unreadable, corrupt, unsafe or expired."""

    exit_code = ExitCode.MANUAL_LOGIN


class TokenFileMissing(TokenFileError, FileNotFoundError):
    """There is no token file (yet)."""


class TokenFileUnsafe(TokenFileError, PermissionError):
    """A symlink, not a regular file, or open to group or others: refused like ssh does."""


class TokenFileCorrupt(TokenFileError, ValueError):
    """The token file is there, private and ours to replace, but its content is unreadable."""


class TokenExpired(TokenFileError):
    """The token file is fine but its token has expired."""


class TokenRefused(DhanfeedError):
    """Dhan refused a token (HTTP 401 / DH-901): a person must get another one."""

    exit_code = ExitCode.MANUAL_LOGIN


class TokenFormatError(DhanfeedError, ValueError):
    """A string that is not a readable Dhan JWT (the text never holds the token)."""


class LockBusy(DhanfeedError, BlockingIOError):
    """Another run holds the lock at `.path`; nothing was done."""

    exit_code = ExitCode.LOCKED


class RunTimeout(DhanfeedError, TimeoutError):
    """The whole run took longer than its bound."""


class DhanApiError(DhanfeedError):
    """Dhan (or the network to it) answered with something other than success.

    `code` is Dhan's error code (e.g. "DH-901") when the body had one; `status` the HTTP
    status or None when no answer came; `retryable` whether trying again may help.
    """

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


class MalformedAnswer(DhanApiError):
    """A success status with a body we cannot use (not JSON, not an object, no token):
    Dhan's side misbehaved, not our credentials, so a later try may well succeed."""


class TokenDirUnwritable(DhanfeedError, OSError):
    """The token's directory cannot take a new token file (full, read-only, not a directory).

    Raised before Dhan is asked for anything: the current token is untouched.
    """

    def __init__(
        self,
        directory: Path,
        cause: OSError,
        free: int | None,
        *,
        needed: int,
        what: str = "prepare a new token file",
    ) -> None:
        room = "unknown" if free is None else f"{free} bytes"
        super().__init__(
            f"cannot {what} in {directory} ({cause.strerror or cause}; "
            f"free space: {room}, {needed} needed)",
            path=directory,
        )
        self.directory = directory
        self.free = free


class StoreError(DhanfeedError):
    """The candle database cannot be opened, written or read (names the path)."""


class StoreUnavailable(StoreError):
    """A database server cannot be reached now (down, restarting, network cut): it may come back,
    so a collector waits for it. A refusal (bad password, no such database) is a `StoreError`."""


class NoData(DhanfeedError):
    """The database has no candles for what was asked."""
