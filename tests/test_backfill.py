"""The backfill decisions, pure: stored bars + gaps + Dhan's bars + now → what to write."""

from __future__ import annotations

import datetime as dt
import random
import zoneinfo

import pytest

from dhanfeed.backfill import DhanBar, Span, aggregate, compare, minutes_of, needs_dhan, plan_day
from dhanfeed.candles import Bar

IST = zoneinfo.ZoneInfo("Asia/Kolkata")
SEG, SID = "NSE_EQ", 1333


def at(hms: str) -> int:
    return int(dt.datetime.fromisoformat(f"2026-01-05T{hms}").replace(tzinfo=IST).timestamp())


T0 = at("09:15:00")
LATER = at("15:40:00")  # every minute of the session has settled


def m(i: int) -> int:
    """Start of the i-th minute of the session."""
    return T0 + 60 * i


def feed(i: int, o=100.0, h=101.0, lo=99.0, c=100.5, v=10, cum=None, complete=True) -> Bar:
    return Bar(SEG, SID, 60, m(i), o, h, lo, c, v, 3, cum, complete, "feed")


def dhan(i: int, o=100.0, h=102.0, lo=98.0, c=100.5, v=12) -> DhanBar:
    return DhanBar(m(i), o, h, lo, c, v)


def as_bar(d: DhanBar) -> Bar:
    return Bar(SEG, SID, 60, d.start_utc, d.open, d.high, d.low, d.close, d.volume, 0, None,
               True, "dhan")  # fmt: skip


def plan(stored, gaps=(), theirs=(), now=LATER, **kw):
    return plan_day(SEG, SID, stored, list(gaps), list(theirs), now, **kw)


def test_a_gap_is_the_minutes_it_touches():
    assert list(minutes_of(Span(m(2) + 30.5, m(4) + 0.25))) == [m(2), m(3), m(4)]
    assert list(minutes_of(Span(m(2), m(3)))) == [m(2)]
    assert list(minutes_of(Span(m(2) + 10, m(2) + 10.2))) == [m(2)]  # a swap's blink


def test_incomplete_bars_and_gap_minutes_are_replaced_or_filled_and_complete_ones_are_kept():
    stored = [feed(0, complete=False), feed(1), feed(2, complete=False)]
    theirs = [dhan(i) for i in range(6)]
    p = plan(stored, [Span(m(3) + 5, m(4) + 50)], theirs)
    written = {b.start_utc: b for b in p.bars}
    assert written == {m(0): as_bar(theirs[0]), m(2): as_bar(theirs[2]),
                       m(3): as_bar(theirs[3]), m(4): as_bar(theirs[4])}  # fmt: skip
    assert (p.replaced, p.inserted, p.healed) == (2, 2, [0])
    assert m(1) not in written and m(5) not in written  # complete, and outside every gap


def test_a_minute_dhan_has_no_bar_for_stays_without_a_bar():
    p = plan([], [Span(m(1), m(3))], [dhan(1)])  # nothing traded at m(2)
    assert [b.start_utc for b in p.bars] == [m(1)]
    assert p.healed == [0]


def test_only_minutes_that_ended_more_than_a_minute_ago_are_touched():
    gap = Span(m(1) + 10, m(3) + 10)
    now = m(3) + 119  # m(3) ended 59 s ago
    p = plan([], [gap], [dhan(1), dhan(2), dhan(3)], now=now)
    assert [b.start_utc for b in p.bars] == [m(1), m(2)]
    assert p.healed == []  # not all of it yet: the next run finishes it
    assert not needs_dhan([], [Span(m(3) + 10, m(3) + 20)], m(3) + 119)
    assert needs_dhan([], [Span(m(3) + 10, m(3) + 20)], m(3) + 120)


def test_nothing_to_heal_needs_no_request_to_dhan():
    assert not needs_dhan([feed(0), feed(1)], [], LATER)
    assert needs_dhan([feed(0), feed(1, complete=False)], [], LATER)


