"""The facts `bin/status` and the status page show, gathered at one instant.

`gather(config, now, ...)` reads what the programs leave behind (the token file and what
renew_token remembers about it, the renewer's and backfill's metrics textfiles, the
collector's status file, the database through `candle_reader`) and never writes, locks or
calls Dhan; it returns a `health_report.Report` with `health_verdict.assess`'s findings.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from dhanfeed.backfill_metrics import BACKFILL
from dhanfeed.candle_reader import open_reader
from dhanfeed.config import Config
from dhanfeed.credentials import load_credentials
from dhanfeed.errors import DhanfeedError
from dhanfeed.health_report import (
    BackfillFacts,
    CollectorFacts,
    RenewerFacts,
    Report,
    SocketFacts,
    StoreFacts,
    TokenFacts,
)
from dhanfeed.health_verdict import assess
from dhanfeed.renew_metrics import PROGRAM as RENEWER
from dhanfeed.renew_state import RenewState, renew_state_path
from dhanfeed.renewal import Policy, decide, local_time
from dhanfeed.session import SessionCalendar
from dhanfeed.status import STATUS_FILE
from dhanfeed.textfiles import account_textfile
from dhanfeed.token_store import TokenRecord, TokenStore

STATUS_STALE_RUNS = 5  # a status file older than this many rewrites: the collector hangs
STATUS_STALE_MIN_S = 10.0
HEAL_WITHIN_S = 30 * 60  # backfill runs every 15 min in the session: two runs to heal a gap


def gather(
    config: Config, now: dt.datetime, *, previous: Mapping[str, Any] | None = None
) -> Report:
    """The facts at `now`. `previous`: an earlier status of the collector, for messages/s."""
    tz = config.session.tz
    calendar = SessionCalendar.from_config(config.session)
    snapshot, age = read_status_file(config.state_dir / STATUS_FILE, now)
    state = RenewState(
        renew_state_path(config.token.file), collector_status=config.state_dir / STATUS_FILE
    )
    try:
        record: TokenRecord | DhanfeedError = TokenStore(config.token.file).read_for(
            config.dhan.client_id
        )
    except DhanfeedError as exc:
        record = exc
    token = _token(config, now, record, state)
    report = Report(
        checked_at=now.astimezone(tz).isoformat(timespec="seconds"),
        timezone=config.session.timezone,
        client_id=config.dhan.client_id,
        in_session=calendar.current(now) is not None,
        token=token,
        renewer=_renewer(config, now, record, token),
        collector=_collector(config, now, snapshot, age, previous),
        store=_store(config, now),
        backfill=_backfill(config, now),
    )
    return dataclasses.replace(report, findings=assess(report, config))


def read_status_file(path: Path, now: dt.datetime) -> tuple[dict[str, Any] | None, float | None]:
    """The collector's status file and its age in seconds; (None, None) if there is none."""
    try:
        mtime = path.stat().st_mtime
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, None
    if not isinstance(data, dict):
        return None, None
    data["snapshot_utc"] = mtime  # when it was taken, finer than its written_at
    return data, max(0.0, now.timestamp() - mtime)


