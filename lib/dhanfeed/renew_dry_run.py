"""What `renew_token --dry-run` reports: the checks a real run depends on (config, lock, token
file, Dhan's word on the current token, PIN+TOTP) and what the run would do, changing nothing
at Dhan or on disk. The renewer calls it under the lock, after the decision."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING

from dhanfeed.errors import DhanApiError
from dhanfeed.renew_confirm import confirm, refused_by_dhan
from dhanfeed.renew_outcome import Outcome, Status
from dhanfeed.renew_request import blocked_credentials
from dhanfeed.renewal import Action, Decision

if TYPE_CHECKING:
    from dhanfeed.config import Config
    from dhanfeed.credentials import Credentials
    from dhanfeed.dhan_api import DhanApi
    from dhanfeed.renew_state import RenewState
    from dhanfeed.token_store import TokenRecord, TokenStore

# What the next run would do, per decision.
WOULD = {
    Action.NOT_DUE: "do nothing",
    Action.POSTPONED: "wait for the end of the session",
    Action.RENEW: "renew the token with RenewToken",
    Action.REGENERATE: "regenerate the token with PIN+TOTP",
    Action.MANUAL: "stop and ask a person to log in",
}


def dry_run(
    *,
    config: Config,
    store: TokenStore,
    api: Callable[[], DhanApi],
    credentials: Credentials | None,
    state: RenewState,
    record: TokenRecord | None,
    decision: Decision,
    now: dt.datetime,
) -> Outcome:
    token = record.token if record else None
    checks = [f"config: {config.path} ok", f"lock: {store.lock_path} taken"]
    checks.append(
        f"token file: {store.path} ok (mode 0600, fingerprint {token.fingerprint})"
        if token
        else f"token file: {store.path} missing"
    )
    status = Status.OK
    if token and not token.expired(now):
        try:
            confirm(api(), token)
            checks.append("profile check of the current token: ok")
        except DhanApiError as exc:
            checks.append(f"profile check of the current token: FAILED: {exc}")
            status = Status.MANUAL if refused_by_dhan(exc) else Status.FAILED
    if credentials is None:
        checks.append("PIN+TOTP: not configured")
    elif blocked := blocked_credentials(credentials, state, force=False):
        checks.append(f"PIN+TOTP: configured, but Dhan refused them ({blocked.detail})")
    else:
        checks.append("PIN+TOTP: configured")
    if decision.action is Action.MANUAL:
        status = Status.MANUAL
    would = WOULD[decision.action]
    return Outcome(
        status=status,
        reason=f"dry run, nothing changed: the next run would {would}: {decision.reason}",
        action=decision.action,
        token=token,
        source=record.source if record else None,
        due_at=decision.due_at,
        dry_run=True,
        checks=tuple(checks),
    )
