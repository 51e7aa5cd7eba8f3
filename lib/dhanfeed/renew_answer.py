"""Whether a token Dhan has just issued may become the token file: readable, for our client,
not expired. Pure but for its warnings; Dhan's answer is saved before it is judged here
(`renew_recovery.raw_answer`).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING

from dhanfeed.errors import TokenFormatError
from dhanfeed.token import Token, parse_token

if TYPE_CHECKING:
    from dhanfeed.dhan_api import IssuedToken

logger = logging.getLogger(__name__)

# Dhan's `expiryTime` and the JWT `exp` should agree; beyond this the mismatch is logged.
EXPIRY_MISMATCH = dt.timedelta(minutes=5)


class Rejected(Exception):
    """Dhan issued a token that the checks refuse (unreadable, another client, expired)."""


def check_new(issued: IssuedToken, client_id: str, now: dt.datetime) -> Token:
    """The new token, or `Rejected` saying why it may not become the token file.

    A JWT `exp` that is no time (year 33658) is replaced by Dhan's `expiryTime`, the only
    other statement of the expiry; without either the token is rejected.
    """
    try:
        new = parse_token(issued.access_token)
    except TokenFormatError as exc:
        if issued.expiry_time is None:
            raise Rejected(f"the new token is unreadable ({exc})") from None
        try:
            new = parse_token(issued.access_token, expires_hint=issued.expiry_time)
        except TokenFormatError as exc2:
            raise Rejected(f"the new token is unreadable ({exc2})") from None
        logger.warning(
            "the new token %s: %s; using Dhan's expiryTime %s",
            new.fingerprint,
            exc,
            issued.expiry_time.isoformat(),
        )
    if new.client_id != client_id:
        raise Rejected(
            f"the new token {new.fingerprint} is for client {new.client_id}, not {client_id}"
        )
    if new.expired(now):
        raise Rejected(
            f"the new token {new.fingerprint} is already expired "
            f"(exp {new.expires_at.isoformat()}; check the system clock)"
        )
    if issued.expiry_time and abs(issued.expiry_time - new.expires_at) > EXPIRY_MISMATCH:
        logger.warning(
            "expiryTime %s in Dhan's answer disagrees with the token's exp %s; using exp",
            issued.expiry_time.isoformat(),
            new.expires_at.isoformat(),
        )
    return new
