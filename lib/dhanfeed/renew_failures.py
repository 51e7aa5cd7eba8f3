"""Every way a renew_token run ends without a new token file, told the same way.

Each ending is one sentence (what happened, what state the token is in, what comes next),
logged as loud as its alert (critical, or an error for a warning), raised as an alert
condition with its fingerprint and action (`Monitor.alert`), and returned as the `Outcome`.
Where a person must act, the alert carries the manual-login runbook instead of the sentence.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dhanfeed.renew_outcome import Outcome, Status
from dhanfeed.renewal import Action, local_time
from dhanfeed.severity import Severity
from dhanfeed.token import Token, format_remaining

if TYPE_CHECKING:
    from dhanfeed.config import Config
    from dhanfeed.credentials import Credentials
    from dhanfeed.errors import TokenDirUnwritable
    from dhanfeed.renew_monitor import Monitor
    from dhanfeed.renew_state import Mark, RenewState
    from dhanfeed.token_store import TokenRecord

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Failures:
    config: Config
    token_file: Path
    state: RenewState
    credentials: Credentials | None
    monitor: Monitor
    clock: Callable[[], dt.datetime]

    def failed(
        self,
        why: str,
        action: Action,
        token: Token | None,
        record: TokenRecord | None,
        *,
        transient: bool = False,
    ) -> Outcome:
        """Dhan did not issue a token: retried by the next run, or a person when none is left."""
        now = self.clock()
        tz = self.config.session.tz
        source = record.source if record else None
        dead = token is None or token.expired(now) or self.state.refusal(token.fingerprint)
        if dead and transient and self.credentials:
            reason = (
                f"{why}; there is no valid token, so market data has stopped; the failure "
                "looks transient, so the next run tries PIN+TOTP again (run "
                f"bin/renew_token --config {self.config.path} to try sooner)"
            )
            return self._end(
                Status.FAILED, reason, "regeneration_failed", action, token, source, due_at=now
            )
        if dead or token is None:
            reason = f"{why}; there is no valid token: data stops now; a person must log in"
            runbook = self.runbook(reason, token)
            return self._end(
                Status.MANUAL, reason, "manual_login_needed", action, token, source, alert=runbook
            )
        remaining = token.remaining(now)
        severity = (
            Severity.WARNING
            if remaining > self.config.token.must_renew_before
            else Severity.CRITICAL
        )
        reason = (
            f"{why}; the current token {token.fingerprint} stays valid until "
            f"{local_time(token.expires_at, tz)} ({format_remaining(remaining)}); the next run retries"
        )
        return self._end(
            Status.FAILED,
            reason,
            "renewal_failed",
            action,
            token,
            source,
            severity=severity,
            due_at=now,
        )

    def manual(self, why: str, token: Token | None, record: TokenRecord | None) -> Outcome:
        """No automatic way is left: a person must log in."""
        source = record.source if record else None
        runbook = self.runbook(why, token)
        return self._end(
            Status.MANUAL, why, "manual_login_needed", Action.MANUAL, token, source, alert=runbook
        )

    def credentials_wrong(
        self, mark: Mark | None, token: Token | None, record: TokenRecord | None
    ) -> Outcome:
        """Dhan called the PIN or TOTP seed wrong: tried again only once they change (or with
        --force), because Dhan may lock an account after repeated wrong PINs."""
        source = record.source if record else None
        if mark is None:
            assert self.credentials is not None
            mark = self.state.credentials_refused(self.credentials.fingerprint)
        said = f" ({mark.detail}, {local_time(mark.at, self.config.session.tz)})" if mark else ""
        why = (
            f"PIN or TOTP seed wrong: Dhan refused them{said}; they are not tried again until "
            "they change or --force is given"
        )
        runbook = self.runbook(why, token)
        return self._end(
            Status.MANUAL, why, "credentials_wrong", Action.REGENERATE, token, source, alert=runbook
        )

    def no_room(
        self,
        exc: TokenDirUnwritable,
        action: Action | None,
        token: Token | None,
        record: TokenRecord | None,
    ) -> Outcome:
        """Renewal is due but a new token file could not be written: Dhan is not asked."""
        now = self.clock()
        if token is None or token.expired(now):
            state = "there is no valid token: market data has stopped"
        else:
            state = (
                f"the current token {token.fingerprint} stays valid until "
                f"{local_time(token.expires_at, self.config.session.tz)} "
                f"({format_remaining(token.remaining(now))})"
            )
        reason = (
            f"{exc}; Dhan was not asked for a new token (it would have killed the "
            f"current one with nowhere to save the new); {state}; free space in {exc.directory} "
            "(or make it writable) and the next run renews"
        )
        source = record.source if record else None
        return self._end(
            Status.FAILED,
            reason,
            "token_dir_unwritable",
            action,
            token,
            source,
            due_at=now,
            error=exc,
        )

    def rejected(
        self,
        fingerprint: str,
        problem: str,
        kept: str,
        action: Action,
        source: str,
        record: TokenRecord | None,
    ) -> Outcome:
        """Dhan issued a token (`fingerprint`, from `source`) that the checks refuse, and by
        issuing it killed the current one; `kept` says where the answer is."""
        old = record.fingerprint if record else "none"
        if self.credentials:
            status, nxt = Status.FAILED, "the next run regenerates with PIN+TOTP"
        else:
            status, nxt = Status.MANUAL, "a person must log in"
        reason = (
            f"Dhan answered {_endpoint(action)} with token {fingerprint}, which the checks "
            f"refuse: {problem}; {kept}; by issuing it Dhan has invalidated the current token "
            f"{old} (one token is active at a time), so the current token is not counted on; "
            f"{nxt}"
        )
        logger.critical(reason, extra={"action": action.value, "fingerprint": fingerprint})
        message = reason if self.credentials else self.runbook(reason, None)
        self.monitor.alert("answer_rejected", Severity.CRITICAL, message, None, source)
        return Outcome(
            status=status,
            reason=reason,
            action=action,
            token=record.token if record else None,
            source=record.source if record else None,
        )

    def write_failed(
        self,
        exc: OSError | None,
        new: Token,
        source: str,
        action: Action,
        record: TokenRecord | None,
        *,
        kept: Path | None,
    ) -> Outcome:
        """Dhan has killed the old token and the new one did not become the token file."""
        failure = (
            f"writing it failed ({exc.__class__.__name__}: {exc.strerror or exc})"
            if exc is not None
            else f"it could not be renamed onto {self.token_file}"
        )
        if kept is not None:
            where = (
                f"it is kept in {kept} (0600); the next run installs it, or run: "
                f"mv {kept} {self.token_file}"
            )
        else:
            where = "it could not be kept anywhere"
        reason = (
            f"Dhan issued new token {new.fingerprint} (expires "
            f"{local_time(new.expires_at, self.config.session.tz)}) but {failure}; the old "
            f"token is no longer valid at Dhan; {where}"
        )
        old = record.fingerprint if record else None
        return self._end(
            Status.MANUAL, reason, "write_failed", action, new, source, old_fingerprint=old
        )

    def runbook(self, why: str, token: Token | None) -> str:
        """The alert for a person: why, when market data stops, and the two ways out."""
        now = self.clock()
        tz = self.config.session.tz
        if token is None or token.expired(now) or self.state.refusal(token.fingerprint):
            stops = "market data has stopped (no valid token)"
        else:
            stops = (
                f"market data stops at {local_time(token.expires_at, tz)} when the token expires"
            )
        return (
            f"MANUAL LOGIN NEEDED for client {self.config.dhan.client_id}: {why}. {stops}. "
            "Generate an access token on web.dhan.co (My Profile > Access DhanHQ APIs), then "
            f"run: bin/renew_token --config {self.config.path} --set-token  (paste the token "
            "on stdin, end with Ctrl-D), or configure PIN+TOTP ([totp] or $DHAN_PIN and "
            "$DHAN_TOTP_SECRET) for automatic regeneration."
        )

    def _end(
        self,
        status: Status,
        reason: str,
        condition: str,
        action: Action | None,
        token: Token | None,
        source: str | None,
        *,
        severity: Severity = Severity.CRITICAL,
        alert: str | None = None,
        **outcome: Any,
    ) -> Outcome:
        """Log why (as loud as the alert), raise the alert `condition` (with `alert` as its
        text, when a person needs more than `reason`), and return the Outcome."""
        logger.log(
            logging.CRITICAL if severity is Severity.CRITICAL else logging.ERROR,
            reason,
            extra={
                "condition": condition,
                "action": action.value if action else None,
                "fingerprint": token.fingerprint if token else None,
            },
        )
        self.monitor.alert(condition, severity, alert or reason, token, source)
        return Outcome(
            status=status, reason=reason, action=action, token=token, source=source, **outcome
        )


def _endpoint(action: Action) -> str:
    return "RenewToken" if action is Action.RENEW else "generateAccessToken"
