"""Ticks → OHLCV bars. Pure: no I/O and no clock reads; every time is passed in.

Buckets: LTT is an IST-epoch (dhan-api.md §3), so `utc = ltt - 19800`. Bars are anchored at
09:15 IST of the tick's IST day (a 60-minute bar is 09:15-10:15 IST = 03:45-04:45Z); any whole
number of minutes works, including ones that do not divide a day (25 m).

Volume: a bar holds volume traded inside its span, never outside it. It is the cumulative day
volume at the bar's last tick minus the cumulative volume at the end of the previous bar of the
same instrument and interval, kept as a running base per (segment, security_id, interval_s):
each accepted tick adds `cum - base` to its bar and moves the base. Ticks in order give exactly
`cum_last_in_bar - cum_end_of_previous_bar`; a tick dropped as late leaves the base alone, so its
volume lands in the next bar and the day's sum stays exact.

Choices the caller must know:
- The base is carried only across a continuous subscription (dhan-api.md §3: after a gap the
  previous cumulative figure says nothing about *when* the missing volume traded). At start (a
  restart, or a start in the middle of the day) and after `gap()`, the base is unknown: the
  first tick of a series only sets it, so the first bar counts only what its own ticks prove
  (`cum_last - cum_first`) and is marked incomplete. `bin/backfill` replaces such bars with
  Dhan's. A series that runs across midnight restarts its base at 0 on Dhan's daily reset.
- `complete` is False for a bar opened on an unknown base, a bar overlapping a gap, and a bar
  flushed before its end (shutdown). `source` is always "feed" here ("dhan" is backfill's).
- Prices are rounded to the segment's precision when a bar closes (`round_price`): Dhan sends
  float32, so `2678.19995117187` is stored as `2678.2`.
- `carry` values (`Store.carry()`) are `Carry(start_utc, cum_volume)`: after a restart they only
  tell which packets were already counted (duplicates); they never carry volume into a bar. A
  bare int is accepted and treated as "same day as the first tick".
- `resume()` rebuilds the bars that were open at a crash from the raw ticks stored before it.
- Duplicates and stale packets: per instrument, a trade with a cumulative volume lower than or
  equal to the highest seen (on the same IST day) is dropped. Equal counts as a duplicate so that
  the packets two sockets deliver during a token swap are dropped. A new IST day with a lower
  cumulative volume is Dhan's daily reset: the bases restart at 0. A packet from an earlier IST
  day than the last accepted one is stale.
- Ticker trades (indices, `cum_volume=None`) have volume 0 and carry nothing unique: a copy
  that the other socket of a token swap (another `source`) brings is found by lining up the two
  sockets' prices of the same second (`ticker_prints`); the same price again on the same socket
  is a real repeat and is kept. With no source named, a price already seen in the same second is
  a duplicate, and an LTT older than the newest is stale.
- Late: a trade whose bar ends more than `grace_s` before `now_utc`, or whose bar was already
  closed, is counted and dropped for that interval (the outcome is "late" when any interval
  dropped it; other intervals still take it).
- Bars are closed by `close_due(now)` (timer), never by the next tick; an empty minute gives no
  bar.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

from dhanfeed.ticker_prints import TickerPrints

IST_OFFSET_S = 19800  # +05:30
SESSION_ANCHOR_IST_S = 9 * 3600 + 15 * 60  # 09:15 IST: Indian intraday bars start here
DAY_S = 86400

OK, DUPLICATE, LATE = "ok", "duplicate", "late"

Key = tuple[str, int, int]  # (segment, security_id, interval_s)
FEED, DHAN = "feed", "dhan"  # a bar's source: built from our feed, or replaced from Dhan's bars

# Prices at the exchange's precision: 4 decimals in currency segments, 2 everywhere else.
_PRICE_DECIMALS = {"NSE_CURRENCY": 4, "BSE_CURRENCY": 4}


def price_decimals(segment: str) -> int:
    return _PRICE_DECIMALS.get(segment, 2)


def round_price(segment: str, price: float) -> float:
    """A float32 price from the feed at the segment's precision (2678.19995117187 → 2678.2)."""
    return round(price, _PRICE_DECIMALS.get(segment, 2))


def tick_size(segment: str) -> float:
    """One price step: 0.05 for equity, F&O and indices; 0.0025 for currency segments."""
    return 0.0025 if segment in _PRICE_DECIMALS else 0.05


class Carry(NamedTuple):
    """Where volume stood at the end of the last stored bar of one (instrument, interval)."""

    start_utc: int  # start of that bar (epoch s, UTC): tells which IST day the volume belongs to
    cum_volume: int  # cumulative day volume at that bar's last tick


