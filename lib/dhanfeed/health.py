"""Everything `bin/status` and the status page show, and how healthy it is.

`gather(config, now, ...)` reads what the programs leave behind (the token file and what
renew_token remembers about it, the renewer's and backfill's metrics textfiles, the
collector's status file, the database through `candle_reader`) and never writes, locks or calls Dhan. `assess(report)` is
pure: it turns the facts into findings, each with a level, and the worst level is the exit
code (0 healthy, 1 degraded, 3 a person must act). No token here, only its fingerprint.

The JSON form (`Report.as_json()`, `bin/status --json`, `/api/status`) is documented in
README.md, "bin/status --json"; keys are only ever added.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from dhanfeed.candle_reader import open_reader
from dhanfeed.config import Config
from dhanfeed.credentials import load_credentials
from dhanfeed.errors import DhanfeedError
from dhanfeed.renew_metrics import FILENAME as RENEW_PROM
from dhanfeed.renew_state import RenewState, renew_state_path
from dhanfeed.renewal import Policy, decide, local_time
from dhanfeed.session import SessionCalendar
from dhanfeed.status import STATUS_FILE
from dhanfeed.token_store import TokenRecord, TokenStore

SCHEMA_VERSION = 1
BACKFILL_PROM = "backfill.prom"
RENEWER_LATE_S = 2 * 3600 + 600  # hourly runs: two missed runs is worth a look
STATUS_STALE_RUNS = 5  # a status file older than this many rewrites: the collector hangs
STATUS_STALE_MIN_S = 10.0
HEAL_WITHIN_S = 30 * 60  # backfill runs every 15 min in the session: two runs to heal a gap
RECONCILE_DIFFERING_ABOVE = 0.05  # share of reconciled minutes that may differ


class Level(enum.IntEnum):
    """A finding's weight; the worst one is bin/status's exit code."""

    OK = 0
    DEGRADED = 1
    ACT = 3  # a person must act

    @property
    def word(self) -> str:
        return {0: "healthy", 1: "degraded", 3: "action needed"}[int(self)]


@dataclasses.dataclass(frozen=True)
class Finding:
    level: Level
    message: str

    def as_json(self) -> dict[str, Any]:
        return {"level": self.level.word, "message": self.message}


@dataclasses.dataclass(frozen=True, kw_only=True)
class TokenFacts:
    present: bool
    problem: str | None = None  # why the token file cannot be used
    fingerprint: str | None = None
    source: str | None = None
    expires_at: str | None = None  # ISO 8601, session time zone
    remaining_s: int | None = None
    written_at: str | None = None
    refused: bool = False  # Dhan refused this token (the renewer's check or the collector's feed)
    refused_detail: str | None = None  # how and when
    can_regenerate: bool = False  # PIN+TOTP configured


@dataclasses.dataclass(frozen=True, kw_only=True)
class RenewerFacts:
    last_run: str | None = None
    last_exit_code: int | None = None
    last_success: str | None = None
    next: str | None = None  # the decision a run now would take, with its reason
    due_at: str | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class SocketFacts:
    shard: int
    state: str
    role: str
    instruments: int
    last_data_age_s: float | None


@dataclasses.dataclass(frozen=True, kw_only=True)
class CollectorFacts:
    state: str  # running | unresponsive | stopped | crashed | never started
    pid: int | None = None
    started_at: str | None = None
    status_age_s: float | None = None
    token_fingerprint: str | None = None
    sockets: list[SocketFacts] = dataclasses.field(default_factory=list)
    sockets_live: int = 0
    last_data_age_s: float | None = None
    messages_per_s: float | None = None
    swaps: int = 0  # since start
    reconnects: int = 0  # since start
    dropped: int = 0
    ticks_dropped: int = 0
    store_errors: int = 0

    @property
    def running(self) -> bool:
        return self.state in ("running", "unresponsive")


@dataclasses.dataclass(frozen=True, kw_only=True)
class StoreFacts:
    database: str
    problem: str | None = None
    size_bytes: int | None = None
    candles_today: int | None = None
    gaps_today: int | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class BackfillFacts:
    last_run: str | None = None  # None: not run
    last_exit_code: int | None = None
    # gaps in today's session, ended over HEAL_WITHIN_S ago, still unhealed; None: the
    # database cannot tell (no healed_utc column yet)
    unhealed_gaps: int | None = None
    reconciled_day: str | None = None
    minutes_compared: int | None = None
    minutes_differing: int | None = None
    volume_differing: int | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Report:
    checked_at: str
    timezone: str  # the session's, in which every time here is written
    client_id: str
    in_session: bool
    token: TokenFacts
    renewer: RenewerFacts
    collector: CollectorFacts
    store: StoreFacts
    backfill: BackfillFacts
    findings: list[Finding] = dataclasses.field(default_factory=list)

    @property
    def level(self) -> Level:
        return max((f.level for f in self.findings), default=Level.OK)

    def as_json(self) -> dict[str, Any]:
        body = dataclasses.asdict(self)
        body["findings"] = [f.as_json() for f in self.findings]
        return {
            "schema": SCHEMA_VERSION,
            "health": self.level.word,
            "exit_code": int(self.level),
            **body,
        }


# -- gathering ---------------------------------------------------------------------------------


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
    prom = read_textfile(config.metrics_dir / RENEW_PROM)
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
    prom = read_textfile(config.metrics_dir / BACKFILL_PROM)
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


# -- assessing ---------------------------------------------------------------------------------


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
