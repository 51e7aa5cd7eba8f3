"""The renewer: carries out `renewal.decide` under the token-file lock.

It reads the token file and what Dhan last said about it (`renew_state`), calls Dhan,
checks and writes the new token, alerts, and returns an `Outcome` for the CLI to report.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from dhanfeed.errors import (
    DhanApiError,
    DhanfeedError,
    TokenFileError,
    TokenFileMissing,
    TokenFormatError,
    TokenRefused,
    UsageError,
)
from dhanfeed.renew_outcome import WOULD, Outcome, Status
from dhanfeed.renew_state import Mark, RenewState
from dhanfeed.renewal import Action, Decision, Policy, decide, local_time
from dhanfeed.token import Token, format_remaining, parse_token
from dhanfeed.token_store import TokenRecord

if TYPE_CHECKING:
    from dhanfeed.alerts import Alerter
    from dhanfeed.config import Config
    from dhanfeed.credentials import Credentials
    from dhanfeed.dhan_api import DhanApi, IssuedToken
    from dhanfeed.token_store import TokenStore

logger = logging.getLogger(__name__)

# Dhan's `expiryTime` and the JWT `exp` should agree; beyond this the mismatch is logged.
EXPIRY_MISMATCH = dt.timedelta(minutes=5)
# Dhan's answer names the PIN or the TOTP as wrong ("Invalid Pin", "Invalid TOTP").
_WRONG_CREDENTIALS = re.compile(r"\b(pin|totp)\b", re.IGNORECASE)


def refused_by_dhan(exc: DhanApiError) -> bool:
    """Dhan itself said no to the token (not a network fault or a server error)."""
    return exc.status == 401 or exc.code == "DH-901"


def credentials_refused(exc: DhanApiError) -> bool:
    """Dhan answered that the PIN or TOTP is wrong; a timeout or a 5xx says nothing of them."""
    answered = exc.status is not None and not exc.retryable and exc.status != 429
    return answered and bool(_WRONG_CREDENTIALS.search(str(exc).partition(": ")[2]))


def _describe(exc: BaseException) -> str:
    """One line for an alert: the message of an expected error, the type of any other."""
    if isinstance(exc, DhanfeedError):
        return str(exc)
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C or SIGINT)"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.__class__.__name__}: {exc.strerror} ({exc.filename or 'no file'})"
    return f"unexpected {exc.__class__.__name__} (the log has the traceback)"


class RenewalFailed(Exception):
    """One attempt to obtain a new token failed: `refused` when Dhan rejected the old token,
    `wrong_credentials` when it called the PIN or TOTP wrong."""

    def __init__(
        self, message: str, *, refused: bool = False, wrong_credentials: bool = False
    ) -> None:
        super().__init__(message)
        self.refused = refused
        self.wrong_credentials = wrong_credentials


@dataclasses.dataclass
class Renewer:
    config: Config
    store: TokenStore
    api: Callable[[], DhanApi]  # built lazily: a not-due run never imports requests
    credentials: Credentials | None
    alerter: Alerter | None  # None in dry-run
    clock: Callable[[], dt.datetime]
    state: RenewState
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
            outcome: Outcome | None = None
            try:
                outcome = self._run_locked(force=force, dry_run=dry_run)
            except TokenFileError as exc:
                outcome = Outcome(status=Status.of_exit(exc.exit_code), reason=str(exc), error=exc)
                self._alert("token_file_unusable", "critical", f"{exc}; a person must fix it")
            except BaseException as exc:  # a run timeout, an OSError, Ctrl-C: said, then raised
                self._alert("run_stopped", "critical", f"the run stopped: {_describe(exc)}")
                raise
            finally:  # every way out pings: a monitor never stays at "start"
                if self.alerter:
                    ok = outcome is not None and outcome.exit_code == 0
                    self.alerter.healthcheck("success" if ok else "fail")
            return outcome

    def check(self) -> Outcome:
        """Read-only status for a person or a monitor: no lock, no network, no writes."""
        now = self.clock()
        record = self.store.read_for(self.config.dhan.client_id)  # TokenFileError → exit 3
        token = record.token
        refusal = self.state.refusal(token.fingerprint)
        decision = self._decide(token, now, force=False, refusal=refusal)
        usable = not token.expired(now) and refusal is None
        return Outcome(
            status=Status.OK if usable else Status.MANUAL,
            reason=decision.reason,
            action=decision.action,
            token=token,
            source=record.source,
            due_at=decision.due_at,
        )

    def set_token(self, text: str, *, verify: bool = True) -> Outcome:
        """Install a token generated by hand on Dhan's site (read from stdin by the caller),
        once Dhan's profile endpoint has accepted it (unless `verify` is off)."""
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
        if verify:
            self._verify_by_hand(token)
        with self.store.lock():
            old = self._read_current()
            record = self._write(token, "manual", now)
            if verify:
                self.state.record_accepted(token.fingerprint, now, "profile check of --set-token")
        self.on_renew(record)
        if verify:  # only a token Dhan accepted clears the alerts
            self._resolve(record.token, record.source)
            how = "set by hand and accepted by Dhan"
        else:
            how = "set by hand without asking Dhan (--no-verify)"
        reason = f"{how}: {self._renewed_text(old, token)}"
        logger.info(reason)
        return Outcome(
            status=Status.SET,
            reason=reason,
            token=token,
            source="manual",
            old_fingerprint=old.fingerprint if old else None,
        )

    def _verify_by_hand(self, token: Token) -> None:
        try:
            self._confirm(token)
        except DhanApiError as exc:
            if refused_by_dhan(exc):
                raise TokenRefused(
                    f"--set-token: Dhan refused token {token.fingerprint} ({exc}); the token "
                    "file is unchanged: generate a new token on web.dhan.co"
                ) from None
            raise DhanApiError(
                f"--set-token: could not confirm token {token.fingerprint} with Dhan ({exc}); "
                f"the token file is unchanged: check the network and [dhan] api_base, or add "
                "--no-verify to write it without asking Dhan"
            ) from None

    # -- the run under the lock ---------------------------------------------------------------

    def _run_locked(self, *, force: bool, dry_run: bool) -> Outcome:
        now = self.clock()
        if not dry_run:
            self._install_recovery_file(now)
        record = self._read_current()
        token = record.token if record else None
        source = record.source if record else None
        refusal = self.state.refusal(token.fingerprint) if token else None
        decision = self._decide(token, now, force=force, refusal=refusal)
        self._log_decision(decision, token)
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
                source,
            )
        if token and decision.action in (Action.NOT_DUE, Action.POSTPONED):
            accepted = self._confirm_now_and_then(token, now)
            if accepted:
                self._resolve(token, source)
            if accepted is not False:
                status = Status.OK if decision.action is Action.NOT_DUE else Status.POSTPONED
                return Outcome(
                    status=status,
                    reason=decision.reason,
                    action=decision.action,
                    token=token,
                    source=source,
                    due_at=decision.due_at,
                )
            refusal = self.state.refusal(token.fingerprint)
            decision = self._decide(token, now, force=force, refusal=refusal)
            self._log_decision(decision, token)
        if decision.action is Action.MANUAL:
            blocked = self._blocked_credentials(force)
            if blocked:
                return self._credentials_wrong(blocked, token, record)
            return self._manual(decision.reason, token, record)
        return self._obtain(decision, record, now)

    def _decide(
        self, token: Token | None, now: dt.datetime, *, force: bool, refusal: Mark | None
    ) -> Decision:
        refused = None
        if refusal:
            refused = f"{refusal.detail} at {local_time(refusal.at, self.config.session.tz)}"
        can_regenerate = self.credentials is not None and not self._blocked_credentials(force)
        policy = Policy.from_config(self.config)
        return decide(
            token, now, policy, can_regenerate=can_regenerate, force=force, refused=refused
        )

    def _log_decision(self, decision: Decision, token: Token | None) -> None:
        logger.info(
            "decision: %s: %s",
            decision.action.value,
            decision.reason,
            extra={
                "action": decision.action.value,
                "fingerprint": token.fingerprint if token else None,
            },
        )

    def _confirm_now_and_then(self, token: Token, now: dt.datetime) -> bool | None:
        """Ask Dhan whether a token that is not due still works, at most once per
        `confirm_every`. True: accepted (now or recently); False: refused; None: unknown."""
        accepted = self.state.accepted(token.fingerprint)
        if accepted and now - accepted.at < self.config.token.confirm_every:
            return True
        try:
            self._confirm(token)
        except DhanApiError as exc:
            if refused_by_dhan(exc):
                logger.error("Dhan refused token %s: %s", token.fingerprint, exc)
                self.state.record_refused(token.fingerprint, now, f"profile check: {exc}")
                return False
            logger.warning(
                "could not confirm token %s with Dhan (%s); the next run tries again",
                token.fingerprint,
                exc,
            )
            return None
        self.state.record_accepted(token.fingerprint, now, "profile check")
        return True

    def _blocked_credentials(self, force: bool) -> Mark | None:
        """The refusal of these very PIN+TOTP credentials, unless --force retries them."""
        if self.credentials is None or force:
            return None
        return self.state.credentials_refused(self.credentials.fingerprint)

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
                    self.state.record_refused(token.fingerprint, now, str(exc))
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
            if exc.wrong_credentials:
                return dataclasses.replace(self._credentials_wrong(None, token, record), error=exc)
            return dataclasses.replace(self._failed(str(exc), action, token, record), error=exc)
        try:
            new_record = self._write(new, source, self.clock())
        except OSError as exc:
            return self._write_failed(exc, new, source, action, record)
        self.state.record_accepted(new.fingerprint, self.clock(), f"issued by Dhan ({source})")
        how = "renewed with RenewToken" if source == "renew" else "regenerated with PIN+TOTP"
        reason = f"token {how}: {self._renewed_text(record, new)}"
        logger.info(reason, extra={"action": action.value, "fingerprint": new.fingerprint})
        self._after_write(new_record)
        return Outcome(
            status=Status.RENEWED,
            reason=reason,
            action=action,
            token=new,
            source=source,
            due_at=new.expires_at - self.config.token.renew_before,
            old_fingerprint=record.fingerprint if record else None,
        )

    def _renew(self, token: Token) -> IssuedToken:
        try:
            return self.api().renew_token(token.access_token)
        except DhanApiError as exc:
            raise RenewalFailed(f"RenewToken failed: {exc}", refused=refused_by_dhan(exc)) from None

    def _regenerate(self) -> IssuedToken:
        creds = self.credentials
        assert creds is not None
        try:
            issued = self.api().generate_access_token(creds.pin, creds.totp_code)
        except DhanApiError as exc:
            wrong = credentials_refused(exc)
            if wrong:  # never again with these two, until they change or --force
                self.state.record_credentials_refused(creds.fingerprint, self.clock(), str(exc))
            raise RenewalFailed(
                f"PIN+TOTP regeneration failed: {exc}", wrong_credentials=wrong
            ) from None
        self.state.forget_credentials_refusal()
        return issued

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
        if token is None or token.expired(now) or self.state.refusal(token.fingerprint):
            reason = f"{why}; there is no valid token: data stops now; a person must log in"
            self._alert(
                "manual_login_needed", "critical", self._runbook(reason, token), token, source
            )
            return Outcome(
                status=Status.MANUAL,
                reason=reason,
                action=action,
                token=token,
                source=source,
            )
        remaining = token.remaining(now)
        severity = "warning" if remaining > self.config.token.must_renew_before else "critical"
        reason = (
            f"{why}; the current token {token.fingerprint} stays valid until "
            f"{local_time(token.expires_at, tz)} ({format_remaining(remaining)}); the next run retries"
        )
        logger.error(reason, extra={"action": action.value})
        self._alert("renewal_failed", severity, reason, token, source)
        return Outcome(
            status=Status.FAILED,
            reason=reason,
            action=action,
            token=token,
            source=source,
            due_at=now,
        )

    def _manual(self, why: str, token: Token | None, record: TokenRecord | None) -> Outcome:
        source = record.source if record else None
        logger.critical("manual login needed: %s", why)
        self._alert("manual_login_needed", "critical", self._runbook(why, token), token, source)
        return Outcome(
            status=Status.MANUAL, reason=why, action=Action.MANUAL, token=token, source=source
        )

    def _credentials_wrong(
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
        logger.critical(why)
        self._alert("credentials_wrong", "critical", self._runbook(why, token), token, source)
        return Outcome(
            status=Status.MANUAL, reason=why, action=Action.REGENERATE, token=token, source=source
        )

    def _runbook(self, why: str, token: Token | None) -> str:
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

    def _write_failed(
        self, exc: OSError, new: Token, source: str, action: Action, record: TokenRecord | None
    ) -> Outcome:
        """The worst case: Dhan has already killed the old token and the new one is not saved."""
        where = self.store.recovery_path
        try:
            self.store.write_recovery(TokenRecord.from_token(new, source, self.clock()))
            kept = f"it is kept in {where} (0600); the next run installs it, or run: mv {where} {self.store.path}"
        except OSError as exc2:
            kept = f"the recovery file {where} could not be written either ({exc2.strerror})"
        reason = (
            f"Dhan issued new token {new.fingerprint} (expires "
            f"{local_time(new.expires_at, self.config.session.tz)}) but writing {self.store.path} "
            f"failed ({exc.__class__.__name__}: {exc.strerror or exc}); the old token is no longer "
            f"valid at Dhan; {kept}"
        )
        logger.critical(reason, extra={"fingerprint": new.fingerprint})
        self._alert("write_failed", "critical", reason, new, source)
        return Outcome(
            status=Status.MANUAL,
            reason=reason,
            action=action,
            token=new,
            source=source,
            old_fingerprint=record.fingerprint if record else None,
        )

    # -- helpers ------------------------------------------------------------------------------

    def _read_current(self) -> TokenRecord | None:
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
        status = Status.OK
        if token and not token.expired(now):
            try:
                self._confirm(token)
                checks.append("profile check of the current token: ok")
            except DhanApiError as exc:
                checks.append(f"profile check of the current token: FAILED: {exc}")
                status = Status.MANUAL if refused_by_dhan(exc) else Status.FAILED
        if self.credentials is None:
            checks.append("PIN+TOTP: not configured")
        elif blocked := self._blocked_credentials(force=False):
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

    def _renewed_text(self, old: TokenRecord | None, new: Token) -> str:
        before = old.fingerprint if old else "none"
        return (
            f"{before} -> {new.fingerprint}, new expiry "
            f"{local_time(new.expires_at, self.config.session.tz)}"
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
