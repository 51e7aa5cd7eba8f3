"""Asking Dhan for a new token: RenewToken with the current one, or PIN+TOTP.

A failed request is one `RenewalFailed` that says what a caller must know next: Dhan refused
the token, Dhan called the PIN or TOTP wrong (recorded in `renew_state`, so that they are not
sent again until they change: Dhan may lock an account after repeated wrong PINs), or a later
try may succeed. Whether Dhan still accepts a token is `renew_confirm`'s question.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from dhanfeed.errors import DhanApiError, MalformedAnswer
from dhanfeed.renew_confirm import refused_by_dhan
from dhanfeed.renew_state import Mark, RenewState

if TYPE_CHECKING:
    from dhanfeed.credentials import Credentials
    from dhanfeed.dhan_api import DhanApi, IssuedToken
    from dhanfeed.token import Token

# Dhan's answer names the PIN or the TOTP as wrong ("Invalid Pin", "Invalid TOTP").
_WRONG_CREDENTIALS = re.compile(r"\b(pin|totp)\b", re.IGNORECASE)


class RenewalFailed(Exception):
    """One attempt to obtain a new token failed: `refused` when Dhan rejected the old token,
    `wrong_credentials` when it called the PIN or TOTP wrong, `transient` when a later try may
    succeed (no answer, 5xx, a malformed answer)."""

    def __init__(
        self,
        message: str,
        *,
        refused: bool = False,
        wrong_credentials: bool = False,
        transient: bool = True,
    ) -> None:
        super().__init__(message)
        self.refused = refused
        self.wrong_credentials = wrong_credentials
        self.transient = transient


def credentials_refused(exc: DhanApiError) -> bool:
    """Dhan answered that the PIN or TOTP is wrong; a timeout or a 5xx says nothing of them."""
    answered = exc.status is not None and not exc.retryable and exc.status != 429
    return answered and bool(_WRONG_CREDENTIALS.search(str(exc).partition(": ")[2]))


def transient(exc: DhanApiError) -> bool:
    """No answer, a server error or a malformed answer: a later try may well succeed."""
    if isinstance(exc, MalformedAnswer) or exc.retryable:
        return True
    return exc.status is None or exc.status >= 500


def renew(api: DhanApi, token: Token) -> IssuedToken:
    """RenewToken: Dhan kills `token` and issues its successor."""
    try:
        return api.renew_token(token.access_token)
    except DhanApiError as exc:
        raise RenewalFailed(f"RenewToken failed: {exc}", refused=refused_by_dhan(exc)) from None


def regenerate(
    api: DhanApi, credentials: Credentials, state: RenewState, clock: Callable[[], dt.datetime]
) -> IssuedToken:
    """generateAccessToken with the PIN and a TOTP code made at each try's own instant."""
    try:
        issued = api.generate_access_token(credentials.pin, lambda: credentials.totp_code(clock()))
    except DhanApiError as exc:
        wrong = credentials_refused(exc)
        if wrong:  # never again with these two, until they change or --force
            state.record_credentials_refused(credentials.fingerprint, clock(), str(exc))
        raise RenewalFailed(
            f"PIN+TOTP regeneration failed: {exc}",
            wrong_credentials=wrong,
            transient=transient(exc),
        ) from None
    state.forget_credentials_refusal()
    return issued


def blocked_credentials(
    credentials: Credentials | None, state: RenewState, *, force: bool
) -> Mark | None:
    """Dhan's refusal of these very PIN+TOTP credentials, unless --force retries them."""
    if credentials is None or force:
        return None
    return state.credentials_refused(credentials.fingerprint)
