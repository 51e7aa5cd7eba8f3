"""What `bin/status` and the status page show: the facts gathered (`health.gather`), the
findings on them (`health_verdict.assess`) and the one JSON shape of both.

The JSON form (`Report.as_json()`, `bin/status --json`, `/api/status`) is documented in
README.md, "bin/status --json"; keys are only ever added. No token here, only its fingerprint.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

SCHEMA_VERSION = 1


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
