"""Whether Dhan still accepts a token: its profile endpoint, asked at most once per
`confirm_every` for a token that is not due, with Dhan's word recorded in `renew_state`.

A refusal (HTTP 401, DH-901) makes the token count as dead (the decision then renews or asks
for a person); no answer says nothing of the token and leaves the run to try next time.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from dhanfeed.errors import DhanApiError

if TYPE_CHECKING:
    from dhanfeed.dhan_api import DhanApi
    from dhanfeed.renew_state import RenewState
    from dhanfeed.token import Token

logger = logging.getLogger(__name__)


def refused_by_dhan(exc: DhanApiError) -> bool:
    """Dhan itself said no to the token (not a network fault or a server error)."""
    return exc.status == 401 or exc.code == "DH-901"


def confirm(api: DhanApi, token: Token) -> None:
    """Ask the profile endpoint; raise DhanApiError unless it accepts the token as ours."""
    profile = api.profile(token.access_token)
    client = str(profile.get("dhanClientId", "")).strip()
    if client and client != token.client_id:
        raise DhanApiError(f"profile: answer is for client {client}, not {token.client_id}")
    logger.info("profile check ok for token %s", token.fingerprint)


def confirm_now_and_then(
    api: Callable[[], DhanApi],
    state: RenewState,
    token: Token,
    now: dt.datetime,
    every: dt.timedelta,
) -> bool | None:
    """True: Dhan accepted the token (now, or less than `every` ago); False: it refused it;
    None: unknown (no answer, a server error). `api` is made only when Dhan is asked."""
    accepted = state.accepted(token.fingerprint)
    if accepted and now - accepted.at < every:
        return True
    try:
        confirm(api(), token)
    except DhanApiError as exc:
        if refused_by_dhan(exc):
            logger.error("Dhan refused token %s: %s", token.fingerprint, exc)
            state.record_refused(token.fingerprint, now, f"profile check: {exc}")
            return False
        logger.warning(
            "could not confirm token %s with Dhan (%s); the next run tries again",
            token.fingerprint,
            exc,
        )
        return None
    state.record_accepted(token.fingerprint, now, "profile check")
    return True
