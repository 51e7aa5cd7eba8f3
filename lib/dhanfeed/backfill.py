"""Heal one instrument's day from Dhan's 1-minute bars, and reconcile with them. Pure.

`plan_day` takes plain values (the day's stored bars, its unhealed gaps, Dhan's bars, `now`)
and returns the bars to write, the gaps healed and the figures; `bin/backfill` does the I/O.

Choices the caller must know:
- Only minutes that ended more than a minute before `now` are touched (`settled`), so the
  collector never merges into a bar this replaced. A gap is healed once all of it is settled.
- Healing replaces every incomplete 1-minute bar, and every feed bar overlapping an unhealed
  gap, with Dhan's bar (`source = 'dhan'`, `complete = True`), and inserts Dhan's bars for
  minutes in a gap we have none of. A minute Dhan has no bar for (no trade) stays as it is.
  Complete feed bars are kept, unless `prefer_dhan` and they differ from Dhan's.
- Volume at the edges of a healed stretch: the feed learns a minute's last trades from the
  next packet, so a feed bar holds the trades after the previous bar's last packet. Next to a
  Dhan bar that would count those trades twice (or not at all), so a feed bar adjacent to a
  Dhan bar gets its volume re-based on Dhan's cumulative volume at the edge (OHLC untouched,
  still a feed bar). With that, a healed session's 1-minute volumes sum to Dhan's day (the
  session's last packet carries its last trade, so the day's last feed bar needs nothing).
- Longer intervals are rebuilt from the 1-minute bars for every bucket a change touched or
  that holds a Dhan minute, once the bucket has settled (a bucket the collector still builds
  is left to a later run): open of the first, high max, low min, close of the last, volumes
  summed; complete when every minute in it is; source `dhan` when any minute is.
- Reconcile compares every settled complete feed bar with Dhan's bar of the same minute: a
  price (open/high/low/close) more than one tick apart, or a different volume, is a
  difference; the worst minute is the one with the largest price difference. A complete feed
  minute Dhan has no bar for differs in both.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from dhanfeed.candles import DHAN, FEED, Bar, bucket_start, tick_size

MINUTE = 60
SETTLE_S = 60  # a minute is touched only once it ended this long ago


class Span(NamedTuple):
    """A stretch without a live subscription (a recorded gap), in epoch seconds UTC."""

    start_utc: float
    end_utc: float


class DhanBar(NamedTuple):
    """One of Dhan's intraday bars: `start_utc` is the bar's start (UTC epoch seconds)."""

    start_utc: int
    open: float
    high: float
    low: float
    close: float
    volume: int


@dataclasses.dataclass(frozen=True)
class Figures:
    """What reconciling one instrument's day found."""

    minutes_compared: int
    minutes_differing: int  # a price more than one tick apart
    volume_differing: int
    worst_start_utc: int | None
    worst_diff: float | None
    differing: tuple[int, ...]  # the minutes (bar starts) that differ in price or volume

    @property
    def share_differing(self) -> float:
        return self.minutes_differing / self.minutes_compared if self.minutes_compared else 0.0


@dataclasses.dataclass(frozen=True)
class Plan:
    bars: list[Bar]  # rows to write, exactly as given (1-minute and longer)
    healed: list[int]  # indexes into the gaps given
    replaced: int  # 1-minute bars replaced with Dhan's
    inserted: int  # 1-minute bars inserted from Dhan's
    rebased: int  # feed bars whose volume was re-based at a healed edge
    rebuilt: int  # longer bars rebuilt from the 1-minute bars
    figures: Figures | None  # when reconciling


def settled(start_utc: int, now_utc: float, width_s: int = MINUTE) -> bool:
    """Did the bar starting at `start_utc` end more than SETTLE_S before `now_utc`?"""
    return start_utc + width_s + SETTLE_S <= now_utc