def test_a_second_plan_over_the_healed_day_changes_nothing():
    stored = [feed(0, complete=False, cum=50, v=5), feed(1, cum=60, v=10), feed(2, cum=75, v=15)]
    theirs = [dhan(0, v=52), dhan(1, v=10), dhan(2, v=13), dhan(3, v=9)]
    first = plan(stored, [Span(m(2) + 59, m(3) + 30)], theirs, intervals_s=[60, 300])
    healed = {(b.interval_s, b.start_utc): b for b in stored}
    healed.update({(b.interval_s, b.start_utc): b for b in first.bars})
    again = plan(list(healed.values()), [], theirs, intervals_s=[60, 300])
    assert again.bars == [] and (again.replaced, again.inserted, again.rebased) == (0, 0, 0)


def test_complete_feed_bars_next_to_a_healed_stretch_are_rebased_so_the_day_sums_to_dhans():
    # Dhan's day: 10 per minute, 5 in the last. The feed saw each minute's last trades late
    # (in the next packet): its bars carry cumulative volumes at their last packets.
    theirs = [dhan(i, v=10) for i in range(5)] + [dhan(5, v=5)]
    stored = [
        feed(0, v=0, cum=8, complete=False),  # the run's first bar
        feed(1, v=10, cum=18),
        feed(2, v=10, cum=28),  # its last 2 traded after its last packet, before the gap
        feed(4, v=3, cum=45, complete=False),  # the first after the gap
        feed(5, v=10, cum=55),
    ]
    p = plan(stored, [Span(m(3) + 1, m(3) + 50)], theirs)
    day = {b.start_utc: b for b in stored} | {b.start_utc: b for b in p.bars}
    assert sum(b.volume for b in day.values()) == 55  # Dhan's day
    assert (day[m(1)].volume, day[m(2)].volume, day[m(5)].volume) == (8, 12, 5)
    assert p.rebased == 3
    assert {day[i].source for i in (m(1), m(2), m(5))} == {"feed"}  # OHLC untouched
    assert all(day[i].open == 100.0 and day[i].high == 101.0 for i in (m(1), m(2), m(5)))


def test_longer_bars_are_rebuilt_from_the_one_minute_bars_of_every_bucket_touched():
    stored = [feed(i, v=10) for i in range(10)] + [
        Bar(SEG, SID, 300, m(0), 100.0, 101.0, 99.0, 100.5, 50, 15, None, True, "feed"),
        Bar(SEG, SID, 300, m(5), 100.0, 101.0, 99.0, 100.5, 35, 15, None, False, "feed"),
    ]
    stored[7] = feed(7, v=5, complete=False)
    theirs = [dhan(i, v=10) for i in range(10)]
    theirs[7] = dhan(7, h=105.0, v=25)
    p = plan(stored, [], theirs, intervals_s=[60, 300])
    (five,) = [b for b in p.bars if b.interval_s == 300]
    minutes = [b for b in stored[5:10]]
    minutes[2] = as_bar(theirs[7])
    assert five == aggregate(SEG, SID, 300, m(5), minutes)
    assert (five.high, five.volume, five.source, five.complete) == (105.0, 65, "dhan", True)


def test_a_longer_bucket_still_being_built_is_left_to_the_collector():
    stored = [feed(0, complete=False)]
    p = plan(stored, [], [dhan(0)], now=m(2) + 1, intervals_s=[60, 300])
    assert [b.interval_s for b in p.bars] == [60]


def test_reconcile_counts_prices_more_than_a_tick_apart_and_volumes_that_differ():
    ours = [feed(0, h=101.05), feed(1, h=101.10), feed(2, v=11), feed(3, lo=98.0),
            feed(4, complete=False, h=200.0)]  # fmt: skip
    theirs = {m(i): as_bar(DhanBar(m(i), 100.0, 101.0, 99.0, 100.5, 10)) for i in range(5)}
    f = compare(SEG, ours, theirs, LATER)
    assert (f.minutes_compared, f.minutes_differing, f.volume_differing) == (4, 2, 1)
    assert (f.worst_start_utc, f.worst_diff) == (m(3), 1.0)
    assert f.differing == (m(1), m(2), m(3))  # 0.05 is one tick: not a difference
    assert f.share_differing == 0.5


