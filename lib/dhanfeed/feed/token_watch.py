"""Notice a new token in the token file, within a second, without trusting inotify.

`bin/renew_token` replaces the file by rename, so the path is polled with `os.stat` and a
change of (inode, mtime_ns, size) triggers a read. A file that does not parse, is expired,
belongs to another client id or holds the token already in use is ignored (logged once per
version of the file). Readers never lock: a rename makes the swap atomic.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from dhanfeed.errors import TokenFileError
from dhanfeed.token import Token
from dhanfeed.token_store import TokenStore

logger = logging.getLogger(__name__)

Signature = tuple[int, int, int, int]  # (device, inode, mtime_ns, size)


class TokenRejected(ValueError):
    """The token file holds nothing we may use. The message never holds the token."""


def file_signature(path: Path) -> Signature | None:
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:  # a symlink loop, no permission: there, but unusable (read says why)
        return (-1, -1, -1, exc.errno or 0)
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


def read_token_file(path: Path, client_id: str, now: dt.datetime) -> Token:
    """Read and check the token file as renew_token does (JSON, permissions, no symlink), then
    require our client id and a future expiry; raise TokenRejected saying why not."""
    try:
        token = TokenStore(path).read().token
    except TokenFileError as exc:
        raise TokenRejected(str(exc)) from None
    if token.client_id != client_id:
        raise TokenRejected(f"token belongs to client id {token.client_id}, not {client_id}")
    if token.expired(now):
        raise TokenRejected(f"token {token.fingerprint} expired at {token.expires_at.isoformat()}")
    return token


class TokenWatcher:
    """Polls the token file; `current` is the token in use; `on_change(token)` on a new one."""

    def __init__(
        self,
        path: Path,
        client_id: str,
        *,
        poll_s: float = 0.1,
        clock: Callable[[], dt.datetime],  # the program's clock (`Clock.now`)
        on_change: Callable[[Token], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.client_id = client_id
        self.poll_s = poll_s
        self.clock = clock
        self.on_change = on_change
        self.current: Token | None = None
        self.missing = False  # the file is not there (the last time we looked)
        self.problem: str | None = None  # why the file's token is not in use (for alerts)
        self.changed = threading.Condition()
        self._seen: Signature | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> Token | None:
        """One poll: return the new token if the file changed to a usable, different one."""
        sig = file_signature(self.path)
        self.missing = sig is None
        if self.missing:
            self.problem = "the file does not exist"
        if sig is None or sig == self._seen:
            return None
        self._seen = sig
        return self._accept_file()

    def reread(self) -> Token | None:
        """Read the file now whatever its stat says (after an auth failure); a new token or None."""
        self._seen = file_signature(self.path)
        self.missing = self._seen is None
        return None if self.missing else self._accept_file()

    def wait_for_change(self, fingerprint: str | None, timeout: float) -> Token | None:
        """Block until `current` is a token other than `fingerprint`, or the timeout ends."""
        with self.changed:
            self.changed.wait_for(
                lambda: self.current is not None and self.current.fingerprint != fingerprint,
                timeout,
            )
            return self.current

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="token-watch", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    # -- internals -------------------------------------------------------------------------

    def _accept_file(self) -> Token | None:
        try:
            token = read_token_file(self.path, self.client_id, self.clock())
        except TokenRejected as exc:
            logger.warning("token file %s ignored: %s", self.path, exc)
            self.problem = str(exc)
            return None
        self.problem = None
        if self.current is not None and token.access_token == self.current.access_token:
            logger.info(
                "token file %s rewritten with the token in use (%s)", self.path, token.fingerprint
            )
            return None
        old = self.current.fingerprint if self.current else None
        with self.changed:
            self.current = token
            self.changed.notify_all()
        logger.info(
            "new token %s (was %s), expires %s",
            token.fingerprint,
            old,
            token.expires_at.isoformat(),
            extra={"token_fp": token.fingerprint, "old_token_fp": old},
        )
        if self.on_change is not None:
            self.on_change(token)
        return token

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.check()
            except Exception:  # noqa: BLE001 - the watch must outlive one bad read
                logger.exception("token watch: unexpected error")
