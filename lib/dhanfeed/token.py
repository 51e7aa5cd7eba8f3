"""Reading a Dhan access token: its JWT payload, expiry and fingerprint.

We cannot verify Dhan's signature; we only read the payload. The fingerprint (first 12 hex
of the token's sha256) is the only form of a token that may appear in logs, alerts,
status files and metrics.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import hashlib
import json
from typing import Any

from dhanfeed.errors import TokenFormatError

IST = dt.timezone(dt.timedelta(hours=5, minutes=30), "IST")


def fingerprint(access_token: str) -> str:
    return hashlib.sha256(access_token.encode("utf-8")).hexdigest()[:12]


@dataclasses.dataclass(frozen=True)
class Token:
    access_token: str = dataclasses.field(repr=False)
    client_id: str
    expires_at: dt.datetime  # aware, UTC
    issued_at: dt.datetime  # aware, UTC
    consumer_type: str  # "SELF" (Dhan Web, renewable) or "APP" (PIN+TOTP), ...

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.access_token)

    @property
    def renewable(self) -> bool:
        return self.consumer_type.upper() == "SELF"

    def remaining(self, now: dt.datetime) -> dt.timedelta:
        return self.expires_at - now

    def expired(self, now: dt.datetime) -> bool:
        return now >= self.expires_at

    def __repr__(self) -> str:  # never the token itself
        return (
            f"Token(fp={self.fingerprint}, client_id={self.client_id}, "
            f"expires_at={self.expires_at.isoformat()}, type={self.consumer_type})"
        )


def decode_payload(access_token: str) -> dict[str, Any]:
    parts = access_token.strip().split(".")
    if len(parts) != 3:
        raise TokenFormatError("not a JWT (expected three dot-separated parts)")
    body = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        payload = json.loads(base64.urlsafe_b64decode(body))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise TokenFormatError("JWT payload is not base64url JSON") from None
    if not isinstance(payload, dict):
        raise TokenFormatError("JWT payload is not a JSON object")
    return payload


LIFETIME = dt.timedelta(hours=24)  # exp - iat of every Dhan token (dhan-api.md §1)


def parse_token(access_token: str, *, expires_hint: dt.datetime | None = None) -> Token:
    """Read a Dhan JWT; raise TokenFormatError (without the token in its text).

    `expires_hint` (Dhan's `expiryTime`, or the `expires_at` we wrote beside the token) stands
    in for a JWT `exp` that is missing or cannot be a time (year 33658): the token Dhan issued
    is still the only valid one, so it is kept with the best expiry we know.
    """
    if not isinstance(access_token, str) or not access_token.strip():
        raise TokenFormatError("empty token")
    payload = decode_payload(access_token)
    client_id = str(payload.get("dhanClientId", "")).strip()
    if not client_id:
        raise TokenFormatError("JWT payload has no 'dhanClientId'")
    expires_at = _claim_time(payload.get("exp")) or expires_hint
    if expires_at is None:
        raise TokenFormatError("JWT payload has no 'exp' that is a time")
    issued_at = _claim_time(payload.get("iat")) or expires_at - LIFETIME
    return Token(
        access_token=access_token.strip(),
        client_id=client_id,
        expires_at=expires_at,
        issued_at=issued_at,
        consumer_type=str(payload.get("tokenConsumerType", "")),
    )


def _claim_time(value: object) -> dt.datetime | None:
    """A JWT NumericDate as an aware UTC time; None when absent, not a number or out of range."""
    if isinstance(value, bool):
        return None
    try:
        return dt.datetime.fromtimestamp(int(value), dt.UTC)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def format_remaining(delta: dt.timedelta) -> str:
    """'in 17h 12m', '3m ago'."""
    secs = int(delta.total_seconds())
    sign, secs = ("", secs) if secs >= 0 else ("-", -secs)
    h, rem = divmod(secs, 3600)
    m, s = divmod(rem, 60)
    text = f"{h}h {m:02d}m" if h else (f"{m}m {s:02d}s" if m else f"{s}s")
    return f"in {text}" if not sign else f"{text} ago"


def parse_aware_time(value: object) -> dt.datetime | None:
    """An ISO 8601 time with an offset (as our JSON files store them), else None."""
    try:
        parsed = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None