def minutes_of(span: Span) -> range:
    """Starts of every minute the span overlaps."""
    first = int(span.start_utc // MINUTE) * MINUTE
    last = int(-(-span.end_utc // MINUTE)) * MINUTE  # the end, rounded up to a minute
    return range(first, max(last, first + MINUTE), MINUTE)


def dhan_bar(segment: str, security_id: int, bar: DhanBar) -> Bar:
    return Bar(
        segment, security_id, MINUTE, int(bar.start_utc), bar.open, bar.high, bar.low,
        bar.close, int(bar.volume), 0, None, True, DHAN,
    )  # fmt: skip


def needs_dhan(stored: Iterable[Bar], gaps: Sequence[Span], now_utc: float) -> bool:
    """Is there anything to heal that has settled? (Nothing: no request to Dhan.)"""
    if any(settled(int(m), now_utc) for g in gaps for m in minutes_of(g)[:1]):
        return True
    return any(
        b.interval_s == MINUTE and not b.complete and settled(b.start_utc, now_utc) for b in stored
    )


def plan_day(
    segment: str,
    security_id: int,
    stored: Sequence[Bar],
    gaps: Sequence[Span],
    dhan: Sequence[DhanBar],
    now_utc: float,
    *,
    intervals_s: Sequence[int] = (MINUTE,),
    reconcile: bool = False,
    prefer_dhan: bool = False,
) -> Plan:
    """The changes for one instrument and IST day (see the module docstring)."""
    theirs = {int(d.start_utc): dhan_bar(segment, security_id, d) for d in dhan}
    ours = {b.start_utc: b for b in stored if b.interval_s == MINUTE}
    gap_minutes = {m for g in gaps for m in minutes_of(g)}

    figures = None
    wrong: set[int] = set()
    if reconcile:
        figures = compare(segment, ours.values(), theirs, now_utc)
        if prefer_dhan:
            wrong = set(figures.differing)

    after = dict(ours)
    replaced = inserted = 0
    for minute in sorted(gap_minutes | {m for m, b in ours.items() if not b.complete} | wrong):
        if not settled(minute, now_utc):
            continue
        mine, dhans = ours.get(minute), theirs.get(minute)
        if dhans is None:
            continue  # no trade in Dhan's book: nothing to put there
        if mine is None:
            inserted += 1
        elif mine == dhans:
            continue
        elif mine.source == DHAN or not mine.complete or minute in gap_minutes or minute in wrong:
            replaced += 1
        else:
            continue
        after[minute] = dhans

    rebased = _rebase_edges(after, theirs, now_utc)
    changed = {m: b for m, b in after.items() if ours.get(m) != b}
    longer = _rebuild_longer(segment, security_id, after, changed, stored, intervals_s, now_utc)
    healed = [i for i, g in enumerate(gaps) if all(settled(m, now_utc) for m in minutes_of(g))]
    return Plan(
        bars=[changed[m] for m in sorted(changed)] + longer,
        healed=healed,
        replaced=replaced,
        inserted=inserted,
        rebased=rebased,
        rebuilt=len(longer),
        figures=figures,
    )


def compare(segment: str, ours: Iterable[Bar], theirs: dict[int, Bar], now_utc: float) -> Figures:
    """Settled complete feed 1-minute bars against Dhan's bars of the same minutes."""
    tick = tick_size(segment)
    compared = price_diffs = volume_diffs = 0
    worst: tuple[float, int] | None = None
    differing: list[int] = []
    for bar in sorted(ours, key=lambda b: b.start_utc):
        if not (bar.complete and bar.source == FEED and settled(bar.start_utc, now_utc)):
            continue
        compared += 1
        ref = theirs.get(bar.start_utc)
        if ref is None:
            diff, volume_differs = float("inf"), True
        else:
            diff = max(
                abs(bar.open - ref.open), abs(bar.high - ref.high),
                abs(bar.low - ref.low), abs(bar.close - ref.close),
            )  # fmt: skip
            volume_differs = bar.volume != ref.volume
        price_differs = diff > tick + 1e-9
        price_diffs += price_differs
        volume_diffs += volume_differs
        if price_differs or volume_differs:
            differing.append(bar.start_utc)
        if price_differs and (worst is None or diff > worst[0]):
            worst = (diff, bar.start_utc)
    return Figures(
        minutes_compared=compared,
        minutes_differing=price_diffs,
        volume_differing=volume_diffs,
        worst_start_utc=worst[1] if worst else None,
        worst_diff=None if worst is None or worst[0] == float("inf") else round(worst[0], 4),
        differing=tuple(differing),
    )


def _rebase_edges(bars: dict[int, Bar], theirs: dict[int, Bar], now_utc: float) -> int:
    """Re-base the volume of complete feed bars next to a Dhan bar (in place); how many."""
    cumulative: dict[int, int] = {}  # Dhan's day volume at the end of each of its minutes
    total = 0
    for minute in sorted(theirs):
        total += theirs[minute].volume
        cumulative[minute] = total
    dhan_minutes = sorted(cumulative)

    def dhan_cum_at(minute: int) -> int:  # Dhan's cumulative volume at the end of `minute`
        lo, hi = 0, len(dhan_minutes)
        while lo < hi:
            mid = (lo + hi) // 2
            if dhan_minutes[mid] <= minute:
                lo = mid + 1
            else:
                hi = mid
        return cumulative[dhan_minutes[lo - 1]] if lo else 0

    order = sorted(bars)
    count = 0
    for i, minute in enumerate(order):
        bar = bars[minute]
        if bar.source != FEED or not bar.complete or bar.cum_volume_end is None:
            continue
        if not settled(minute, now_utc):
            continue  # the collector may still write the bar after it
        prev = bars[order[i - 1]] if i else None
        nxt = bars[order[i + 1]] if i + 1 < len(order) else None
        start = bar.cum_volume_end - bar.volume  # the base the collector used
        end = bar.cum_volume_end
        if prev is not None and prev.source == DHAN:
            start = dhan_cum_at(prev.start_utc)
        if nxt is not None and nxt.source == DHAN:
            end = dhan_cum_at(minute)
        volume = max(0, end - start)
        if volume != bar.volume:
            bars[minute] = dataclasses.replace(bar, volume=volume)
            count += 1
    return count


def _rebuild_longer(
    segment: str,
    security_id: int,
    minutes: dict[int, Bar],
    changed: dict[int, Bar],
    stored: Sequence[Bar],
    intervals_s: Sequence[int],
    now_utc: float,
) -> list[Bar]:
    out: list[Bar] = []
    existing = {(b.interval_s, b.start_utc): b for b in stored if b.interval_s != MINUTE}
    # Buckets a change touched, and any holding a Dhan minute: one that had not settled when
    # its minutes were replaced is rebuilt by a later run.
    touched = set(changed) | {m for m, b in minutes.items() if b.source == DHAN}
    for iv in sorted(set(intervals_s) - {MINUTE}):
        for bucket in sorted({bucket_start(m, iv) for m in touched}):
            if not settled(bucket, now_utc, iv):
                continue  # the collector still builds it
            parts = [b for m, b in sorted(minutes.items()) if bucket <= m < bucket + iv]
            bar = aggregate(segment, security_id, iv, bucket, parts)
            if bar is not None and existing.get((iv, bucket)) != bar:
                out.append(bar)
    return out


def aggregate(
    segment: str, security_id: int, interval_s: int, start_utc: int, parts: Sequence[Bar]
) -> Bar | None:
    """One longer bar from its 1-minute bars (in time order); None when there are none."""
    if not parts:
        return None
    return Bar(
        segment, security_id, interval_s, start_utc,
        parts[0].open, max(p.high for p in parts), min(p.low for p in parts), parts[-1].close,
        sum(p.volume for p in parts), sum(p.ticks for p in parts), parts[-1].cum_volume_end,
        all(p.complete for p in parts), DHAN if any(p.source == DHAN for p in parts) else FEED,
    )  # fmt: skip
