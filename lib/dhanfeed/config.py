"""The one frozen config object: a dataclass per TOML section, each setting with its default.

A field without a default is required. Durations are written "90s", "30m", "6h", "1d"
(`Duration`); paths (`FilePath`) resolve against the config file's directory. Secrets (PIN,
TOTP seed) never live here: `[totp]` only names files that hold them. Reading and checking a
file into this object is `config_load`'s.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import zoneinfo
from pathlib import Path

from dhanfeed.database_url import PostgresUrl
from dhanfeed.instruments import Instrument, parse_instrument
from dhanfeed.session import WEEKDAYS

DEFAULT_CONFIG = "config.toml"
MAX_DURATION = dt.timedelta(days=366)  # no setting needs more; timedelta itself overflows
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


class Duration(dt.timedelta):
    """Marker type: a config value written as "90s", "30m", "6h" (a bare number = seconds)."""


class FilePath(type(Path())):  # type: ignore[misc]
    """Marker type: a path resolved against the config file's directory."""


def parse_duration(text: str | int | float) -> dt.timedelta:
    if isinstance(text, bool):
        raise ValueError("expected a duration like '90s', '30m' or '6h'")
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        m = _DURATION.match(str(text))
        if not m:
            raise ValueError(f"expected a duration like '90s', '30m' or '6h', got {text!r}")
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if seconds != seconds:  # NaN
        raise ValueError(f"expected a duration like '90s', '30m' or '6h', got {text!r}")
    if seconds < 0:
        raise ValueError("must not be negative")
    if seconds > MAX_DURATION.total_seconds():  # also inf, 1e300, "99999999999d"
        raise ValueError(f"{text!r} is too long (at most {MAX_DURATION.days} days)")
    return dt.timedelta(seconds=seconds)


# ---------------------------------------------------------------------------------------------
# The schema: one frozen dataclass per section. A field without a default is required.


@dataclasses.dataclass(frozen=True)
class DhanSection:
    client_id: str
    api_base: str = "https://api.dhan.co"
    auth_base: str = "https://auth.dhan.co"
    feed_url: str = "wss://api-feed.dhan.co"
    timeout: Duration = Duration(seconds=15)  # per HTTP call


@dataclasses.dataclass(frozen=True)
class TokenSection:
    file: FilePath = FilePath("state/token.json")
    renew_before: Duration = Duration(hours=6)
    must_renew_before: Duration = Duration(hours=2)
    confirm_with_profile: bool = True
    # A run that is not due asks Dhan's profile endpoint whether the token still works, at
    # most this often, so a revoked token is found within hours, not at its expiry.
    confirm_every: Duration = Duration(hours=6)
    run_timeout: Duration = Duration(minutes=2)  # bound on one whole renew_token run


@dataclasses.dataclass(frozen=True)
class SessionSection:
    timezone: str = "Asia/Kolkata"
    days: list[str] = dataclasses.field(default_factory=lambda: list(WEEKDAYS[:5]))
    start: dt.time = dt.time(9, 0)
    end: dt.time = dt.time(15, 30)
    holidays: list[dt.date] = dataclasses.field(default_factory=list)

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)


@dataclasses.dataclass(frozen=True)
class AlertsSection:
    log_file: FilePath = FilePath("logs/token_alerts.log")
    urls: list[str] = dataclasses.field(default_factory=list)  # Apprise URLs
    healthcheck_url: str = ""
    repeat_every: Duration = Duration(hours=4)  # same condition re-sent at most this often
    timeout: Duration = Duration(seconds=10)


@dataclasses.dataclass(frozen=True)
class TotpSection:
    pin_file: FilePath | None = None
    secret_file: FilePath | None = None


@dataclasses.dataclass(frozen=True)
class HooksSection:
    on_renew: str = ""
    on_alert: str = ""
    timeout: Duration = Duration(seconds=30)


@dataclasses.dataclass(frozen=True)
class MetricsSection:
    textfile_dir: FilePath | None = None  # default: the token file's directory
    port: int = 0  # collector's HTTP metrics port; 0 = textfile only


@dataclasses.dataclass(frozen=True)
class WebSection:
    port: int = 0  # the collector's read-only status page; 0 = no page
    bind: str = "127.0.0.1"  # loopback: reach it from elsewhere through an SSH tunnel


