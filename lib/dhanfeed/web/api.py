"""The page's JSON answers, apart from HTTP: query parameters in, a dict out, `BadRequest`
(one line, for an HTTP 400) for anything the page did not offer."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from dhanfeed.candle_reader import as_sent, open_reader
from dhanfeed.config import Config, parse_duration
from dhanfeed.instruments import Instrument

MAX_DAYS_BACK = 3660  # a date further back than this is a typo, not a question


class BadRequest(ValueError):
    """A query parameter the page cannot answer; the message is the whole HTTP 400 body."""


def interval_label(seconds: int) -> str:
    return f"{seconds // 3600}h" if seconds % 3600 == 0 else f"{seconds // 60}m"


def instruments_answer(config: Config) -> dict[str, Any]:
    """What the page offers: the configured instruments and intervals."""
    c = config.collector
    return {
        "instruments": [{"key": i.key, "name": i.name} for i in c.instruments],
        "intervals": [interval_label(int(i.total_seconds())) for i in c.intervals],
        "timezone": config.session.timezone,
    }


def candles_answer(
    config: Config, query: Mapping[str, Sequence[str]], now: dt.datetime
) -> dict[str, Any]:
    """`instrument=NSE_EQ:1333&interval=1m&date=2026-01-05` → that day's bars and gaps."""
    unknown = sorted(set(query) - {"instrument", "interval", "date"})
    if unknown:
        raise BadRequest(f"unknown parameter {unknown[0]!r} (known: instrument, interval, date)")
    tz = config.session.tz
    instrument = _instrument(config, _one(query, "instrument"))
    interval_s = _interval(config, _one(query, "interval", interval_label(_shortest(config))))
    day = _date(_one(query, "date", now.astimezone(tz).date().isoformat()), now, tz)
    start = dt.datetime.combine(day, dt.time(0), tzinfo=tz)
    start_utc = int(start.timestamp())
    end_utc = int((start + dt.timedelta(days=1)).timestamp())
    with open_reader(config.collector.database, config.dhan.client_id) as reader:
        bars = reader.candles(
            instrument.segment, instrument.security_id, interval_s, start_utc, end_utc
        )
        gaps = reader.gaps(instrument.segment, instrument.security_id, start_utc, end_utc)
    return {
        "instrument": instrument.key,
        "name": instrument.name,
        "interval_s": interval_s,
        "date": day.isoformat(),
        "timezone": config.session.timezone,
        # the chart draws epoch seconds as if UTC: add this to show exchange time
        "utc_offset_s": int(start.utcoffset().total_seconds()),  # type: ignore[union-attr]
        "candles": [
            {
                "time": b.start_utc,
                "open": as_sent(b.open),
                "high": as_sent(b.high),
                "low": as_sent(b.low),
                "close": as_sent(b.close),
                "volume": b.volume,
                "ticks": b.ticks,
                "complete": b.complete,
                "source": b.source,
            }
            for b in bars
        ],
        "gaps": [
            {"start": g.start_utc, "end": g.end_utc, "reason": g.reason, "healed": g.healed}
            for g in gaps
        ],
    }


def _one(query: Mapping[str, Sequence[str]], name: str, default: str | None = None) -> str:
    values = query.get(name)
    if not values or values == [""]:
        if default is None:
            raise BadRequest(f"missing parameter {name!r}")
        return default
    if len(values) > 1:
        raise BadRequest(f"parameter {name!r} given {len(values)} times")
    return values[0]


def _instrument(config: Config, text: str) -> Instrument:
    for inst in config.collector.instruments:
        if inst.key == text.strip().upper():
            return inst
    keys = ", ".join(i.key for i in config.collector.instruments[:5])
    raise BadRequest(f"instrument {text[:40]!r} is not configured (e.g. {keys})")


def _shortest(config: Config) -> int:
    return min(int(i.total_seconds()) for i in config.collector.intervals)


def _interval(config: Config, text: str) -> int:
    try:
        seconds = int(parse_duration(text).total_seconds())
    except ValueError:
        raise BadRequest(f"interval {text[:20]!r} is not a duration like 1m or 5m") from None
    offered = [int(i.total_seconds()) for i in config.collector.intervals]
    if seconds not in offered:
        have = ", ".join(interval_label(s) for s in offered)
        raise BadRequest(f"interval {text[:20]!r} is not collected (collected: {have})")
    return seconds


def _date(text: str, now: dt.datetime, tz: dt.tzinfo) -> dt.date:
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"date {text[:20]!r} is not a date like 2026-01-05") from None
    today = now.astimezone(tz).date()
    if day > today:
        raise BadRequest(f"date {day} is in the future")
    if (today - day).days > MAX_DAYS_BACK:
        raise BadRequest(f"date {day} is more than {MAX_DAYS_BACK} days back")
    return day
