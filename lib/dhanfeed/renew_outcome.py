"""How a renew_token run ended: one status word, its exit code, one sentence, one JSON shape.

Every outcome (a run, `--check`, `--dry-run`, `--set-token`, an error) is an `Outcome`; the
text line is `renew_token: <reason>` and `--json` prints `as_json()`, whose keys never vary
(absent facts are null). The status vocabulary is stable and each word has one exit code.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from typing import Any

from dhanfeed.errors import ExitCode
from dhanfeed.renewal import Action
from dhanfeed.token import Token


class Status(enum.StrEnum):
    """How a run ended, in one word: the `status` of `--json`."""

    OK = "ok"  # the token is valid and not due (or, with --dry-run/--check, all is well)
    POSTPONED = "postponed"  # due, but renewing waits for the end of the trading session
    RENEWED = "renewed"  # a new token from Dhan was written
    SET = "set"  # a hand-made token was installed with --set-token
    FAILED = "failed"  # an attempt failed; the current token is still valid; next run retries
    USAGE_ERROR = "usage_error"  # bad option or bad config
    MANUAL = "manual"  # no valid token and no automatic way to get one: a person must act
    LOCKED = "locked"  # another run holds the lock; nothing done

    @property
    def exit_code(self) -> ExitCode:
        return _EXIT[self]

    @classmethod
    def of_exit(cls, code: int) -> Status:
        """The status word of an error's exit code (an unknown one counts as a failure)."""
        return _BY_EXIT.get(code, cls.FAILED)


_EXIT = {
    Status.OK: ExitCode.OK,
    Status.POSTPONED: ExitCode.OK,
    Status.RENEWED: ExitCode.OK,
    Status.SET: ExitCode.OK,
    Status.FAILED: ExitCode.RENEWAL_FAILED,
    Status.USAGE_ERROR: ExitCode.USAGE,
    Status.MANUAL: ExitCode.MANUAL_LOGIN,
    Status.LOCKED: ExitCode.LOCKED,
}
_BY_EXIT: dict[int, Status] = {
    ExitCode.RENEWAL_FAILED: Status.FAILED,
    ExitCode.USAGE: Status.USAGE_ERROR,
    ExitCode.MANUAL_LOGIN: Status.MANUAL,
    ExitCode.LOCKED: Status.LOCKED,
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Outcome:
    status: Status
    reason: str  # one sentence: what happened and what comes next
    action: Action | None = None  # what the decision was (or, in a dry run, would be)
    token: Token | None = None  # the token in force after the run
    source: str | None = None
    due_at: dt.datetime | None = None
    old_fingerprint: str | None = None
    dry_run: bool = False
    checks: tuple[str, ...] = ()  # dry-run findings
    error: BaseException | None = dataclasses.field(default=None, repr=False)  # for --debug

    @property
    def exit_code(self) -> ExitCode:
        return self.status.exit_code

    def as_json(self, now: dt.datetime) -> dict[str, Any]:
        """The one `--json` schema (README, "The JSON output")."""
        token = self.token
        return {
            "status": self.status.value,
            "exit_code": int(self.exit_code),
            "reason": self.reason,
            "action": self.action.value if self.action else None,
            "dry_run": self.dry_run,
            "client_id": token.client_id if token else None,
            "fingerprint": token.fingerprint if token else None,
            "old_fingerprint": self.old_fingerprint,
            "source": self.source,
            "expires_at": token.expires_at.isoformat() if token else None,
            "remaining_s": int(token.remaining(now).total_seconds()) if token else None,
            "due_at": self.due_at.isoformat() if self.due_at else None,
            "checks": list(self.checks),
        }
