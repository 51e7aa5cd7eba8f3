"""Tokens Dhan issued that a run could not make the token file.

Dhan kills the old token the moment it issues a new one, so its answer is saved (fsynced, 0600)
before it is even checked (`raw_answer`); if the run then dies or cannot rename the file into
place, the next run installs it (`recover`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from dhanfeed.errors import TokenFileError, TokenFormatError
from dhanfeed.token import parse_aware_time, parse_token
from dhanfeed.token_store import TokenRecord, rejected_record

if TYPE_CHECKING:
    from dhanfeed.dhan_api import IssuedToken
    from dhanfeed.token_store import TokenStore

logger = logging.getLogger(__name__)


def recover(store: TokenStore, client_id: str, now: dt.datetime) -> None:
    """Install a token an earlier run saved but could not make the token file (recovery
    file, or a temp file whose rename failed); drop those older than the token file. A
    rejected answer stays for a person to see (the run that kept it marked the token it
    replaced as refused)."""
    try:
        current: TokenRecord | None = store.read()
    except TokenFileError:
        current = None
    for path in store.recovery_candidates():  # newest first
        try:
            saved: TokenRecord | None = store.read(path)
        except TokenFileError:
            saved = None
        if saved is not None and _installable(saved, current, client_id, now):
            try:
                store.install(path)
            except OSError as exc:
                logger.warning("%s not installed: %s", path, exc.strerror or exc)
                return
            logger.warning("installed token %s from %s", saved.fingerprint, path)
            current = saved
        elif current is not None and _saved_at(path) <= current.written_at:
            path.unlink(missing_ok=True)  # older than the token file: superseded


def _installable(
    saved: TokenRecord, current: TokenRecord | None, client_id: str, now: dt.datetime
) -> bool:
    if saved.client_id != client_id or saved.token.expired(now):
        return False
    if current is None or current.client_id != saved.client_id:
        return True
    # Dhan issued the saved token after the current one (and so killed it), unless a
    # person has installed a newer one since; tokens issued in the same second included.
    return (
        saved.fingerprint != current.fingerprint
        and saved.token.issued_at >= current.token.issued_at
    )


def raw_answer(issued: IssuedToken, client_id: str, source: str, now: dt.datetime) -> bytes:
    """Dhan's answer as a recovery record, before it is checked."""
    expires = issued.expiry_time
    try:
        token = parse_token(issued.access_token, expires_hint=expires)
        client_id, expires = token.client_id, token.expires_at
    except TokenFormatError:
        pass
    data = rejected_record(
        issued.access_token, client_id=client_id, source=source, now=now, expires_hint=expires,
        problem="not checked yet: the run stopped before it could check it",
    )  # fmt: skip
    return (json.dumps(data, indent=2) + "\n").encode("utf-8")


def _saved_at(path: Path) -> dt.datetime:
    """When a recovery candidate was written (its `written_at`, else the file's mtime)."""
    try:
        raw = json.loads(path.read_bytes())
        when = parse_aware_time(raw.get("written_at")) if isinstance(raw, dict) else None
    except (OSError, ValueError):
        when = None
    if when is None:
        try:
            when = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)
        except OSError:
            when = dt.datetime.min.replace(tzinfo=dt.UTC)
    return when