@dataclasses.dataclass(slots=True)
class Bar:
    segment: str  # "NSE_EQ"
    security_id: int
    interval_s: int
    start_utc: int  # epoch seconds, UTC
    open: float
    high: float
    low: float
    close: float
    volume: int
    ticks: int
    cum_volume_end: int | None  # cumulative day volume at the last tick; None for Ticker trades
    complete: bool = True  # the whole span was live and the volume is exact
    source: str = FEED  # FEED, or DHAN when backfill replaced it with Dhan's bar

    @property
    def end_utc(self) -> int:
        return self.start_utc + self.interval_s

    @property
    def key(self) -> Key:
        return (self.segment, self.security_id, self.interval_s)


def ist_to_utc(ltt_ist: int) -> int:
    """Dhan's LTT (seconds since 1970-01-01 00:00 IST) → epoch seconds UTC."""
    return ltt_ist - IST_OFFSET_S


def ist_day(utc: float) -> int:
    """Days since 1970-01-01 in IST for an epoch-seconds UTC time."""
    return int((utc + IST_OFFSET_S) // DAY_S)


def day_start_utc(utc: float) -> int:
    """00:00 IST of the IST day holding `utc`, as epoch seconds UTC."""
    return ist_day(utc) * DAY_S - IST_OFFSET_S


def bucket_start(utc: int, interval_s: int) -> int:
    """Start (epoch s UTC) of the bar holding `utc`, anchored at 09:15 IST of its IST day."""
    anchor = ist_day(utc) * DAY_S + SESSION_ANCHOR_IST_S - IST_OFFSET_S
    return anchor + (utc - anchor) // interval_s * interval_s


class _Series:
    """The state of one (instrument, interval); add_trade reaches it without building a key."""

    __slots__ = ("interval_s", "base", "base_day", "closed_upto", "bar", "lo", "hi", "late_at")

    def __init__(self, interval_s: int) -> None:
        self.interval_s = interval_s
        self.base: int | None = None  # cumulative volume already given to bars (None: unknown)
        self.base_day: int | None = None  # IST day of that base (None: unknown)
        self.closed_upto = -1  # start of the newest bar already closed
        self.bar: Bar | None = None  # the open bar touched last (a shortcut into _open)
        # While `bar` is set: a tick with lo <= utc < hi belongs to it (its bucket, on the IST
        # day it was found for), and is late once now >= late_at (its end + grace).
        self.lo = self.hi = 0
        self.late_at = 0.0


@dataclasses.dataclass(slots=True)
class _Instrument:
    """De-duplication state of one instrument, and its series (one per interval, in order)."""

    series: list[_Series]
    day: int | None = None  # IST day of the highest cumulative volume seen
    cum: int | None = None  # highest cumulative volume seen that day
    ticker: TickerPrints = dataclasses.field(default_factory=TickerPrints)  # Ticker prints
    last_rx: float | None = None  # receive time of the last accepted trade


_ANCHOR_UTC_S = SESSION_ANCHOR_IST_S - IST_OFFSET_S  # 09:15 IST as seconds after 00:00 UTC


class CandleBuilder:
    """Builds bars for every instrument and every interval from trades handed in one by one.

    Not thread-safe: one thread calls `add_trade`, `close_due` and `flush`.
    """

    def __init__(
        self,
        intervals_s: Sequence[int],
        grace_s: float = 2.0,
        carry: Mapping[Key, Carry | int] | None = None,
    ) -> None:
        if not intervals_s:
            raise ValueError("at least one interval is needed")
        for iv in intervals_s:
            if iv <= 0 or iv % 60:
                raise ValueError(f"interval {iv}s is not a whole number of minutes")
        if grace_s < 0:
            raise ValueError("grace must not be negative")
        self.intervals_s = tuple(sorted(set(int(i) for i in intervals_s)))
        self.grace_s = float(grace_s)
        self.duplicates = 0
        self.late = 0
        self.accepted = 0
        self._slot = {iv: i for i, iv in enumerate(self.intervals_s)}  # interval → series index
        self._instruments: dict[tuple[str, int], _Instrument] = {}
        # Open bars grouped by (interval, start): closing is a walk over the due groups only.
        self._open: dict[tuple[int, int], dict[tuple[str, int], Bar]] = {}
        for key, value in (carry or {}).items():
            seg, sid, iv = key
            if isinstance(value, Carry | tuple):
                start, cum = int(value[0]), int(value[1])
                day: int | None = ist_day(start)
            else:
                cum, day = int(value), None
            inst = self._instrument((seg, int(sid)))
            if inst.cum is None or (day or 0, cum) > (inst.day or 0, inst.cum):
                inst.day, inst.cum = day, cum

    def _instrument(self, key: tuple[str, int]) -> _Instrument:
        inst = self._instruments.get(key)
        if inst is None:
            inst = self._instruments[key] = _Instrument([_Series(iv) for iv in self.intervals_s])
        return inst

    @property
    def open_bars(self) -> int:
        return sum(len(group) for group in self._open.values())

    def add_trade(
        self,
        segment: str,
        security_id: int,
        ltp: float,
        ltt_ist: int,
        cum_volume: int | None,
        now_utc: float,
        source: int | None = None,
    ) -> str:
        """Feed one trade; return "ok", "duplicate" or "late" (see the module docstring).

        `ltt_ist` is Dhan's IST-epoch LTT; `cum_volume` the day's cumulative volume (None for
        Ticker packets); `now_utc` the receive time (epoch s) used for the late rule; `source`
        the socket it came on (tells a Ticker repeat from a swap's duplicate).
        """
        # Hot path (every packet of every instrument): ist_to_utc and ist_day are inlined, the
        # per-interval state is reached through the instrument, and a tick for the bar its
        # series touched last (nearly all of them) skips bucketing (see `_find_bar`).
        ltt = int(ltt_ist)
        utc = ltt - IST_OFFSET_S
        day = ltt // DAY_S  # == ist_day(utc)
        ikey = (segment, security_id)
        inst = self._instruments.get(ikey) or self._instrument(ikey)
        new_day = False
        if cum_volume is None:
            if not inst.ticker.is_new(ltt, ltp, source):
                self.duplicates += 1
                return DUPLICATE
        else:
            last = inst.cum
            if last is not None:
                known_day = day if inst.day is None else inst.day
                # Stale (an earlier day), or not above the highest seen unless a new day
                # restarted the count: a duplicate.
                if day < known_day or (
                    cum_volume <= last and (day == known_day or cum_volume == last)
                ):
                    self.duplicates += 1
                    return DUPLICATE
                new_day = cum_volume < last  # only a later day gets here with a lower count
            inst.day = day
            inst.cum = cum_volume
        inst.last_rx = now_utc

        outcome = OK
        for series in inst.series:
            bar = series.bar
            if bar is not None and series.lo <= utc < series.hi:
                if series.late_at <= now_utc:
                    outcome = LATE  # the base stays: this volume goes to the next bar
                    continue
            else:
                bar = self._find_bar(series, ikey, ltp, utc, day, cum_volume, now_utc)
                if bar is None:
                    outcome = LATE
                    continue
            volume = 0
            if cum_volume is not None:
                base = series.base
                if base is None:  # nothing proves when the volume so far traded
                    bar.complete = False
                    base = cum_volume
                elif cum_volume < base and (
                    new_day or (series.base_day is not None and day > series.base_day)
                ):
                    base = 0  # Dhan restarts the cumulative volume every day
                if cum_volume > base:
                    volume = cum_volume - base
                series.base = cum_volume
                series.base_day = day
                bar.cum_volume_end = cum_volume
            if ltp > bar.high:
                bar.high = ltp
            if ltp < bar.low:
                bar.low = ltp
            bar.close = ltp
            bar.volume += volume
            bar.ticks += 1
        if outcome == LATE:
            self.late += 1
        else:
            self.accepted += 1
        return outcome

    def _find_bar(
        self,
        series: _Series,
        ikey: tuple[str, int],
        ltp: float,
        utc: int,
        day: int,
        cum_volume: int | None,
        now_utc: float,
    ) -> Bar | None:
        """The open bar of `series` that takes a tick at `utc` (None: the tick is late for it).

        Opens the bar (no ticks yet) if there is none, and makes it the series' shortcut.
        """
        iv = series.interval_s
        anchor = day * DAY_S + _ANCHOR_UTC_S  # 09:15 IST of the tick's IST day, in UTC
        start = anchor + (utc - anchor) // iv * iv  # == bucket_start(utc, iv)
        late_at = start + iv + self.grace_s
        if late_at <= now_utc or start <= series.closed_upto:
            return None
        bar = series.bar
        if bar is None or bar.start_utc != start:
            group = self._open.get((iv, start))
            if group is None:
                group = self._open[(iv, start)] = {}
            bar = group.get(ikey)
            if bar is None:
                bar = group[ikey] = Bar(*ikey, iv, start, ltp, ltp, ltp, ltp, 0, 0, cum_volume)
            series.bar = bar
        # Buckets are anchored per IST day, so the shortcut holds for this day's part only
        # (the whole bucket when the interval divides a day).
        day_start = day * DAY_S - IST_OFFSET_S
        series.lo = max(start, day_start)
        series.hi = min(start + iv, day_start + DAY_S)
        series.late_at = late_at
        return bar

    def gap(self, segment: str, security_id: int, start_utc: float, end_utc: float) -> None:
        """The instrument had no live subscription from `start_utc` to `end_utc` (receive times).

        Its bases become unknown (the next tick of each series only sets it) and every open bar
        that ends after the gap's start is marked incomplete: the ones overlapping the gap, and
        any a tick after the gap already went into (a notice can come after the first packets of
        the new socket; such a tick took a base from before the gap).
        """
        inst = self._instruments.get((segment, security_id))
        if inst is None:
            return
        for series in inst.series:
            if inst.last_rx is None or inst.last_rx <= end_utc:
                series.base = None
        for (iv, start), group in self._open.items():
            if start + iv > start_utc:
                bar = group.get((segment, security_id))
                if bar is not None:
                    bar.complete = False

    def resume(
        self,
        ticks: Iterable[tuple[str, int, float, int, int | None, float]],
        closed: Mapping[Key, int],
        live_until_utc: float,
        gaps: Iterable[tuple[str, int, float, float]] = (),
    ) -> int:
        """Rebuild the bars that were open when the previous run stopped from its raw ticks.

        `ticks`: (segment, security_id, ltp, ltt_utc, cum_volume, received_utc) in the order
        they were stored, from the start of the newest stored bar of each series on; `closed`:
        that start per (segment, security_id, interval_s) (those bars are stored: their ticks
        only set the base); `live_until_utc`: the previous run's last data (a bar that had not
        ended by then is incomplete); `gaps`: the previous run's recorded gaps in that window.
        Returns how many ticks went into open bars. Counters are left as they were.
        """
        counters = (self.duplicates, self.late, self.accepted)
        for seg, sid, iv in closed:
            if iv in self._slot:
                series = self._instrument((seg, sid)).series[self._slot[iv]]
                series.closed_upto = max(series.closed_upto, closed[(seg, sid, iv)])
        pending = sorted(gaps, key=lambda g: g[2])
        used = 0
        for seg, sid, ltp, ltt_utc, cum, received in ticks:
            while pending and pending[0][2] < received:
                self.gap(*pending.pop(0))
            outcome = self.add_trade(seg, sid, ltp, ltt_utc + IST_OFFSET_S, cum, received)
            used += outcome == OK
            if cum is None:
                continue
            for series in self._instruments[(seg, sid)].series:
                if bucket_start(ltt_utc, series.interval_s) <= series.closed_upto:
                    series.base, series.base_day = cum, ist_day(ltt_utc)  # counted when stored
        for (iv, start), group in self._open.items():
            if start + iv > live_until_utc:
                for bar in group.values():
                    bar.complete = False
        for inst in self._instruments.values():  # the restart itself is a gap
            for series in inst.series:
                series.base = None
        self.duplicates, self.late, self.accepted = counters
        return used

    def close_due(self, now_utc: float) -> list[Bar]:
        """Close and return every bar whose end + grace ≤ `now_utc`, oldest first."""
        due = [g for g in self._open if g[1] + g[0] + self.grace_s <= now_utc]
        return self._close(sorted(due, key=lambda g: (g[1], g[0])))

    def flush(self, now_utc: float | None = None) -> list[Bar]:
        """Close and return every open bar (shutdown). A later tick of one of them is late.

        A bar that has not ended by `now_utc` is incomplete (None: the caller does not know).
        """
        if now_utc is not None:
            for (iv, start), group in self._open.items():
                if start + iv > now_utc:
                    for bar in group.values():
                        bar.complete = False
        return self._close(sorted(self._open, key=lambda g: (g[1], g[0])))

    def _close(self, groups: list[tuple[int, int]]) -> list[Bar]:
        out: list[Bar] = []
        for group in groups:
            bars = self._open.pop(group)
            for bar in bars.values():
                inst = self._instruments[(bar.segment, bar.security_id)]
                series = inst.series[self._slot[bar.interval_s]]
                if bar.start_utc > series.closed_upto:
                    series.closed_upto = bar.start_utc
                if series.bar is bar:
                    series.bar = None  # a closed bar is the caller's now
                digits = _PRICE_DECIMALS.get(bar.segment, 2)
                bar.open, bar.high = round(bar.open, digits), round(bar.high, digits)
                bar.low, bar.close = round(bar.low, digits), round(bar.close, digits)
                out.append(bar)
        return out
