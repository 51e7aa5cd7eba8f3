"""The token file: lock, read and validate, durable atomic write, recovery copy.

Knows nothing of Dhan. Writers hold `<file>.lock` (a sidecar that is never deleted, so two
runs always lock the same inode); readers never lock: `os.replace` means they see the old
file or the new one, never a mixture.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dhanfeed.errors import LockBusy, PrivateFileError, PrivateFileMissing, TokenFileError
from dhanfeed.files import read_private_file, remove_stale_temp_files, write_atomic
from dhanfeed.token import Token, TokenFormatError, fingerprint, parse_aware_time, parse_token

FILE_MODE = 0o600
DIR_MODE = 0o700
REQUIRED = ("client_id", "access_token", "expires_at")


class TokenFileMissing(TokenFileError):
    """There is no token file (yet)."""


class TokenExpired(TokenFileError):
    """The token file is fine but its token has expired."""


@dataclasses.dataclass(frozen=True)
class TokenRecord:
    """One token file: the token plus where it came from and when it was written."""

    token: Token
    source: str  # renew | totp | manual
    written_at: dt.datetime

    @property
    def client_id(self) -> str:
        return self.token.client_id

    @property
    def fingerprint(self) -> str:
        return self.token.fingerprint

    @classmethod
    def from_token(cls, token: Token, source: str, now: dt.datetime) -> TokenRecord:
        return cls(token, source, now.astimezone(dt.UTC))

    def to_json(self) -> dict[str, Any]:
        return {
            "client_id": self.token.client_id,
            "access_token": self.token.access_token,
            "expires_at": self.token.expires_at.isoformat(),
            "issued_at": self.token.issued_at.isoformat(),
            "source": self.source,
            "written_at": self.written_at.isoformat(),
            "fingerprint": self.token.fingerprint,
        }


class TokenStore:
    def __init__(self, path: os.PathLike[str] | str) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.recovery_path = self.path.with_name(self.path.name + ".recovery")

    # -- lock ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Take the writer lock without waiting; raise LockBusy when another run holds it."""
        import filelock  # lazy: only the runs that write need it

        _ensure_dir(self.path.parent)
        lock = filelock.FileLock(self.lock_path, mode=FILE_MODE, is_singleton=False)
        try:
            lock.acquire(blocking=False)
        except filelock.Timeout:
            raise LockBusy(
                f"another renew_token run holds {self.lock_path}; nothing done"
            ) from None
        try:
            yield
        finally:
            lock.release()

    # -- read ---------------------------------------------------------------------------------

    def read(self, path: Path | None = None) -> TokenRecord:
        """Read and check the token file; raise TokenFileError with one clear sentence."""
        path = path or self.path
        try:
            data = read_private_file(path, what="token file")
        except PrivateFileMissing as exc:
            raise TokenFileMissing(str(exc), path=path) from None
        except PrivateFileError as exc:
            raise TokenFileError(str(exc), path=path) from None
        try:
            raw = json.loads(data)
        except (UnicodeDecodeError, ValueError):
            raise TokenFileError(f"token file {path} is not valid JSON (corrupt?)") from None
        if not isinstance(raw, dict):
            raise TokenFileError(f"token file {path} is not a JSON object")
        missing = [key for key in REQUIRED if not raw.get(key)]
        if missing:
            raise TokenFileError(f"token file {path} lacks {', '.join(missing)}")
        try:
            token = parse_token(str(raw["access_token"]))
        except TokenFormatError as exc:
            raise TokenFileError(f"token file {path}: access_token is unreadable: {exc}") from None
        if str(raw["client_id"]) != token.client_id:
            raise TokenFileError(
                f"token file {path}: client_id {raw['client_id']} does not match the token's "
                f"client {token.client_id}"
            )
        if raw.get("fingerprint") and raw["fingerprint"] != fingerprint(token.access_token):
            raise TokenFileError(f"token file {path}: fingerprint does not match the token")
        source = str(raw.get("source") or "manual")
        return TokenRecord(
            token, source, parse_aware_time(raw.get("written_at")) or token.issued_at
        )

    def read_for(self, client_id: str) -> TokenRecord:
        """`read()`, and the token must belong to `client_id` (the config's)."""
        record = self.read()
        if record.client_id != client_id:
            raise TokenFileError(
                f"token file {self.path} is for client {record.client_id}, "
                f"the config says {client_id}"
            )
        return record

    # -- write --------------------------------------------------------------------------------

    def write(self, record: TokenRecord) -> None:
        """Durable, atomic replace: temp file (0600) in the same directory, fsync, rename.

        Call under `lock()`: leftovers of a run killed mid-write are removed first.
        """
        remove_stale_temp_files(self.path)
        write_atomic(self.path, _encode(record), mode=FILE_MODE, dir_mode=DIR_MODE)

    def write_recovery(self, record: TokenRecord) -> None:
        write_atomic(self.recovery_path, _encode(record), mode=FILE_MODE, dir_mode=DIR_MODE)


def current_token(path: os.PathLike[str] | str, *, now: dt.datetime | None = None) -> Token:
    """The public API for users' programs: read the token file, check it, return the Token.

    Raises TokenFileError (missing, unreadable, unsafe permissions, a symlink, corrupt) or its
    subclass TokenExpired. Cheap enough to call again after every HTTP 401.
    """
    record = TokenStore(path).read()
    now = now or dt.datetime.now(dt.UTC)
    if record.token.expired(now):
        raise TokenExpired(
            f"token in {path} ({record.fingerprint}) expired at "
            f"{record.token.expires_at.isoformat()}; is renew_token running?"
        )
    return record.token


def _encode(record: TokenRecord) -> bytes:
    return (json.dumps(record.to_json(), indent=2) + "\n").encode("utf-8")


def _ensure_dir(directory: Path) -> None:
    directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
