"""Alerts: a JSON line per alert, Apprise channels, healthchecks.io pings, the on_alert hook.

Severity escalates with the time left (chosen by the caller: warning while the token has more
than `must_renew_before` left, critical below it or when a person must act). The same
condition is not re-sent within `[alerts] repeat_every` unless its severity rises; the state
lives next to the token file. A cleared condition sends one recovery message. A failing
channel is a warning in the log: it never changes the exit code or hides the job's error.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

from dhanfeed.apprise_urls import load_apprise, quiet_deprecations, scheme
from dhanfeed.files import load_state, save_state
from dhanfeed.hooks import hook_environment, run_hook
from dhanfeed.logs import redact
from dhanfeed.severity import Severity
from dhanfeed.token import parse_aware_time
from dhanfeed.version import USER_AGENT

if TYPE_CHECKING:
    from dhanfeed.config import AlertsSection, HooksSection
    from dhanfeed.token import Token

logger = logging.getLogger(__name__)

_TITLE = "dhanfeed {severity}: {condition} (client {client_id})"


class Alerter:
    def __init__(
        self,
        section: AlertsSection,
        *,
        client_id: str,
        state_path: Path,
        token_file: Path | None = None,
        hooks: HooksSection | None = None,
        clock: Callable[[], dt.datetime],  # the program's clock (`Clock.now`)
    ) -> None:
        self.section = section
        self.client_id = client_id
        self.state_path = state_path
        self.token_file = token_file
        self.hooks = hooks
        self.clock = clock
        self._raised: set[str] = set()  # conditions raised in this run: not resolved by it
        self._http: Any = None

    # -- public -------------------------------------------------------------------------------

    def alert(
        self,
        condition: str,
        severity: Severity,
        message: str,
        *,
        token: Token | None = None,
        source: str | None = None,
    ) -> bool:
        """Raise `condition`; True when it was sent (not suppressed by de-duplication)."""
        severity = Severity(severity)  # ValueError for a word outside the vocabulary
        now = self.clock()
        message = redact(message)
        self._raised.add(condition)
        state = self._load_state()
        previous = state.get(condition)
        if previous and severity.rank <= _rank(previous.get("severity")):
            last = parse_aware_time(previous.get("last_sent"))
            if last and now - last < self.section.repeat_every:
                logger.info(
                    "alert %s (%s) not re-sent: already sent at %s",
                    condition,
                    severity,
                    previous.get("last_sent"),
                    extra={"alert_condition": condition},
                )
                previous["last_seen"] = now.isoformat()
                self._save_state(state)
                return False
        state[condition] = {
            "severity": severity,
            "since": previous.get("since", now.isoformat()) if previous else now.isoformat(),
            "last_sent": now.isoformat(),
            "last_seen": now.isoformat(),
            "message": message,
        }
        self._save_state(state)
        self._send(condition, severity, message, token, source, now)
        return True

    def resolve(
        self, *, token: Token | None = None, source: str | None = None, keep: tuple[str, ...] = ()
    ) -> list[str]:
        """Send a recovery message for each active condition not raised in this run."""
        return self._recover(
            lambda c: c not in self._raised and c not in keep, token=token, source=source
        )

    def clear(
        self, prefix: str, *, token: Token | None = None, source: str | None = None
    ) -> list[str]:
        """Send a recovery message for each active condition whose name starts with `prefix`
        (a long-running process: its condition ended, whenever it was raised)."""
        cleared = self._recover(lambda c: c.startswith(prefix), token=token, source=source)
        self._raised.difference_update(cleared)
        return cleared

    def _recover(
        self, ended: Callable[[str], bool], *, token: Token | None, source: str | None
    ) -> list[str]:
        state = self._load_state()
        cleared = [c for c in state if ended(c)]
        if not cleared:
            return []
        now = self.clock()
        for condition in cleared:
            since = state.pop(condition).get("since", "?")
            fp = (
                f" token {token.fingerprint} valid until {token.expires_at.isoformat()}"
                if token
                else ""
            )
            self._send(
                condition,
                Severity.RECOVERY,
                f"recovered: {condition} (active since {since}) has cleared;{fp}",
                token,
                source,
                now,
            )
        self._save_state(state)
        return cleared

    def healthcheck(self, kind: str) -> None:
        """healthchecks.io convention: <url>/start, <url> (success), <url>/fail."""
        base = self.section.healthcheck_url.rstrip("/")
        if not base:
            return
        url = {"start": f"{base}/start", "success": base, "fail": f"{base}/fail"}[kind]
        try:
            self._http = self._http or requests.Session()
            resp = self._http.get(
                url,
                timeout=self.section.timeout.total_seconds(),
                headers={"User-Agent": USER_AGENT},
            )
            if resp.status_code >= 400:
                logger.warning("healthcheck ping %s answered HTTP %d", kind, resp.status_code)
        except Exception as exc:  # a monitoring ping never hides the job's own result
            logger.warning("healthcheck ping %s failed: %s", kind, exc.__class__.__name__)

    def channels(self) -> list[str]:
        """What is configured, for --dry-run (URLs reduced to their scheme: they hold keys)."""
        out = [f"alert log: {self.section.log_file}"]
        out += [f"apprise: {scheme(url)}" for url in self.section.urls]
        if self.section.healthcheck_url:
            out.append("healthcheck: configured")
        if self.hooks and self.hooks.on_alert:
            out.append("on_alert hook: configured")
        if len(out) == 1:
            out.append("no alert channel besides the log file ([alerts] urls is empty)")
        return out

    # -- channels -----------------------------------------------------------------------------

    def _send(
        self,
        condition: str,
        severity: Severity,
        message: str,
        token: Token | None,
        source: str | None,
        now: dt.datetime,
    ) -> None:
        record = {
            "time": now.isoformat(),
            "severity": severity,
            "condition": condition,
            "client_id": self.client_id,
            "fingerprint": token.fingerprint if token else None,
            "expires_at": token.expires_at.isoformat() if token else None,
            "source": source,
            "message": message,
        }
        log = logger.critical if severity is Severity.CRITICAL else logger.warning
        log("alert %s %s: %s", severity, condition, message, extra={"alert_condition": condition})
        self._write_line(record)
        if self.section.urls:
            self._apprise(condition, severity, message)
        if self.hooks and self.hooks.on_alert:
            env = hook_environment(
                event="alert",
                client_id=self.client_id,
                fingerprint=record["fingerprint"],
                expires_at=token.expires_at if token else None,
                source=source,
                severity=severity,
                message=message,
                token_file=self.token_file,
            )
            run_hook("on_alert", self.hooks.on_alert, env, self.hooks.timeout.total_seconds())

    def _write_line(self, record: dict[str, Any]) -> None:
        path = Path(self.section.log_file)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as exc:
            logger.warning("cannot write alert log %s: %s", path, exc.strerror or exc)

    def _apprise(self, condition: str, severity: Severity, message: str) -> None:
        """Send through Apprise in a helper thread, so a stuck channel cannot hang the run."""
        title = _TITLE.format(severity=severity, condition=condition, client_id=self.client_id)
        outcome: dict[str, Any] = {}

        def send() -> None:
            try:
                apprise = load_apprise()
                with quiet_deprecations():
                    kind = {
                        Severity.CRITICAL: apprise.NotifyType.FAILURE,
                        Severity.WARNING: apprise.NotifyType.WARNING,
                    }.get(severity, apprise.NotifyType.SUCCESS)
                    sender = apprise.Apprise()
                    for url in self.section.urls:
                        if not sender.add(url):  # config load refuses these; kept as a guard
                            logger.warning(
                                "alert channel %s is not a valid Apprise URL", scheme(url)
                            )
                    outcome["ok"] = bool(len(sender)) and bool(
                        sender.notify(body=message, title=title, notify_type=kind)
                    )
            except Exception as exc:
                outcome["error"] = exc.__class__.__name__

        worker = threading.Thread(target=send, name="apprise", daemon=True)
        worker.start()
        worker.join(self.section.timeout.total_seconds())
        if worker.is_alive():
            logger.warning(
                "alert channels did not finish within %s; moving on", self.section.timeout
            )
        elif not outcome.get("ok"):
            logger.warning(
                "alert %s could not be delivered to every channel (%s)",
                condition,
                outcome.get("error", "a channel failed"),
            )

    # -- state --------------------------------------------------------------------------------

    def _load_state(self) -> dict[str, dict[str, Any]]:
        raw = load_state(self.state_path, what="alert state")
        return {k: v for k, v in raw.items() if isinstance(v, dict)}

    def _save_state(self, state: dict[str, dict[str, Any]]) -> None:
        save_state(self.state_path, state, what="alert state")


def _rank(stored: object) -> int:
    """The rank of a severity read back from the state file (anything unknown ranks lowest)."""
    try:
        return Severity(str(stored)).rank
    except ValueError:
        return 0


def alert_state_path(token_file: Path) -> Path:
    """Kept next to the token file, so that it shares its directory and its lifetime."""
    return token_file.with_name(token_file.name + ".alerts.json")
