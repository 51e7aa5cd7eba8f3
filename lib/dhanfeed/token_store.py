"""The token file: lock, read and validate, durable atomic write, recovery copy.

Knows nothing of Dhan. Writers hold `<file>.lock` (a sidecar that is never deleted, so two
runs always lock the same inode); readers never lock: `os.replace` means they see the old
file or the new one, never a mixture.

A token that must not be lost (Dhan has just issued it, and so killed the old one) is
written through `reserve()`: the temp file's blocks are allocated before Dhan is asked, so
saving the answer cannot run out of space. Whatever cannot go into the token file (a
rejected answer, a rename that failed) stays in `<file>.recovery` or in the temp file itself,
0600, for the next run: `recovery_candidates()`.
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

import filelock

from dhanfeed.errors import (
    LockBusy,
    PrivateFileError,
    PrivateFileMissing,
    TokenDirUnwritable,
    TokenExpired,
    TokenFileCorrupt,
    TokenFileError,
    TokenFileMissing,
    TokenFileUnsafe,
    TokenFormatError,
    UnsafeFile,
)
from dhanfeed.files import (
    Reserved,
    free_space,
    fsync_dir,
    leftover_temp_files,
    read_private_file,
    remove_stale_temp_files,
    reserve,
    write_atomic,
)
from dhanfeed.shield import shielded
from dhanfeed.token import Token, fingerprint, parse_aware_time, parse_token

FILE_MODE = 0o600
DIR_MODE = 0o700
REQUIRED = ("client_id", "access_token", "expires_at")
RESERVE_BYTES = 16 * 1024  # a token record is about 1 KiB; the rest is margin


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
        """Take the writer lock without waiting; raise LockBusy when another run holds it,
        TokenDirUnwritable when the directory cannot hold it (read-only, not a directory)."""
        lock = filelock.FileLock(self.lock_path, mode=FILE_MODE, is_singleton=False)
        try:
            _ensure_dir(self.path.parent)
            lock.acquire(blocking=False)
        except filelock.Timeout:
            raise LockBusy(
                f"another renew_token run holds {self.lock_path}; nothing done",
                path=self.lock_path,
            ) from None
        except OSError as exc:
            raise TokenDirUnwritable(
                self.path.parent,
                exc,
                free_space(self.path.parent),
                needed=RESERVE_BYTES,
                what="take the lock",
            ) from None
        try:
            yield
        finally:
            with shielded():  # a run timeout never leaves the lock half released
                lock.release()

    # -- read ---------------------------------------------------------------------------------

    def read(self, path: Path | None = None) -> TokenRecord:
        """Read and check the token file; raise TokenFileError with one clear sentence."""
        path = path or self.path
        try:
            data = read_private_file(path, what="token file")
        except PrivateFileMissing as exc:
            raise TokenFileMissing(str(exc), path=path) from None
        except UnsafeFile as exc:
            raise TokenFileUnsafe(str(exc), path=path) from None
        except PrivateFileError as exc:
            raise TokenFileError(str(exc), path=path) from None
        try:
            raw = json.loads(data)
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise TokenFileCorrupt(
                f"token file {path} is not valid JSON (corrupt?)", path=path
            ) from None
        if not isinstance(raw, dict):
            raise TokenFileCorrupt(f"token file {path} is not a JSON object", path=path)
        missing = [key for key in REQUIRED if not raw.get(key)]
        if missing:
            raise TokenFileCorrupt(f"token file {path} lacks {', '.join(missing)}", path=path)
        try:
            token = parse_token(
                str(raw["access_token"]), expires_hint=parse_aware_time(raw["expires_at"])
            )
        except TokenFormatError as exc:
            raise TokenFileCorrupt(
                f"token file {path}: access_token is unreadable: {exc}", path=path
            ) from None
        if str(raw["client_id"]) != token.client_id:
            raise TokenFileError(
                f"token file {path}: client_id {raw['client_id']} does not match the token's "
                f"client {token.client_id}",
                path=path,
            )
        if raw.get("fingerprint") and raw["fingerprint"] != fingerprint(token.access_token):
            raise TokenFileCorrupt(
                f"token file {path}: fingerprint does not match the token", path=path
            )
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
                f"the config says {client_id}",
                path=self.path,
            )
        return record

    # -- write --------------------------------------------------------------------------------

    def write(self, record: TokenRecord) -> None:
        """Durable, atomic replace: temp file (0600) in the same directory, fsync, rename.

        Call under `lock()`: leftovers of a run killed mid-write are removed first, and a
        recovery copy is superseded by the token written now.
        """
        remove_stale_temp_files(self.path)
        write_atomic(self.path, _encode(record), mode=FILE_MODE, dir_mode=DIR_MODE)
        self.recovery_path.unlink(missing_ok=True)

    def write_recovery(self, record: TokenRecord) -> None:
        write_atomic(self.recovery_path, _encode(record), mode=FILE_MODE, dir_mode=DIR_MODE)

    # -- the write that must not fail: reserve before asking Dhan, then save ------------------

    def reserve(self) -> Reserved:
        """Prove that a new token file can be written: allocate its temp file now.

        Call under `lock()`, before asking Dhan. Raise TokenDirUnwritable naming the
        directory and its free space.
        """
        try:
            return reserve(self.path, RESERVE_BYTES, mode=FILE_MODE, dir_mode=DIR_MODE)
        except OSError as exc:
            raise TokenDirUnwritable(
                self.path.parent, exc, free_space(self.path.parent), needed=RESERVE_BYTES
            ) from None

    def save(self, slot: Reserved, record: TokenRecord) -> Path:
        """Write `record` into the reserved file and install it as the token file.

        The data is on disk (fsynced) before the rename is tried, so a failing rename still
        leaves it recoverable: moved to the recovery path, or else left in the temp file.
        Return where it is; raise OSError (after keeping the data) only if even `fill` failed.
        """
        slot.fill(_encode(record))
        try:
            slot.commit(self.path)
        except OSError:
            return self._keep(slot)
        self.recovery_path.unlink(missing_ok=True)  # whatever earlier runs kept is superseded
        remove_stale_temp_files(self.path)
        return self.path

    def save_rejected(self, slot: Reserved, data: dict[str, Any]) -> Path:
        """Keep an answer that must not become the token file (0600) for the next run."""
        slot.fill((json.dumps(data, indent=2) + "\n").encode("utf-8"))
        return self._keep(slot)

    def _keep(self, slot: Reserved) -> Path:
        try:
            slot.commit(self.recovery_path)
        except OSError:
            return slot.path  # the filled temp file is kept: `recovery_candidates` finds it
        return self.recovery_path

    def recovery_candidates(self) -> list[Path]:
        """Files that may hold a token Dhan issued but no run installed, newest first."""
        found = [p for p in leftover_temp_files(self.path) if _holds_a_token(p)]
        if self.recovery_path.is_file():
            found.append(self.recovery_path)
        return sorted(found, key=_mtime, reverse=True)

    def install(self, candidate: Path) -> None:
        """Make a recovery candidate the token file: a rename (no space needed), durable."""
        os.replace(candidate, self.path)
        fsync_dir(self.path.parent)


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
            f"{record.token.expires_at.isoformat()}; is renew_token running?",
            path=path,
        )
    return record.token


def rejected_record(
    access_token: str, *, client_id: str, source: str, problem: str, now: dt.datetime,
    expires_hint: dt.datetime | None,
) -> dict[str, Any]:  # fmt: skip
    """The recovery file for an answer that the checks refused: the raw token, and why."""
    return {
        "client_id": client_id,
        "access_token": access_token,
        "expires_at": expires_hint.isoformat() if expires_hint else None,
        "source": source,
        "written_at": now.astimezone(dt.UTC).isoformat(),
        "fingerprint": fingerprint(access_token),
        "rejected": problem,
    }


def _holds_a_token(path: Path) -> bool:
    """A leftover temp file worth keeping: it got as far as holding a token (not just the
    reserved bytes of a run that never heard back from Dhan)."""
    try:
        with open(path, "rb") as f:
            return b'"access_token"' in f.read(RESERVE_BYTES)
    except OSError:
        return False


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _encode(record: TokenRecord) -> bytes:
    return (json.dumps(record.to_json(), indent=2) + "\n").encode("utf-8")


def _ensure_dir(directory: Path) -> None:
    directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