@dataclasses.dataclass(frozen=True)
class LoggingSection:
    dir: FilePath = FilePath("logs")
    level: str = "INFO"


@dataclasses.dataclass(frozen=True)
class CollectorSection:
    instruments: list[Instrument] = dataclasses.field(default_factory=list)
    mode: str = "quote"
    intervals: list[Duration] = dataclasses.field(default_factory=lambda: [Duration(minutes=1)])
    # A SQLite file, or a postgresql:// URL (without a password: see database_url.py).
    database: FilePath | PostgresUrl = FilePath("data/candles.sqlite")
    store_ticks: bool = True
    stale_after: Duration = Duration(seconds=60)
    grace: Duration = Duration(seconds=2)
    status_every: Duration = Duration(seconds=2)


# Dhan's chart API needs an instrument type; these segments say it on their own.
INSTRUMENT_TYPES = ("EQUITY", "INDEX", "FUTIDX", "FUTSTK", "OPTIDX", "OPTSTK", "FUTCUR", "OPTCUR",
                    "FUTCOM", "OPTFUT")  # fmt: skip
SEGMENT_TYPES = {"NSE_EQ": "EQUITY", "BSE_EQ": "EQUITY", "IDX_I": "INDEX"}


@dataclasses.dataclass(frozen=True)
class InstrumentType:
    """ "NSE_FNO:55796=FUTIDX": the type Dhan's chart API needs for one instrument."""

    key: str  # "NSE_FNO:55796"
    type: str  # "FUTIDX"


def parse_instrument_type(text: str) -> InstrumentType:
    if not isinstance(text, str) or "=" not in text:
        raise ValueError(
            f"expected 'SEGMENT:SECURITY_ID=TYPE' like 'NSE_FNO:55796=FUTIDX', got {text!r}"
        )
    left, _, kind = text.partition("=")
    inst = parse_instrument(left)
    kind = kind.strip().upper()
    if kind not in INSTRUMENT_TYPES:
        raise ValueError(f"unknown instrument type {kind!r} (known: {', '.join(INSTRUMENT_TYPES)})")
    return InstrumentType(inst.key, kind)


@dataclasses.dataclass(frozen=True)
class BackfillSection:
    alert_above: float = 5.0  # percent of compared minutes whose prices differ: warn above
    requests_per_second: float = 5.0  # Dhan's Data API limit
    # Types for instruments whose segment does not say it (NSE_FNO, MCX_COMM, currency).
    instrument_types: list[InstrumentType] = dataclasses.field(default_factory=list)

    def instrument_type(self, segment: str, security_id: int) -> str | None:
        """EQUITY/INDEX from the segment, else the configured type, else None."""
        if segment in SEGMENT_TYPES:
            return SEGMENT_TYPES[segment]
        key = f"{segment}:{security_id}"
        return next((t.type for t in self.instrument_types if t.key == key), None)


@dataclasses.dataclass(frozen=True)
class Config:
    dhan: DhanSection
    path: Path = Path(DEFAULT_CONFIG)  # the file it was read from
    token: TokenSection = dataclasses.field(default_factory=TokenSection)
    session: SessionSection = dataclasses.field(default_factory=SessionSection)
    alerts: AlertsSection = dataclasses.field(default_factory=AlertsSection)
    totp: TotpSection = dataclasses.field(default_factory=TotpSection)
    hooks: HooksSection = dataclasses.field(default_factory=HooksSection)
    metrics: MetricsSection = dataclasses.field(default_factory=MetricsSection)
    web: WebSection = dataclasses.field(default_factory=WebSection)
    logging: LoggingSection = dataclasses.field(default_factory=LoggingSection)
    collector: CollectorSection = dataclasses.field(default_factory=CollectorSection)
    backfill: BackfillSection = dataclasses.field(default_factory=BackfillSection)
    # Problems in sections the program does not use (`lenient=` of load_config), which it
    # reports as warnings instead of refusing to run.
    warnings: tuple[str, ...] = ()

    @property
    def state_dir(self) -> Path:
        return self.token.file.parent

    @property
    def metrics_dir(self) -> Path:
        return self.metrics.textfile_dir or self.state_dir
