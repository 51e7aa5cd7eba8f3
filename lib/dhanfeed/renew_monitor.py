"""What a renew_token run tells the people and monitors watching it, on every way out.

`Monitor.watch` runs the locked part of a run between the healthcheck pings: "start", then
"success" or "fail" whichever way it ends, so a monitor never stays at "start". An unusable
token file becomes an Outcome and a critical alert; anything else (a run timeout, an OSError,
Ctrl-C) is alerted and raised. A dry run has no alerter and tells nobody.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

from dhanfeed.errors import DhanfeedError, TokenFileError
from dhanfeed.renew_outcome import Outcome, Status
from dhanfeed.severity import Severity

if TYPE_CHECKING:
    from dhanfeed.alerts import Alerter
    from dhanfeed.token import Token


@dataclasses.dataclass(frozen=True)
class Monitor:
    alerter: Alerter | None  # None in a dry run

    def watch(self, run: Callable[[], Outcome]) -> Outcome:
        """`run()` between the pings; its way out is reported whatever it is."""
        self.ping("start")
        outcome: Outcome | None = None
        try:
            outcome = run()
        except TokenFileError as exc:
            outcome = Outcome(status=Status.of_exit(exc.exit_code), reason=str(exc), error=exc)
            self.alert("token_file_unusable", Severity.CRITICAL, f"{exc}; a person must fix it")
        except BaseException as exc:  # a run timeout, an OSError, Ctrl-C: said, then raised
            self.alert("run_stopped", Severity.CRITICAL, f"the run stopped: {describe(exc)}")
            raise
        finally:  # every way out pings
            ok = outcome is not None and outcome.exit_code == 0
            self.ping("success" if ok else "fail")
        return outcome

    def alert(
        self,
        condition: str,
        severity: Severity,
        message: str,
        token: Token | None = None,
        source: str | None = None,
    ) -> None:
        if self.alerter:
            self.alerter.alert(condition, severity, message, token=token, source=source)

    def ping(self, kind: str) -> None:
        if self.alerter:
            self.alerter.healthcheck(kind)

    def resolve(self, token: Token | None, source: str | None, keep: tuple[str, ...] = ()) -> None:
        """Dhan accepts the token in the file: a recovery for each open condition not raised
        in this run, nor in `keep`."""
        if self.alerter:
            self.alerter.resolve(token=token, source=source, keep=keep)


def describe(exc: BaseException) -> str:
    """One line for an alert: the message of an expected error, the type of any other."""
    if isinstance(exc, DhanfeedError):
        return str(exc)
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C or SIGINT)"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.__class__.__name__}: {exc.strerror} ({exc.filename or 'no file'})"
    return f"unexpected {exc.__class__.__name__} (the log has the traceback)"
