"""TOML config → one frozen object; every problem reported at once, each with its key.

Lookup order: `--config PATH`, else `$DHANFEED_CONFIG`, else `./config.toml`. Relative paths
resolve against the config file's directory. Durations are written "90s", "30m", "6h", "1d".
Secrets (PIN, TOTP seed) never live here: `[totp]` only names files that hold them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import tomllib
import types
import typing
import zoneinfo
from pathlib import Path
from typing import Any

from dhanfeed.apprise_urls import scheme, unparseable
from dhanfeed.database_url import PostgresUrl, is_postgres_url
from dhanfeed.errors import ConfigError
from dhanfeed.instruments import Instrument, parse_instrument
from dhanfeed.session import WEEKDAYS

DEFAULT_CONFIG = "config.toml"
ENV_CONFIG = "DHANFEED_CONFIG"

MAX_INSTRUMENTS = 4 * 5000  # 4 sockets of 5000; the fifth socket slot is kept for a token swap
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


# ---------------------------------------------------------------------------------------------
# Loading


def config_path(explicit: str | os.PathLike[str] | None, environ: typing.Mapping[str, str]) -> Path:
    if explicit:
        return Path(explicit)
    if environ.get(ENV_CONFIG):
        return Path(environ[ENV_CONFIG])
    return Path(DEFAULT_CONFIG)


def load_config(
    explicit: str | os.PathLike[str] | None = None,
    environ: typing.Mapping[str, str] | None = None,
    *,
    lenient: typing.Collection[str] = (),
) -> Config:
    """Read, parse and validate the config; raise ConfigError listing every problem.

    Problems confined to the sections named in `lenient` (ones the caller does not use)
    become `Config.warnings`, and those sections keep their defaults.
    """
    path = config_path(explicit, os.environ if environ is None else environ)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            path, [f"file not found (give --config PATH or set ${ENV_CONFIG})"]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, [f"cannot read {path}: {exc.__class__.__name__}: {exc}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [f"not valid TOML: {exc}"]) from None
    return parse_config(raw, path, lenient=lenient)


def parse_config(
    raw: dict[str, Any], path: Path, *, lenient: typing.Collection[str] = ()
) -> Config:
    problems: list[str] = []
    base = path.resolve().parent
    sections: dict[str, Any] = {}
    hints = typing.get_type_hints(Config)
    known = [name for name in hints if name not in _NOT_SECTIONS]
    for key in raw:
        if key not in known:
            problems.append(f"at '{key}': unknown section (known: {', '.join(known)})")
    for name, cls in hints.items():
        if name in _NOT_SECTIONS:
            continue
        value = raw.get(name, {})
        if not isinstance(value, dict):
            problems.append(f"at '{name}': expected a [{name}] table")
            value = {}
        if name == "dhan" and name not in raw:
            problems.append("at 'dhan': required section is missing")
            continue
        section = _parse_section(name, cls, value, base, problems)
        if section is not None:
            sections[name] = section
    if "dhan" in sections:
        _check_cross_fields(sections, problems)
    warnings = [p for p in problems if _section_of(p) in lenient]
    problems = [p for p in problems if p not in warnings]
    if problems:
        raise ConfigError(path, problems)
    for name in {_section_of(p) for p in warnings} & set(hints):
        sections[name] = _parse_section(name, hints[name], {}, base, [])  # the defaults
    return Config(path=path, warnings=tuple(warnings), **sections)


_NOT_SECTIONS = ("path", "warnings")


def _section_of(problem: str) -> str:
    """ "at 'collector.intervals[0]': ..." -> "collector" """
    return re.split(r"[.'\[]", problem.removeprefix("at '"), maxsplit=1)[0]


def _parse_section(
    name: str, cls: type, raw: dict[str, Any], base: Path, problems: list[str]
) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    before = len(problems)
    for key in raw:
        if key not in fields:
            problems.append(f"at '{name}.{key}': unknown key (known: {', '.join(fields)})")
    for key, field in fields.items():
        where = f"{name}.{key}"
        if key not in raw:
            if (
                field.default is dataclasses.MISSING
                and field.default_factory is dataclasses.MISSING
            ):
                problems.append(f"at '{where}': required")
            elif isinstance(field.default, FilePath):  # defaults are relative to the config too
                values[key] = _convert(FilePath, str(field.default), base)
            continue
        try:
            values[key] = _convert(hints[key], raw[key], base)
        except ValueError as exc:
            problems.append(f"at '{where}': {exc}")
        except _ListErrors as exc:
            problems.extend(f"at '{where}[{i}]': {msg}" for i, msg in exc.items)
            values[key] = exc.good  # keep the good items so cross-field checks still run
    try:
        return cls(**values)
    except TypeError:  # a required field is missing: already reported
        assert len(problems) > before
        return None


class _ListErrors(Exception):
    def __init__(self, items: list[tuple[int, str]], good: list[Any]) -> None:
        self.items = items
        self.good = good


def _convert(kind: Any, value: Any, base: Path) -> Any:
    if kind == FilePath | PostgresUrl:  # a database: a URL, else a path
        if isinstance(value, str) and is_postgres_url(value):
            return PostgresUrl(value)
        return _convert(FilePath, value, base)
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(kind) if a is not type(None)][0]
        return None if value in ("", None) else _convert(inner, value, base)
    if origin is list:
        if not isinstance(value, list):
            raise ValueError(f"expected a list, got {value!r}")
        (inner,) = typing.get_args(kind)
        out, errors = [], []
        for i, item in enumerate(value):
            try:
                out.append(_convert(inner, item, base))
            except ValueError as exc:
                errors.append((i, str(exc)))
                out.append(None)  # a placeholder keeps the indexes of later items right
        if errors:
            raise _ListErrors(errors, out)
        return out
    if kind is Duration:
        return Duration(seconds=parse_duration(value).total_seconds())
    if kind is FilePath:
        if not isinstance(value, str) or not value:
            raise ValueError(f"expected a path, got {value!r}")
        p = Path(value).expanduser()
        return FilePath(p if p.is_absolute() else base / p)
    if kind is Instrument:
        return parse_instrument(value)
    if kind is InstrumentType:
        return parse_instrument_type(value)
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"expected a number, got {value!r}")
        return float(value)
    if kind is dt.time:
        if isinstance(value, dt.time):
            return value
        try:
            return dt.time.fromisoformat(str(value))
        except ValueError:
            raise ValueError(f"expected a time like '09:15', got {value!r}") from None
    if kind is dt.date:
        if isinstance(value, dt.date):
            return value
        try:
            return dt.date.fromisoformat(str(value))
        except ValueError:
            raise ValueError(f"expected a date like '2026-01-26', got {value!r}") from None
    if kind is bool:
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected a whole number, got {value!r}")
        return value
    if kind is str:
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {value!r}")
        return value
    raise TypeError(f"no converter for {kind}")  # a schema bug, not a user error


def _check_cross_fields(s: dict[str, Any], problems: list[str]) -> None:
    dhan = s["dhan"]
    if not re.fullmatch(r"\d{1,16}", dhan.client_id):
        problems.append(
            f"at 'dhan.client_id': expected digits like '1000000001', got {dhan.client_id!r}"
        )
    for key in ("api_base", "auth_base"):
        if not re.match(r"^https?://", getattr(dhan, key)):
            problems.append(f"at 'dhan.{key}': expected an http(s):// URL")
    if not re.match(r"^wss?://", dhan.feed_url):
        problems.append("at 'dhan.feed_url': expected a ws(s):// URL")
    positive = [("dhan", "timeout"), ("token", "run_timeout"), ("alerts", "timeout")]
    positive += [("token", "confirm_every")]
    positive += [("hooks", "timeout"), ("collector", "stale_after"), ("collector", "status_every")]
    for section, key in positive:  # zero would switch a bound off or fire it at once
        if (value := getattr(s.get(section), key, None)) is not None and value.total_seconds() <= 0:
            problems.append(f"at '{section}.{key}': must be more than 0s")
    if (token := s.get("token")) and token.must_renew_before >= token.renew_before:
        problems.append("at 'token.must_renew_before': must be shorter than token.renew_before")
    if session := s.get("session"):
        try:
            zoneinfo.ZoneInfo(session.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            problems.append(f"at 'session.timezone': unknown time zone {session.timezone!r}")
        for i, day in enumerate(session.days):
            if day is not None and day.lower() not in WEEKDAYS:
                problems.append(f"at 'session.days[{i}]': expected one of {', '.join(WEEKDAYS)}")
        if session.end <= session.start:
            problems.append("at 'session.end': must be after session.start")
    if (alerts := s.get("alerts")) and alerts.urls:
        for i in unparseable(alerts.urls):  # found now, not at the first alert
            problems.append(
                f"at 'alerts.urls[{i}]': Apprise cannot parse this {scheme(alerts.urls[i])} URL"
                " (see https://github.com/caronc/apprise/wiki for its form)"
            )
    if logging_ := s.get("logging"):
        if logging_.level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            problems.append("at 'logging.level': expected DEBUG, INFO, WARNING or ERROR")
    if metrics := s.get("metrics"):
        if not 0 <= metrics.port <= 65535:
            problems.append("at 'metrics.port': expected 0..65535")
    if web := s.get("web"):
        if not 0 <= web.port <= 65535:
            problems.append("at 'web.port': expected 0..65535")
        if metrics and web.port and web.port == metrics.port:
            problems.append("at 'web.port': the same port as metrics.port")
    if collector := s.get("collector"):
        _check_collector(collector, problems)
    if backfill := s.get("backfill"):
        if not 0 <= backfill.alert_above <= 100:
            problems.append("at 'backfill.alert_above': expected a percentage, 0..100")
        if backfill.requests_per_second <= 0:
            problems.append("at 'backfill.requests_per_second': must be more than 0")
    _check_paths(s, problems)


# Paths whose directory the programs create: one under a file can never work. (logging.dir
# is checked where logging starts: renew_token then logs to stderr rather than stop; the
# database where it opens: an unwritable store is the collector's exit 1.)
_FILE_PATHS = (("token", "file"),)
_DIR_PATHS = (("metrics", "textfile_dir"),)


def _check_paths(s: dict[str, Any], problems: list[str]) -> None:
    for (section, key), is_file in [(k, True) for k in _FILE_PATHS] + [
        (k, False) for k in _DIR_PATHS
    ]:
        path = getattr(s.get(section), key, None)
        if path is None:
            continue
        blocker = _file_in_the_way(path.parent if is_file else path)
        if blocker is not None:
            problems.append(f"at '{section}.{key}': {blocker} is a file, not a directory")


def _file_in_the_way(directory: Path) -> Path | None:
    """The nearest existing ancestor of `directory` (itself included) when it is no directory."""
    for candidate in (directory, *directory.parents):
        try:
            if candidate.exists():
                return None if candidate.is_dir() else candidate
        except OSError:  # a symlink loop, a path too long: reported where it is used
            return None
    return None


def _check_collector(c: CollectorSection, problems: list[str]) -> None:
    if c.mode not in ("ticker", "quote", "full"):
        problems.append(f"at 'collector.mode': expected ticker, quote or full, got {c.mode!r}")
    seen: set[str] = set()
    for i, inst in enumerate(c.instruments):
        if inst is None:  # already reported
            continue
        if inst.key in seen:
            problems.append(f"at 'collector.instruments[{i}]': duplicate instrument {inst.key}")
        seen.add(inst.key)
    if len(c.instruments) > MAX_INSTRUMENTS:
        problems.append(
            f"at 'collector.instruments': {len(c.instruments)} instruments; at most {MAX_INSTRUMENTS}"
            " (4 sockets x 5000; one socket slot is kept free for token swaps)"
        )
    if not c.intervals:
        problems.append("at 'collector.intervals': expected at least one interval, like [\"1m\"]")
    for i, interval in enumerate(c.intervals):
        if interval is None:
            continue
        secs = interval.total_seconds()
        if secs <= 0 or secs % 60:
            problems.append(f"at 'collector.intervals[{i}]': expected a whole number of minutes")
    if c.grace.total_seconds() < 0:
        problems.append("at 'collector.grace': must not be negative")