def test_reconcile_with_prefer_dhan_replaces_the_differing_minutes_only():
    stored = [feed(0), feed(1, h=103.0), feed(2)]
    theirs = [dhan(i, h=101.0, lo=99.0, v=10) for i in range(3)]
    kept = plan(stored, [], theirs, reconcile=True)
    assert kept.bars == [] and kept.figures.minutes_differing == 1
    fixed = plan(stored, [], theirs, reconcile=True, prefer_dhan=True)
    assert [b.start_utc for b in fixed.bars if b.source == "dhan"] == [m(1)]


@pytest.mark.parametrize("seed", range(8))
def test_healing_a_random_day_makes_every_healed_minute_dhans_and_the_day_sum_dhans(seed):
    rng = random.Random(seed)
    trades, cum = [], 0  # (second of the session, price, cumulative volume)
    for second in sorted(rng.sample(range(0, 60 * 30), 600)):
        cum += rng.randint(1, 50)
        trades.append((second, round(100 + rng.uniform(-2, 2), 2), cum))
    exchange: dict[int, list] = {}
    for second, price, c in trades:
        exchange.setdefault(second // 60, []).append((price, c))
    theirs, prev = [], 0
    for i in sorted(exchange):
        prices = [p for p, _ in exchange[i]]
        last = exchange[i][-1][1]
        theirs.append(DhanBar(m(i), prices[0], max(prices), min(prices), prices[-1], last - prev))
        prev = last
    # The feed: every third trade (and the session's last), and a gap.
    gap = Span(T0 + rng.randint(300, 900), 0)
    gap = Span(gap.start_utc, gap.start_utc + rng.randint(30, 400))
    seen = [t for k, t in enumerate(trades) if (k % 3 == 0 or k == len(trades) - 1) and not
            (gap.start_utc <= T0 + t[0] < gap.end_utc)]  # fmt: skip
    stored, base, first_after = [], None, True
    bars: dict[int, dict] = {}
    for second, price, c in seen:
        i = second // 60
        if T0 + second >= gap.end_utc and first_after:
            base, first_after = None, False
        b = bars.setdefault(i, {"p": [], "v": 0, "cum": c, "complete": True})
        if base is None:
            b["complete"] = False
        else:
            b["v"] += c - base
        base = c
        b["p"].append(price)
        b["cum"] = c
    for i, b in sorted(bars.items()):
        p = b["p"]
        over_gap = m(i) < gap.end_utc and m(i) + 60 > gap.start_utc
        stored.append(feed(i, p[0], max(p), min(p), p[-1], b["v"], b["cum"],
                           b["complete"] and not over_gap))  # fmt: skip
    result = plan(stored, [gap], theirs)
    day = {b.start_utc: b for b in stored} | {b.start_utc: b for b in result.bars}
    dhans = {d.start_utc: as_bar(d) for d in theirs}
    for minute in minutes_of(gap):
        assert day.get(minute) == dhans.get(minute)
    assert all(day[b.start_utc] == dhans[b.start_utc] for b in stored if not b.complete)
    assert sum(b.volume for b in day.values()) == sum(d.volume for d in theirs)
    assert set(day) == set(dhans)  # no minute of ours without a trade of theirs


def test_a_longer_bucket_that_had_not_settled_when_its_minutes_were_healed_is_rebuilt_later():
    stored = [feed(0, complete=False), feed(1)]
    early = plan(stored, [], [dhan(0), dhan(1, v=10)], now=m(2) + 1, intervals_s=[60, 300])
    assert [b.interval_s for b in early.bars] == [60]
    healed = [b for b in early.bars] + [stored[1]]
    later = plan(healed, [], [dhan(0), dhan(1, v=10)], now=m(6) + 1, intervals_s=[60, 300])
    (five,) = later.bars
    assert five == aggregate(SEG, SID, 300, m(0), healed)
