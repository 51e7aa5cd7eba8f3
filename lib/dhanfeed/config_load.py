"""Reading the TOML config into the one frozen `Config`: every problem at once, each with its key.

Lookup order: `--config PATH`, else `$DHANFEED_CONFIG`, else `./config.toml`. Each value is
converted to the type its field declares in `config` (unknown sections and keys are errors,
a bad list item is named by its index), then the checks that span fields run; all problems
are raised together in one `ConfigError`.
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
from dhanfeed.config import (
    DEFAULT_CONFIG,
    CollectorSection,
    Config,
    Duration,
    FilePath,
    InstrumentType,
    parse_duration,
    parse_instrument_type,
)
from dhanfeed.database_url import PostgresUrl, is_postgres_url
from dhanfeed.errors import ConfigError
from dhanfeed.instruments import Instrument, parse_instrument
from dhanfeed.session import WEEKDAYS

ENV_CONFIG = "DHANFEED_CONFIG"
MAX_INSTRUMENTS = 4 * 5000  # 4 sockets of 5000; the fifth socket slot is kept for a token swap


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
