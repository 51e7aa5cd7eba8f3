"""How healthy the gathered facts are, pure: a `Report` and the config's thresholds in, the
findings out, each with a level; the worst level is bin/status's exit code (0 healthy,
1 degraded, 3 a person must act).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from dhanfeed.health_report import Finding, Level, Report
from dhanfeed.renewal import local_time

if TYPE_CHECKING:
    from dhanfeed.config import Config

RENEWER_LATE_S = 2 * 3600 + 600  # hourly runs: two missed runs is worth a look
RECONCILE_DIFFERING_ABOVE = 0.05  # share of reconciled minutes that may differ


def assess(r: Report, config: Config) -> list[Finding]:
    """Findings, worst first. Pure: reads only the report and the config's thresholds."""
    out: list[Finding] = []

    def add(level: Level, message: str) -> None:
        out.append(Finding(level, message))

    def when(iso: str | None) -> str:  # as the screen's other lines show a time
        return local_time(dt.datetime.fromisoformat(iso), config.session.tz) if iso else "?"

    t, c = r.token, r.collector
    if not t.present or (t.remaining_s is not None and t.remaining_s <= 0) or t.refused:
        why = (
            t.problem
            if not t.present
            else f"token {t.fingerprint} was refused by Dhan ({t.refused_detail})"
            if t.refused
            else f"token {t.fingerprint} expired at {when(t.expires_at)}"
        )
        if t.can_regenerate:
            add(
                Level.DEGRADED,
                f"{why}; renew_token will regenerate it with PIN+TOTP on its next run",
            )
        else:
            add(Level.ACT, f"{why}; log in at Dhan and run bin/renew_token --set-token")
    elif (
        t.remaining_s is not None and t.remaining_s < config.token.must_renew_before.total_seconds()
    ):
        add(
            Level.DEGRADED,
            f"token {t.fingerprint} expires at {when(t.expires_at)} and has not been renewed",
        )
    if r.renewer.last_run is None:
        add(Level.DEGRADED, "renew_token has never run here (is its timer or cron entry set up?)")
    else:
        if r.renewer.last_exit_code not in (0, 75):
            add(Level.DEGRADED, f"renew_token's last run exited {r.renewer.last_exit_code}")
        last = dt.datetime.fromisoformat(r.renewer.last_run)
        if (dt.datetime.fromisoformat(r.checked_at) - last).total_seconds() > RENEWER_LATE_S:
            add(
                Level.DEGRADED,
                f"renew_token has not run since {when(r.renewer.last_run)} (is its timer on?)",
            )
    if not c.running:
        if r.in_session:
            add(Level.ACT, f"the collector is not running ({c.state}) during the session: start it")
        elif c.state == "crashed":
            add(Level.DEGRADED, f"the collector crashed (pid {c.pid}): start it before the session")
    elif c.state == "unresponsive":
        add(
            Level.DEGRADED,
            f"the collector (pid {c.pid}) has not written its status for {c.status_age_s}s",
        )
    elif r.in_session:
        stale = config.collector.stale_after.total_seconds()
        down = [
            s for s in c.sockets if (s.role == "live" and s.state != "open") or s.role == "none"
        ]
        if down:
            add(Level.DEGRADED, f"{len(down)} feed socket(s) not live during the session")
        elif c.last_data_age_s is None or c.last_data_age_s > stale:
            add(Level.DEGRADED, f"no data for {c.last_data_age_s}s during the session")
    if c.dropped or c.ticks_dropped or c.store_errors:
        add(
            Level.DEGRADED,
            f"collector dropped {c.dropped} packets/rows ({c.ticks_dropped} raw ticks), {c.store_errors} store errors",
        )
    if r.store.problem:
        add(Level.DEGRADED if c.running else Level.OK, r.store.problem)
    b = r.backfill
    if b.last_exit_code not in (None, 0, 75):
        add(Level.DEGRADED, f"backfill's last run exited {b.last_exit_code}")
    if b.unhealed_gaps and b.last_run is not None:
        add(Level.DEGRADED, f"{b.unhealed_gaps} gap(s) not healed yet")
    if (
        b.minutes_compared
        and (b.minutes_differing or 0) > RECONCILE_DIFFERING_ABOVE * b.minutes_compared
    ):
        add(
            Level.DEGRADED,
            f"{b.minutes_differing} of {b.minutes_compared} minutes differ from Dhan's on {b.reconciled_day}",
        )
    out.sort(key=lambda f: -f.level)
    return [f for f in out if f.level > Level.OK]
