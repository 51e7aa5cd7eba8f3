"""The simulator's token authority: JWT-shaped tokens, one active at a time, with expiry.

Tokens look like Dhan's (HS512 header, the payload of dhan-api.md §1). Two tokens minted in
the same second would have the same payload, so a per-token nonce goes into the signature
only: the payload stays faithful and every token is still distinct.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import itertools
import json
import os
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from dhanfeed.files import write_atomic
from dhanfeed.token import IST, fingerprint

SELF, APP = "SELF", "APP"

# Verdicts of `TokenRegistry.check`.
OK, EXPIRED, SUPERSEDED, INVALID, WRONG_CLIENT = "ok", "expired", "superseded", "invalid", "client"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class Issued(NamedTuple):
    access_token: str
    consumer_type: str
    iat: int
    exp: int

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.access_token)

    @property
    def expires_at(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.exp, dt.UTC)

    @property
    def issued_at(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.iat, dt.UTC)


def ist_no_zone(epoch: int) -> str:
    """Dhan's `expiryTime`: IST wall-clock time without zone, "2026-01-01T00:00:00.000"."""
    return dt.datetime.fromtimestamp(epoch, IST).strftime("%Y-%m-%dT%H:%M:%S.000")


def ist_profile(epoch: int) -> str:
    """The profile's `tokenValidity`: "DD/MM/YYYY HH:MM" in IST."""
    return dt.datetime.fromtimestamp(epoch, IST).strftime("%d/%m/%Y %H:%M")


class TokenRegistry:
    """Mints tokens for one client id; only the latest is valid (until it expires).

    Thread-safe: the REST thread and the feed's event loop both ask it. `on_supersede` is
    called (outside the lock) with the fingerprint of a token that a newer one replaced.
    """

    def __init__(
        self,
        client_id: str,
        ttl_s: float = 86400,
        *,
        clock: Callable[[], float] = time.time,
        on_supersede: Callable[[str], None] | None = None,
    ) -> None:
        self.client_id = client_id
        self.ttl_s = ttl_s
        self.clock = clock
        self.on_supersede = on_supersede
        self._secret = secrets.token_bytes(32)
        self._nonce = itertools.count()
        self._lock = threading.Lock()
        self._current: Issued | None = None
        self._known: dict[str, Issued] = {}  # every token ever minted, by its text

    @property
    def current(self) -> Issued | None:
        return self._current

    def mint(
        self, consumer_type: str = SELF, ttl_s: float | None = None, *, claims: dict | None = None
    ) -> Issued:
        """A new token that supersedes the current one.

        A negative `ttl_s` mints one that is already expired; `claims` overwrite payload fields
        (a malformed `exp`, another client id) without changing when the token really expires.
        """
        now = int(self.clock())
        ttl = self.ttl_s if ttl_s is None else ttl_s
        exp = now + (int(round(ttl)) or 1)
        payload = {
            "iss": "dhan",
            "partnerId": "",
            "exp": exp,
            "iat": now,
            "tokenConsumerType": consumer_type,
            "webhookUrl": "",
            "dhanClientId": self.client_id,
            **(claims or {}),
        }
        head = _b64(json.dumps({"typ": "JWT", "alg": "HS512"}, separators=(",", ":")).encode())
        body = _b64(json.dumps(payload, separators=(",", ":")).encode())
        signing_input = f"{head}.{body}".encode()
        nonce = str(next(self._nonce)).encode()
        signature = hmac.new(self._secret + nonce, signing_input, hashlib.sha512).digest()
        issued = Issued(f"{head}.{body}.{_b64(signature)}", consumer_type, now, exp)
        with self._lock:
            old = self._current
            self._current = issued
            self._known[issued.access_token] = issued
        if old is not None and self.on_supersede is not None:
            self.on_supersede(old.fingerprint)
        return issued

    def check(
        self, access_token: str | None, client_id: str | None = None
    ) -> tuple[str, Issued | None]:
        """(verdict, token): OK, EXPIRED, SUPERSEDED, INVALID or WRONG_CLIENT."""
        with self._lock:
            issued = self._known.get((access_token or "").strip())
            current = self._current
        if issued is None:
            return INVALID, None
        if client_id is not None and client_id.strip() != self.client_id:
            return WRONG_CLIENT, issued
        if issued is not current:
            return SUPERSEDED, issued
        if self.clock() >= issued.exp:
            return EXPIRED, issued
        return OK, issued


def token_file_record(issued: Issued, client_id: str, source: str = "manual") -> dict:
    """The token file of design.md, as a person would write it after generating on Dhan Web."""
    return {
        "client_id": client_id,
        "access_token": issued.access_token,
        "expires_at": issued.expires_at.isoformat(),
        "issued_at": issued.issued_at.isoformat(),
        "source": source,
        "written_at": dt.datetime.now(dt.UTC).isoformat(),
        "fingerprint": issued.fingerprint,
    }


def write_token_file(path: str | os.PathLike[str], record: dict) -> None:
    """Atomic, durable, mode 0600, like a person's editor would not but renew_token does."""
    write_atomic(Path(path), (json.dumps(record, indent=2) + "\n").encode("utf-8"))