def read_textfile(path: Path) -> dict[str, float]:
    """Sample name → value of a Prometheus textfile (labels ignored); {} if unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
        return {
            s.name: float(s.value)
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
    except (OSError, ValueError):
        return {}


def _iso(epoch: float | None, tz: dt.tzinfo) -> str | None:
    if epoch is None:
        return None
    return dt.datetime.fromtimestamp(epoch, tz).isoformat(timespec="seconds")


def _can_regenerate(config: Config, state: RenewState) -> bool:
    """PIN+TOTP are configured and Dhan has not called them wrong (checked for presence
    only, never shown)."""
    try:
        credentials = load_credentials(config.totp)
    except DhanfeedError:
        return False
    return credentials is not None and not state.credentials_refused(credentials.fingerprint)


def _token(
    config: Config, now: dt.datetime, record: TokenRecord | DhanfeedError, state: RenewState
) -> TokenFacts:
    can_regenerate = _can_regenerate(config, state)
    if isinstance(record, DhanfeedError):
        return TokenFacts(present=False, problem=str(record), can_regenerate=can_regenerate)
    token = record.token
    refusal = state.refusal(token.fingerprint)  # the renewer's own, or the collector's feed
    tz = config.session.tz
    return TokenFacts(
        present=True,
        fingerprint=token.fingerprint,
        source=record.source,
        expires_at=token.expires_at.astimezone(tz).isoformat(timespec="seconds"),
        remaining_s=int(token.remaining(now).total_seconds()),
        written_at=record.written_at.astimezone(tz).isoformat(timespec="seconds"),
        refused=refusal is not None,
        refused_detail=f"{refusal.detail} at {local_time(refusal.at, tz)}" if refusal else None,
        can_regenerate=can_regenerate,
    )


def _renewer(
    config: Config, now: dt.datetime, record: TokenRecord | DhanfeedError, token: TokenFacts
) -> RenewerFacts:
    tz = config.session.tz
    prom = read_textfile(account_textfile(config.metrics_dir, RENEWER, config.dhan.client_id))
    code = prom.get("dhanfeed_renew_last_exit_code")
    facts = RenewerFacts(
        last_run=_iso(prom.get("dhanfeed_renew_last_run_timestamp_seconds"), tz),
        last_exit_code=None if code is None else int(code),
        last_success=_iso(prom.get("dhanfeed_renew_last_success_timestamp_seconds"), tz),
    )
    if isinstance(record, DhanfeedError):
        return facts
    decision = decide(
        record.token,
        now,
        Policy.from_config(config),
        can_regenerate=token.can_regenerate,
        refused=token.refused_detail,
    )
    due = decision.due_at
    return dataclasses.replace(
        facts,
        next=decision.reason,
        due_at=due.astimezone(tz).isoformat(timespec="seconds") if due else None,
    )


def _collector(
    config: Config,
    now: dt.datetime,
    snap: Mapping[str, Any] | None,
    age: float | None,
    previous: Mapping[str, Any] | None,
) -> CollectorFacts:
    if snap is None:
        return CollectorFacts(state="never started")
    pid = snap.get("pid") if isinstance(snap.get("pid"), int) else None
    if not snap.get("up"):
        state = "stopped"
    elif pid is None or not pid_alive(pid):
        state = "crashed"
    else:
        stale_after = max(
            STATUS_STALE_MIN_S, STATUS_STALE_RUNS * config.collector.status_every.total_seconds()
        )
        state = "unresponsive" if age is not None and age > stale_after else "running"
    t = now.timestamp()

    def age_of(epoch: object) -> float | None:
        return round(max(0.0, t - float(epoch)), 1) if isinstance(epoch, int | float) else None

    sockets = [
        SocketFacts(
            shard=int(s.get("shard", 0)),
            state=str(s.get("state")),
            role=str(s.get("role")),
            instruments=int(s.get("instruments", 0)),
            last_data_age_s=age_of(s.get("last_data_utc")),
        )
        for s in snap.get("sockets", [])
        if isinstance(s, dict)
    ]
    return CollectorFacts(
        state=state,
        pid=pid,
        started_at=_iso(snap.get("started_utc"), config.session.tz),
        status_age_s=None if age is None else round(age, 1),
        token_fingerprint=snap.get("token_fp"),
        sockets=sockets if state in ("running", "unresponsive") else [],
        sockets_live=int(snap.get("sockets_live") or 0) if state == "running" else 0,
        last_data_age_s=age_of(snap.get("last_data_utc")),
        messages_per_s=messages_per_s(previous, snap),
        swaps=int(snap.get("swaps") or 0),
        reconnects=int(snap.get("reconnects") or 0),
        dropped=int(snap.get("dropped") or 0),
        ticks_dropped=int(snap.get("ticks_dropped") or 0),
        store_errors=int(snap.get("store_errors") or 0),
    )


def messages_per_s(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> float | None:
    """Data packets per second between two snapshots of the same collector run."""
    if not before or before.get("pid") != after.get("pid"):
        return None
    try:
        span = float(after["snapshot_utc"]) - float(before["snapshot_utc"])
        packets = int(after["packets"]) - int(before["packets"])
    except (KeyError, TypeError, ValueError):
        return None
    return round(packets / span, 1) if span > 0 and packets >= 0 else None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def _day_bounds(config: Config, now: dt.datetime) -> tuple[int, int]:
    day = now.astimezone(config.session.tz).date()
    start = dt.datetime.combine(day, dt.time(0), tzinfo=config.session.tz)
    return int(start.timestamp()), int((start + dt.timedelta(days=1)).timestamp())


def _store(config: Config, now: dt.datetime) -> StoreFacts:
    database = config.collector.database
    start, end = _day_bounds(config, now)
    try:
        with open_reader(database, config.dhan.client_id) as reader:
            return StoreFacts(
                database=str(database),
                size_bytes=reader.size_bytes(),
                candles_today=reader.candle_count(start, end),
                gaps_today=reader.gap_count(start, end),
            )
    except DhanfeedError as exc:
        return StoreFacts(database=str(database), problem=str(exc))


def _backfill(config: Config, now: dt.datetime) -> BackfillFacts:
    # Gaps of today's session that backfill (every 15 min) has had time to heal: a gap
    # outside the session has no Dhan bars to heal it with, and a fresh one waits its turn.
    session = SessionCalendar.from_config(config.session).session_on(
        now.astimezone(config.session.tz).date()
    )
    heal_window = (
        (session.start.timestamp(), min(session.end.timestamp(), now.timestamp() - HEAL_WITHIN_S))
        if session
        else (0.0, 0.0)
    )
    prom = read_textfile(account_textfile(config.metrics_dir, BACKFILL, config.dhan.client_id))
    code = prom.get("dhanfeed_backfill_last_exit_code")
    facts = BackfillFacts(
        last_run=_iso(prom.get("dhanfeed_backfill_last_run_timestamp_seconds"), config.session.tz),
        last_exit_code=None if code is None else int(code),
    )
    try:
        with open_reader(config.collector.database, config.dhan.client_id) as reader:
            unhealed = reader.unhealed_gaps(*heal_window)
            rec = reader.latest_reconciliation()
    except DhanfeedError:
        return facts
    facts = dataclasses.replace(facts, unhealed_gaps=unhealed)
    if rec is None:
        return facts
    return dataclasses.replace(
        facts,
        reconciled_day=rec.day,
        minutes_compared=rec.minutes_compared,
        minutes_differing=rec.minutes_differing,
        volume_differing=rec.volume_differing,
    )
