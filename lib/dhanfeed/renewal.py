"""The renewal decision (pure: token + now + policy → action + reason) and its execution.

`decide` never touches a file, a socket or the clock; `Renewer` is the thin shell that takes
the lock, reads the token file, calls Dhan, writes, alerts and returns the exit code.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dhanfeed.errors import DhanApiError, ExitCode, TokenFileError
from dhanfeed.session import SessionCalendar
from dhanfeed.token import Token, TokenFormatError, format_remaining, parse_token

if TYPE_CHECKING:
    from dhanfeed.alerts import Alerter
    from dhanfeed.config import Config
    from dhanfeed.credentials import Credentials
    from dhanfeed.dhan_api import DhanApi, IssuedToken
    from dhanfeed.token_store import TokenRecord, TokenStore

logger = logging.getLogger(__name__)

# A clock this far behind the token's `iat` is wrong (the token cannot come from the future).
CLOCK_SKEW_ALLOWANCE = dt.timedelta(minutes=5)
# Dhan's `expiryTime` and the JWT `exp` should agree; beyond this the mismatch is logged.
EXPIRY_MISMATCH = dt.timedelta(minutes=5)


class Action(enum.StrEnum):
    NOT_DUE = "not_due"
    POSTPONED = "postponed"
    RENEW = "renew"  # GET /v2/RenewToken with the current token
    REGENERATE = "regenerate"  # PIN + TOTP through generateAccessToken
    MANUAL = "manual"  # no automatic way: a person must log in


@dataclasses.dataclass(frozen=True)
class Policy:
    renew_before: dt.timedelta
    must_renew_before: dt.timedelta
    calendar: SessionCalendar

    @classmethod
    def from_config(cls, config: Config) -> Policy:
        return cls(
            renew_before=config.token.renew_before,
            must_renew_before=config.token.must_renew_before,
            calendar=SessionCalendar.from_config(config.session),
        )


@dataclasses.dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    due_at: dt.datetime | None = None  # when renewal falls due (or the postponement ends)
    clock_behind: bool = False  # the system clock is behind the token's issue time


def decide(
    token: Token | None,
    now: dt.datetime,
    policy: Policy,
    *,
    can_regenerate: bool,
    force: bool = False,
) -> Decision:
    """What the run should do with `token` at `now`, and why (one sentence)."""
    tz = policy.calendar.tz
    if token is None:
        return _without_valid_token("no token file", can_regenerate)
    clock_behind = now < token.issued_at - CLOCK_SKEW_ALLOWANCE
    if clock_behind:
        # The token cannot have been issued in the future: trust its `iat` as a lower bound
        # of the real time, so that a slow clock never makes an old token look young.
        skew = format_remaining(token.issued_at - now).removeprefix("in ")
        note = f"system clock is {skew} behind the token's issue time (check NTP); "
        now = token.issued_at
    else:
        note = ""
    if token.expired(now):
        return _without_valid_token(
            f"{note}token {token.fingerprint} expired at {_fmt(token.expires_at, tz)}",
            can_regenerate,
            clock_behind,
        )
    remaining = token.remaining(now)
    left = f"expires at {_fmt(token.expires_at, tz)} ({format_remaining(remaining)})"
    due_at = token.expires_at - policy.renew_before
    must_line = token.expires_at - policy.must_renew_before

    def act(why: str) -> Decision:
        return _method(token, f"{note}{why}; {left}", can_regenerate, now, clock_behind)

    if force:
        return act("forced with --force")
    if now >= must_line:
        return act(
            f"under must_renew_before ({_span(policy.must_renew_before)}): renew whatever the session"
        )
    session = policy.calendar.current(now)
    if now >= due_at:
        if session is None:
            return act(f"due: less than renew_before ({_span(policy.renew_before)}) left")
        if token.expires_at - session.end > policy.must_renew_before:
            return Decision(
                Action.POSTPONED,
                f"{note}postponed (session): due, but the trading session runs until "
                f"{_fmt(session.end, tz)} and the token keeps "
                f"{_span(token.expires_at - session.end)} after the close; {left}",
                session.end,
                clock_behind,
            )
        return act(
            f"due inside the session, and the token would fall under must_renew_before "
            f"({_span(policy.must_renew_before)}) before the close at {_fmt(session.end, tz)}"
        )
    upcoming = policy.calendar.next_opening(now) if session is None else None
    if upcoming and must_line < upcoming.end:
        early_from = upcoming.start - policy.renew_before
        if now >= early_from:
            return act(
                f"early renewal before the session opens at {_fmt(upcoming.start, tz)}: the "
                f"token would fall under must_renew_before at {_fmt(must_line, tz)}, "
                "during the session"
            )
        due_at = min(due_at, early_from)
    return Decision(
        Action.NOT_DUE,
        f"{note}not due: {left}; renewal due at {_fmt(due_at, tz)}",
        due_at,
        clock_behind,
    )


def _without_valid_token(why: str, can_regenerate: bool, clock_behind: bool = False) -> Decision:
    if can_regenerate:
        return Decision(
            Action.REGENERATE, f"{why}: regenerate with PIN+TOTP", clock_behind=clock_behind
        )
    return Decision(
        Action.MANUAL,
        f"{why}, and no PIN+TOTP is configured: a person must log in",
        clock_behind=clock_behind,
    )


def _method(
    token: Token, why: str, can_regenerate: bool, now: dt.datetime, clock_behind: bool
) -> Decision:
    if token.renewable:
        return Decision(Action.RENEW, why, now, clock_behind)
    kind = token.consumer_type or "unknown"
    if can_regenerate:
        return Decision(
            Action.REGENERATE,
            f"{why}; a {kind} token cannot be renewed: regenerate with PIN+TOTP",
            now,
            clock_behind,
        )
    return Decision(
        Action.MANUAL,
        f"{why}; a {kind} token cannot be renewed and no PIN+TOTP is configured: "
        "a person must log in",
        now,
        clock_behind,
    )


def _fmt(when: dt.datetime, tz: dt.tzinfo) -> str:
    return when.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")


def _span(delta: dt.timedelta) -> str:
    return format_remaining(delta).removeprefix("in ")


# ---------------------------------------------------------------------------------------------
# Execution


@dataclasses.dataclass
class Outcome:
    exit_code: ExitCode
    status: str  # ok | postponed | renewed | failed | manual | dry-run
    reason: str
    action: Action | None = None
    token: Token | None = None  # the token in force after the run
    source: str | None = None
    due_at: dt.datetime | None = None
    old_fingerprint: str | None = None
    details: list[str] = dataclasses.field(default_factory=list)  # dry-run findings
    error: BaseException | None = dataclasses.field(default=None, repr=False)  # for --debug

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "action": self.action.value if self.action else None,
            "reason": self.reason,
            "expires_at": self.token.expires_at.isoformat() if self.token else None,
            "fingerprint": self.token.fingerprint if self.token else None,
            "old_fingerprint": self.old_fingerprint,
            "source": self.source,
            "due_at": self.due_at.isoformat() if self.due_at else None,
            "exit_code": int(self.exit_code),
            **({"checks": self.details} if self.details else {}),
        }


class RenewalFailed(Exception):
    """One attempt to obtain a new token failed; `refused` when Dhan rejected the old token."""

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


@dataclasses.dataclass
class Renewer:
    config: Config
    store: TokenStore
    api: Callable[[], DhanApi]  # built lazily: a not-due run never imports requests
    credentials: Credentials | None
    alerter: Alerter | None  # None in dry-run
    clock: Callable[[], dt.datetime]
    on_renew: Callable[[TokenRecord], None] = lambda record: None
    # Called the moment Dhan has issued a new token (and so killed the old one): from then on
    # the run must finish writing it, so the CLI stops its whole-run timer here.
    on_issued: Callable[[], None] = lambda: None

    # -- entry points -------------------------------------------------------------------------

    def run(self, *, force: bool = False, dry_run: bool = False) -> Outcome:
        """The hourly run: lock (no waiting), re-read, decide, act, write, alert."""
        with self.store.lock():
            if self.alerter:
                self.alerter.healthcheck("start")
            try:
                outcome = self._run_locked(force=force, dry_run=dry_run)
            except TokenFileError as exc:
                outcome = Outcome(exc.exit_code, "failed", str(exc), error=exc)
                self._alert("token_file_unusable", "critical", f"{exc}; a person must fix it")
            if self.alerter:
                self.alerter.healthcheck("success" if outcome.exit_code == 0 else "fail")
            return outcome

    def set_token(self, text: str) -> Outcome:
        """Install a token generated by hand on Dhan's site (read from stdin by the caller)."""
        from dhanfeed.errors import UsageError

        now = self.clock()
        try:
            token = parse_token(text)
        except TokenFormatError as exc:
            raise UsageError(f"--set-token: not a Dhan token: {exc}") from None
        if token.client_id != self.config.dhan.client_id:
            raise UsageError(
                f"--set-token: the token is for client {token.client_id}, "
                f"the config says {self.config.dhan.client_id}"
            )
        if token.expired(now):
            raise UsageError(
                f"--set-token: token {token.fingerprint} expired at {token.expires_at.isoformat()}"
            )
        with self.store.lock():
            old = self._read_current()
            record = self._write(token, "manual", now)
        self._after_write(record)
        reason = f"set by hand: {self._renewed_text(old, token)}"
        logger.info(reason)
        return Outcome(
            ExitCode.OK,
            "renewed",
            reason,
            None,
            token,
            "manual",
            None,
            old.fingerprint if old else None,
        )

    # -- the run under the lock ---------------------------------------------------------------

    def _run_locked(self, *, force: bool, dry_run: bool) -> Outcome:
        now = self.clock()
        if not dry_run:
            self._install_recovery_file(now)
        record = self._read_current()
        token = record.token if record else None
        policy = Policy.from_config(self.config)
        decision = decide(
            token, now, policy, can_regenerate=self.credentials is not None, force=force
        )
        logger.info(
            "decision: %s: %s",
            decision.action.value,
            decision.reason,
            extra={
                "action": decision.action.value,
                "fingerprint": token.fingerprint if token else None,
            },
        )
        if dry_run:
            return self._dry_run(record, decision, now)
        if decision.clock_behind:
            self._alert(
                "clock_behind",
                "warning",
                f"the system clock is behind the issue time of token {token.fingerprint if token else '?'}"
                f" ({now.isoformat()} < {token.issued_at.isoformat() if token else '?'}): fix NTP; "
                "renewal timing is computed from the token's issue time meanwhile",
                token,
                record.source if record else None,
            )
        if decision.action in (Action.NOT_DUE, Action.POSTPONED):
            self._resolve(token, record.source if record else None)
            status = "ok" if decision.action is Action.NOT_DUE else "postponed"
            return Outcome(
                ExitCode.OK,
                status,
                decision.reason,
                decision.action,
                token,
                record.source if record else None,
                decision.due_at,
            )
        if decision.action is Action.MANUAL:
            return self._manual(decision.reason, token, record)
        return self._obtain(decision, record, now)

    def _obtain(self, decision: Decision, record: TokenRecord | None, now: dt.datetime) -> Outcome:
        token = record.token if record else None
        action = decision.action
        try:
            if action is Action.RENEW:
                assert token is not None
                try:
                    issued, source = self._renew(token), "renew"
                except RenewalFailed as exc:
                    if not exc.refused:
                        raise
                    if self.credentials is None:
                        return self._manual(
                            f"{exc}; no PIN+TOTP is configured: a person must log in", token, record
                        )
                    logger.warning("%s; regenerating with PIN+TOTP", exc)
                    action = Action.REGENERATE
                    issued, source = self._regenerate(), "totp"
            else:
                issued, source = self._regenerate(), "totp"
            self.on_issued()
            new = self._check_new(issued, self.clock())
        except RenewalFailed as exc:
            outcome = self._failed(str(exc), action, token, record)
            outcome.error = exc
            return outcome
        try:
            new_record = self._write(new, source, self.clock())
        except OSError as exc:
            return self._write_failed(exc, new, source, action, record)
        reason = f"renewed ({source}): {self._renewed_text(record, new)}"
        logger.info(reason, extra={"action": action.value, "fingerprint": new.fingerprint})
        self._after_write(new_record)
        return Outcome(
            ExitCode.OK,
            "renewed",
            reason,
            action,
            new,
            source,
            new.expires_at - self.config.token.renew_before,
            record.fingerprint if record else None,
        )

    def _renew(self, token: Token) -> IssuedToken:
        try:
            return self.api().renew_token(token.access_token)
        except DhanApiError as exc:
            refused = exc.status == 401 or exc.code == "DH-901"
            raise RenewalFailed(f"RenewToken failed: {exc}", refused=refused) from None

    def _regenerate(self) -> IssuedToken:
        creds = self.credentials
        assert creds is not None
        try:
            return self.api().generate_access_token(creds.pin, creds.totp_code)
        except DhanApiError as exc:
            raise RenewalFailed(f"PIN+TOTP regeneration failed: {exc}") from None

    def _check_new(self, issued: IssuedToken, now: dt.datetime) -> Token:
        """A new token must be readable, unexpired and for our client before it is written."""
        try:
            new = parse_token(issued.access_token)
        except TokenFormatError as exc:
            raise RenewalFailed(f"Dhan's new token is unusable: {exc}") from None
        if new.client_id != self.config.dhan.client_id:
            raise RenewalFailed(
                f"Dhan's new token {new.fingerprint} is for client {new.client_id}, "
                f"not {self.config.dhan.client_id}"
            )
        if new.expired(now):
            raise RenewalFailed(
                f"Dhan's new token {new.fingerprint} is already expired "
                f"(exp {new.expires_at.isoformat()}); check the system clock"
            )
        if issued.expiry_time and abs(issued.expiry_time - new.expires_at) > EXPIRY_MISMATCH:
            logger.warning(
                "expiryTime %s in Dhan's answer disagrees with the token's exp %s; using exp",
                issued.expiry_time.isoformat(),
                new.expires_at.isoformat(),
            )
        return new

    def _write(self, token: Token, source: str, now: dt.datetime) -> TokenRecord:
        from dhanfeed.token_store import TokenRecord

        record = TokenRecord.from_token(token, source, now)
        self.store.write(record)
        return record

    def _after_write(self, record: TokenRecord) -> None:
        """Confirm with the profile endpoint, run the hook, clear alert conditions."""
        if self.config.token.confirm_with_profile:
            try:
                self._confirm(record.token)
            except DhanApiError as exc:
                self._alert(
                    "profile_check_failed",
                    "warning",
                    f"the new token {record.fingerprint} was written, but the profile check "
                    f"failed: {exc}",
                    record.token,
                    record.source,
                )
        self.on_renew(record)
        self._resolve(record.token, record.source, keep=("profile_check_failed",))

    def _confirm(self, token: Token) -> None:
        profile = self.api().profile(token.access_token)
        client = str(profile.get("dhanClientId", "")).strip()
        if client and client != token.client_id:
            raise DhanApiError(f"profile: answer is for client {client}, not {token.client_id}")
        logger.info("profile check ok for token %s", token.fingerprint)

    # -- failures -----------------------------------------------------------------------------

    def _failed(
        self, why: str, action: Action, token: Token | None, record: TokenRecord | None
    ) -> Outcome:
        now = self.clock()
        tz = self.config.session.tz
        source = record.source if record else None
        if token is None or token.expired(now):
            reason = f"failed: {why}; there is no valid token: data stops now; a person must log in"
            self._alert(
                "manual_login_needed", "critical", self._runbook(reason, token), token, source
            )
            return Outcome(ExitCode.MANUAL_LOGIN, "manual", reason, action, token, source)
        remaining = token.remaining(now)
        severity = "warning" if remaining > self.config.token.must_renew_before else "critical"
        reason = (
            f"failed: {why}; the current token {token.fingerprint} stays valid until "
            f"{_fmt(token.expires_at, tz)} ({format_remaining(remaining)}); the next run retries"
        )
        logger.error(reason, extra={"action": action.value})
        self._alert("renewal_failed", severity, reason, token, source)
        return Outcome(ExitCode.RENEWAL_FAILED, "failed", reason, action, token, source, now)

    def _manual(self, why: str, token: Token | None, record: TokenRecord | None) -> Outcome:
        source = record.source if record else None
        logger.critical("manual login needed: %s", why)
        self._alert("manual_login_needed", "critical", self._runbook(why, token), token, source)
        return Outcome(ExitCode.MANUAL_LOGIN, "manual", why, Action.MANUAL, token, source)

    def _runbook(self, why: str, token: Token | None) -> str:
        now = self.clock()
        tz = self.config.session.tz
        if token is None or token.expired(now):
            stops = "market data has stopped (no valid token)"
        else:
            stops = f"market data stops at {_fmt(token.expires_at, tz)} when the token expires"
        return (
            f"MANUAL LOGIN NEEDED for client {self.config.dhan.client_id}: {why}. {stops}. "
            "Generate an access token on web.dhan.co (My Profile > Access DhanHQ APIs), then "
            f"run: bin/renew_token --config {self.config.path} --set-token  (paste the token "
            "on stdin, end with Ctrl-D), or configure PIN+TOTP ([totp] or $DHAN_PIN and "
            "$DHAN_TOTP_SECRET) for automatic regeneration."
        )

    def _write_failed(
        self, exc: OSError, new: Token, source: str, action: Action, record: TokenRecord | None
    ) -> Outcome:
        """The worst case: Dhan has already killed the old token and the new one is not saved."""
        from dhanfeed.token_store import TokenRecord

        where = self.store.recovery_path
        try:
            self.store.write_recovery(TokenRecord.from_token(new, source, self.clock()))
            kept = f"it is kept in {where} (0600); the next run installs it, or run: mv {where} {self.store.path}"
        except OSError as exc2:
            kept = f"the recovery file {where} could not be written either ({exc2.strerror})"
        reason = (
            f"failed: Dhan issued new token {new.fingerprint} (expires "
            f"{_fmt(new.expires_at, self.config.session.tz)}) but writing {self.store.path} "
            f"failed ({exc.__class__.__name__}: {exc.strerror or exc}); the old token is no longer "
            f"valid at Dhan; {kept}"
        )
        logger.critical(reason, extra={"fingerprint": new.fingerprint})
        self._alert("write_failed", "critical", reason, new, source)
        return Outcome(
            ExitCode.MANUAL_LOGIN,
            "failed",
            reason,
            action,
            new,
            source,
            old_fingerprint=record.fingerprint if record else None,
        )

    # -- helpers ------------------------------------------------------------------------------

    def _read_current(self) -> TokenRecord | None:
        from dhanfeed.token_store import TokenFileMissing

        try:
            return self.store.read_for(self.config.dhan.client_id)
        except TokenFileMissing as exc:
            logger.warning("%s", exc)
            return None

    def _install_recovery_file(self, now: dt.datetime) -> None:
        """A token saved after a failed write is installed once the disk is writable again."""
        path = self.store.recovery_path
        try:
            saved = self.store.read(path)
        except TokenFileError:
            return
        try:
            current = self.store.read()
        except TokenFileError:
            current = None
        if saved.client_id != self.config.dhan.client_id or saved.token.expired(now):
            return
        if current and current.token.expires_at >= saved.token.expires_at:
            return
        try:
            self.store.write(saved)
        except OSError as exc:  # still a full or read-only disk: the run goes on, it alerts below
            logger.warning("recovery file %s not installed: %s", path, exc.strerror or exc)
            return
        path.unlink(missing_ok=True)
        logger.warning("installed token %s from the recovery file %s", saved.fingerprint, path)

    def _dry_run(self, record: TokenRecord | None, decision: Decision, now: dt.datetime) -> Outcome:
        token = record.token if record else None
        checks = [f"config: {self.config.path} ok", f"lock: {self.store.lock_path} taken"]
        checks.append(
            f"token file: {self.store.path} ok (mode 0600, fingerprint {token.fingerprint})"
            if token
            else f"token file: {self.store.path} missing"
        )
        code = ExitCode.OK
        if token and not token.expired(now):
            try:
                self._confirm(token)
                checks.append("profile check of the current token: ok")
            except DhanApiError as exc:
                checks.append(f"profile check of the current token: FAILED: {exc}")
                code = ExitCode.RENEWAL_FAILED
        checks.append("PIN+TOTP: configured" if self.credentials else "PIN+TOTP: not configured")
        if decision.action is Action.MANUAL:
            code = ExitCode.MANUAL_LOGIN
        return Outcome(
            code,
            "dry-run",
            f"nothing changed; the run would {decision.action.value}: {decision.reason}",
            decision.action,
            token,
            record.source if record else None,
            decision.due_at,
            details=checks,
        )

    def _renewed_text(self, old: TokenRecord | None, new: Token) -> str:
        before = old.fingerprint if old else "none"
        return (
            f"{before} -> {new.fingerprint}, new expiry "
            f"{_fmt(new.expires_at, self.config.session.tz)}"
        )

    def _alert(
        self,
        condition: str,
        severity: str,
        message: str,
        token: Token | None = None,
        source: str | None = None,
    ) -> None:
        if self.alerter:
            self.alerter.alert(condition, severity, message, token=token, source=source)

    def _resolve(self, token: Token | None, source: str | None, keep: tuple[str, ...] = ()) -> None:
        if self.alerter:
            self.alerter.resolve(token=token, source=source, keep=keep)
