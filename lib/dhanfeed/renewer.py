"""The renewer: carries out `renewal.decide` under the token-file lock.

It installs a token an earlier run could not (`renew_recovery`), reads the token file and
what Dhan last said about it (`renew_state`), calls Dhan, checks and writes the new token,
alerts, and returns an `Outcome` for the CLI to report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dhanfeed.errors import (
    DhanApiError,
    DhanfeedError,
    MalformedAnswer,
    TokenDirUnwritable,
    TokenFileCorrupt,
    TokenFileError,
    TokenFileMissing,
    TokenFormatError,
    TokenRefused,
    UsageError,
)
from dhanfeed.renew_outcome import WOULD, Outcome, Status
from dhanfeed.renew_recovery import raw_answer, recover
from dhanfeed.renew_state import Mark, RenewState
from dhanfeed.renewal import Action, Decision, Policy, decide, local_time
from dhanfeed.token import Token, fingerprint, format_remaining, parse_token
from dhanfeed.token_store import TokenRecord, rejected_record

if TYPE_CHECKING:
    from dhanfeed.alerts import Alerter
    from dhanfeed.config import Config
    from dhanfeed.credentials import Credentials
    from dhanfeed.dhan_api import DhanApi, IssuedToken
    from dhanfeed.files import Reserved
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


def transient(exc: DhanApiError) -> bool:
    """No answer, a server error or a malformed answer: a later try may well succeed."""
    if isinstance(exc, MalformedAnswer) or exc.retryable:
        return True
    return exc.status is None or exc.status >= 500


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


class Rejected(Exception):
    """Dhan issued a token that the checks refuse (unreadable, another client, expired)."""


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
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(self.store.lock())
            except TokenDirUnwritable as exc:  # a read-only state directory: nothing can be done
                record = self._read_quietly()
                no_room = self._no_room(exc, None, record.token if record else None, record)
                self._ping("fail")
                return no_room
            self._ping("start")
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
                ok = outcome is not None and outcome.exit_code == 0
                self._ping("success" if ok else "fail")
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
            record = TokenRecord.from_token(token, "manual", now)
            try:
                self.store.write(record)
            except OSError as exc:
                raise DhanfeedError(
                    f"--set-token: cannot write {self.store.path} ({exc.strerror or exc}); "
                    "the token was not installed: free space, then run --set-token again",
                    path=self.store.path,
                ) from None
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
            recover(self.store, self.config.dhan.client_id, now)
        record = self._read_current()
        token = record.token if record else None
        source = record.source if record else None
        refusal = self.state.refusal(token.fingerprint) if token else None
        decision = self._decide(token, now, force=force, refusal=refusal)
        self._log_decision(decision, token)
        if dry_run:
            return self._dry_run(record, decision, now)
        if token and decision.clock_behind:
            self._alert(
                "clock_behind",
                "warning",
                f"the system clock is behind the issue time of token {token.fingerprint} "
                f"({now.isoformat()} < {token.issued_at.isoformat()}): fix NTP; "
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
        try:
            slot = self.store.reserve()  # proof that the answer can be saved, before asking Dhan
        except TokenDirUnwritable as exc:
            return self._no_room(exc, decision.action, token, record)
        with slot:  # an unused reservation is removed; a filled one is kept
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
                                f"{exc}; no PIN+TOTP is configured: a person must log in",
                                token,
                                record,
                            )
                        logger.warning("%s; regenerating with PIN+TOTP", exc)
                        action = Action.REGENERATE
                        issued, source = self._regenerate(), "totp"
                else:
                    issued, source = self._regenerate(), "totp"
            except RenewalFailed as exc:
                if exc.wrong_credentials:
                    outcome = self._credentials_wrong(None, token, record)
                else:
                    outcome = self._failed(str(exc), action, token, record, transient=exc.transient)
                return dataclasses.replace(outcome, error=exc)
            self.on_issued()
            return self._keep(slot, issued, source, action, record)

    def _keep(
        self,
        slot: Reserved,
        issued: IssuedToken,
        source: str,
        action: Action,
        record: TokenRecord | None,
    ) -> Outcome:
        """Dhan has answered with a token (and so killed the old one): save it first, whatever
        it is, into the space reserved for it; only then judge and report."""
        now = self.clock()
        try:  # fsynced before any check: if this run dies now, the next one finds it
            slot.fill(raw_answer(issued, self.config.dhan.client_id, source, now))
        except OSError as exc:
            logger.error("cannot save Dhan's answer before checking it: %s", exc.strerror or exc)
        try:
            new = self._check_new(issued, now)
        except Rejected as exc:
            return self._rejected(slot, issued, source, str(exc), action, record)
        new_record = TokenRecord.from_token(new, source, now)
        try:
            where = self.store.save(slot, new_record)
        except OSError as exc:  # even writing into allocated blocks failed (an I/O error)
            return self._write_failed(exc, new, source, action, record, kept=None)
        if where != self.store.path:
            return self._write_failed(None, new, source, action, record, kept=where)
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
            issued = self.api().generate_access_token(
                creds.pin, lambda: creds.totp_code(self.clock())
            )
        except DhanApiError as exc:
            wrong = credentials_refused(exc)
            if wrong:  # never again with these two, until they change or --force
                self.state.record_credentials_refused(creds.fingerprint, self.clock(), str(exc))
            raise RenewalFailed(
                f"PIN+TOTP regeneration failed: {exc}",
                wrong_credentials=wrong,
                transient=transient(exc),
            ) from None
        self.state.forget_credentials_refusal()
        return issued

    def _check_new(self, issued: IssuedToken, now: dt.datetime) -> Token:
        """A new token must be readable, unexpired and for our client to become the token file.

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
        if new.client_id != self.config.dhan.client_id:
            raise Rejected(
                f"the new token {new.fingerprint} is for client {new.client_id}, "
                f"not {self.config.dhan.client_id}"
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
        self,
        why: str,
        action: Action,
        token: Token | None,
        record: TokenRecord | None,
        *,
        transient: bool = False,
    ) -> Outcome:
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
            runbook = self._runbook(reason, token)
            return self._end(
                Status.MANUAL, reason, "manual_login_needed", action, token, source, alert=runbook
            )
        remaining = token.remaining(now)
        severity = "warning" if remaining > self.config.token.must_renew_before else "critical"
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

    def _manual(self, why: str, token: Token | None, record: TokenRecord | None) -> Outcome:
        source = record.source if record else None
        runbook = self._runbook(why, token)
        return self._end(
            Status.MANUAL, why, "manual_login_needed", Action.MANUAL, token, source, alert=runbook
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
        runbook = self._runbook(why, token)
        return self._end(
            Status.MANUAL, why, "credentials_wrong", Action.REGENERATE, token, source, alert=runbook
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

    def _no_room(
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

    def _rejected(
        self,
        slot: Reserved,
        issued: IssuedToken,
        source: str,
        problem: str,
        action: Action,
        record: TokenRecord | None,
    ) -> Outcome:
        """Dhan issued a token the checks refuse: keep it (0600) and say what happens next."""
        now = self.clock()
        fp = fingerprint(issued.access_token)
        try:
            client = parse_token(issued.access_token, expires_hint=now).client_id
        except TokenFormatError:
            client = self.config.dhan.client_id
        data = rejected_record(
            issued.access_token, client_id=client, source=source, problem=problem, now=now,
            expires_hint=issued.expiry_time,
        )  # fmt: skip
        try:
            kept = f"it is kept in {self.store.save_rejected(slot, data)} (0600)"
        except OSError as exc:
            kept = f"it could not be saved ({exc.strerror or exc})"
        old = record.fingerprint if record else "none"
        if record is not None:  # one token is active at a time: issuing this one killed it
            self.state.record_refused(
                record.fingerprint, now, f"Dhan issued token {fp} in its place ({problem})"
            )
        if self.credentials:
            status, nxt = Status.FAILED, "the next run regenerates with PIN+TOTP"
        else:
            status, nxt = Status.MANUAL, "a person must log in"
        reason = (
            f"Dhan answered {_endpoint(action)} with token {fp}, which the checks refuse: "
            f"{problem}; {kept}; by issuing it Dhan has invalidated the current token {old} "
            f"(one token is active at a time), so the current token is not counted on; {nxt}"
        )
        logger.critical(reason, extra={"action": action.value, "fingerprint": fp})
        message = reason if self.credentials else self._runbook(reason, None)
        self._alert("answer_rejected", "critical", message, None, source)
        return Outcome(
            status=status,
            reason=reason,
            action=action,
            token=record.token if record else None,
            source=record.source if record else None,
        )

    def _write_failed(
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
            else f"it could not be renamed onto {self.store.path}"
        )
        if kept is not None:
            where = (
                f"it is kept in {kept} (0600); the next run installs it, or run: "
                f"mv {kept} {self.store.path}"
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

    def _end(
        self,
        status: Status,
        reason: str,
        condition: str,
        action: Action | None,
        token: Token | None,
        source: str | None,
        *,
        severity: str = "critical",
        alert: str | None = None,
        **outcome: Any,
    ) -> Outcome:
        """The run ends without a new token file: log why (as loud as the alert), raise the
        alert `condition` (with `alert` as its text, when a person needs more than `reason`),
        and return the Outcome."""
        logger.log(
            logging.CRITICAL if severity == "critical" else logging.ERROR,
            reason,
            extra={
                "condition": condition,
                "action": action.value if action else None,
                "fingerprint": token.fingerprint if token else None,
            },
        )
        self._alert(condition, severity, alert or reason, token, source)
        return Outcome(
            status=status, reason=reason, action=action, token=token, source=source, **outcome
        )

    # -- helpers ------------------------------------------------------------------------------

    def _read_quietly(self) -> TokenRecord | None:
        try:
            return self.store.read_for(self.config.dhan.client_id)
        except TokenFileError:
            return None

    def _read_current(self) -> TokenRecord | None:
        try:
            return self.store.read_for(self.config.dhan.client_id)
        except TokenFileMissing as exc:
            logger.warning("%s", exc)
            return None
        except TokenFileCorrupt as exc:
            if self.credentials is None:
                raise
            # Ours to replace (private, regular, not another client's): a new token fixes it.
            logger.warning("%s; regenerating with PIN+TOTP as if it were missing", exc)
            self._alert("token_file_corrupt", "warning", f"{exc}; regenerating with PIN+TOTP")
            return None

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

    def _ping(self, kind: str) -> None:
        if self.alerter:
            self.alerter.healthcheck(kind)

    def _resolve(self, token: Token | None, source: str | None, keep: tuple[str, ...] = ()) -> None:
        if self.alerter:
            self.alerter.resolve(token=token, source=source, keep=keep)


def _endpoint(action: Action) -> str:
    return "RenewToken" if action is Action.RENEW else "generateAccessToken"
