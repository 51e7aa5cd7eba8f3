"""The candle builder, with the clock passed in: buckets, volume, grace, duplicates."""

from __future__ import annotations

import datetime as dt
import random
import zoneinfo

import pytest

from dhanfeed.candles import Bar, CandleBuilder, Carry, bucket_start, ist_to_utc

IST = zoneinfo.ZoneInfo("Asia/Kolkata")
SEG, SID = "NSE_EQ", 1333


def at(hms: str, day: str = "2026-01-05") -> float:
    """Epoch seconds (UTC) of an IST wall-clock time on a given day."""
    return dt.datetime.fromisoformat(f"{day}T{hms}").replace(tzinfo=IST).timestamp()


def ltt(hms: str, day: str = "2026-01-05") -> int:
    """Dhan's LTT for an IST wall-clock time: seconds since 1970-01-01 00:00 *IST*."""
    return int(at(hms, day)) + 19800


def utc(iso: str) -> int:
    return int(dt.datetime.fromisoformat(iso).timestamp())


def trade(b: CandleBuilder, hms: str, ltp: float, cum: int | None, lag: float = 0.3, **kw) -> str:
    """A trade at IST time `hms` received `lag` seconds later."""
    return b.add_trade(
        kw.get("segment", SEG), kw.get("sid", SID), ltp, ltt(hms), cum, at(hms) + lag
    )


def only(bars: list[Bar], interval_s: int = 60) -> list[Bar]:
    return [b for b in bars if b.interval_s == interval_s]


def test_ltt_is_an_ist_epoch_converted_to_utc_by_subtracting_five_and_a_half_hours():
    assert ist_to_utc(ltt("09:15:30")) == utc("2026-01-05T03:45:30+00:00")


def test_a_tick_at_09_15_30_ist_lands_in_the_bar_starting_03_45_00_utc():
    b = CandleBuilder([60])
    assert trade(b, "09:15:30", 100.0, 10) == "ok"
    (bar,) = b.flush()
    assert bar.start_utc == utc("2026-01-05T03:45:00+00:00")
    assert bar.start_utc == at("09:15:00")
    assert bar.end_utc == utc("2026-01-05T03:46:00+00:00")


@pytest.mark.parametrize(
    ("hms", "bar_start"),
    [("09:15:00", "09:15:00"), ("09:15:59", "09:15:00"), ("09:16:00", "09:16:00"),
     ("09:14:59", "09:14:00"), ("15:29:59", "15:29:00")],
)  # fmt: skip
def test_one_minute_bars_change_exactly_on_the_minute(hms, bar_start):
    assert bucket_start(int(at(hms)), 60) == at(bar_start)


@pytest.mark.parametrize(
    ("interval_min", "hms", "bar_start"),
    [
        (5, "09:15:00", "09:15:00"), (5, "09:19:59", "09:15:00"), (5, "09:20:00", "09:20:00"),
        (5, "09:14:59", "09:10:00"), (15, "09:29:59", "09:15:00"), (15, "09:30:00", "09:30:00"),
        (60, "09:15:00", "09:15:00"), (60, "10:14:59", "09:15:00"), (60, "10:15:00", "10:15:00"),
        (60, "15:29:00", "15:15:00"), (60, "09:14:59", "08:15:00"),
        (25, "09:39:59", "09:15:00"), (25, "09:40:00", "09:40:00"), (25, "15:20:00", "15:05:00"),
    ],
)  # fmt: skip
def test_longer_bars_are_anchored_at_the_09_15_ist_open(interval_min, hms, bar_start):
    b = CandleBuilder([interval_min * 60])
    trade(b, hms, 100.0, 5)
    (bar,) = b.flush()
    assert bar.start_utc == at(bar_start)


def test_the_anchor_holds_on_every_day_for_intervals_that_do_not_divide_a_day():
    for day in ("2026-01-05", "2026-01-06", "2026-03-31"):
        assert bucket_start(int(at("09:40:00", day)), 25 * 60) == at("09:40:00", day)


def test_ohlc_come_from_ltp_in_arrival_order():
    b = CandleBuilder([60])
    for hms, ltp, cum in [("09:15:01", 100, 1), ("09:15:10", 104, 2), ("09:15:20", 98, 3),
                          ("09:15:30", 101, 4)]:  # fmt: skip
        assert trade(b, hms, ltp, cum) == "ok"
    (bar,) = b.flush()
    assert (bar.open, bar.high, bar.low, bar.close, bar.ticks) == (100, 104, 98, 101, 4)


def test_volume_is_carried_from_the_end_of_the_previous_bar_not_its_first_tick():
    b = CandleBuilder([60])
    trade(b, "09:15:10", 100, 100)
    trade(b, "09:15:50", 101, 150)
    trade(b, "09:16:05", 102, 170)  # 20 traded between 09:15:50 and here belong to 09:16
    trade(b, "09:16:40", 103, 200)
    first, second = b.flush()
    assert (first.volume, first.cum_volume_end) == (150, 150)  # no carry: cumulative from 0
    assert (second.volume, second.cum_volume_end) == (50, 200)  # 200 - 150, not 200 - 170
    assert first.volume + second.volume == 200


def test_an_empty_minute_gives_no_bar_and_its_volume_is_not_lost():
    b = CandleBuilder([60])
    trade(b, "09:15:10", 100, 10)
    trade(b, "09:17:30", 100, 60)
    bars = b.flush()
    assert [bar.start_utc for bar in bars] == [at("09:15:00"), at("09:17:00")]
    assert [bar.volume for bar in bars] == [10, 50]


def test_bars_are_closed_by_the_timer_at_bar_end_plus_grace_not_by_the_next_tick():
    b = CandleBuilder([60], grace_s=2.0)
    trade(b, "09:15:10", 100, 10)
    trade(b, "09:16:01", 101, 20)  # a tick of the next bar does not close 09:15
    assert b.close_due(at("09:16:01.999")) == []
    (bar,) = b.close_due(at("09:16:02"))
    assert bar.start_utc == at("09:15:00")
    assert b.open_bars == 1
    (bar,) = b.close_due(at("09:17:02"))
    assert bar.start_utc == at("09:16:00")
    assert b.close_due(at("10:00:00")) == []


def test_a_tick_received_inside_the_grace_amends_its_bar():
    b = CandleBuilder([60], grace_s=2.0)
    trade(b, "09:15:10", 100, 10)
    assert trade(b, "09:15:59", 107, 30, lag=2.5) == "ok"  # received 09:16:01.5
    (bar,) = b.close_due(at("09:16:02"))
    assert (bar.close, bar.high, bar.volume, bar.ticks) == (107, 107, 30, 2)
    assert b.late == 0


def test_a_tick_received_after_the_grace_is_counted_dropped_and_its_volume_goes_to_the_next_bar():
    b = CandleBuilder([60], grace_s=2.0)
    trade(b, "09:15:10", 100, 10)
    assert trade(b, "09:15:59", 150, 30, lag=3.0) == "late"  # received 09:16:02
    assert b.late == 1
    (bar,) = b.close_due(at("09:16:02"))
    assert (bar.close, bar.high, bar.volume, bar.ticks) == (100, 100, 10, 1)
    trade(b, "09:16:20", 101, 35)
    (nxt,) = b.flush()
    assert nxt.volume == 25  # 35 - 10: the late tick's 20 are not lost
    assert nxt.open == 101


def test_a_tick_for_a_bar_already_closed_is_late_even_if_its_own_clock_says_otherwise():
    b = CandleBuilder([60], grace_s=2.0)
    trade(b, "09:15:10", 100, 10)
    b.close_due(at("09:16:05"))
    assert trade(b, "09:15:58", 100, 11, lag=1.0) == "late"
    assert b.late == 1


def test_late_for_the_short_interval_still_counts_for_the_long_one():
    b = CandleBuilder([60, 300], grace_s=2.0)
    trade(b, "09:15:10", 100, 10)
    assert trade(b, "09:15:59", 90, 30, lag=5.0) == "late"
    bars = b.flush()
    (one,) = only(bars, 60)
    (five,) = only(bars, 300)
    assert (one.low, one.volume) == (100, 10)
    assert (five.low, five.volume, five.ticks) == (90, 30, 2)


def test_a_packet_with_an_equal_or_lower_cumulative_volume_is_a_duplicate_and_changes_nothing():
    b = CandleBuilder([60])
    assert trade(b, "09:15:10", 100, 10) == "ok"
    assert trade(b, "09:15:20", 101, 20) == "ok"
    assert trade(b, "09:15:20", 101, 20) == "duplicate"  # the same packet from a second socket
    assert trade(b, "09:15:10", 100, 10) == "duplicate"  # a stale one
    assert trade(b, "09:15:30", 90, 15) == "duplicate"  # lower volume, whatever its LTT says
    assert b.duplicates == 3
    (bar,) = b.flush()
    assert (bar.close, bar.low, bar.volume, bar.ticks, bar.cum_volume_end) == (101, 100, 20, 2, 20)


def interleave(a: list, b: list, rng: random.Random) -> list:
    """A random merge of two streams that keeps the order within each (two sockets)."""
    a, b, out = list(a), list(b), []
    while a or b:
        out.append((a if a and (not b or rng.random() < 0.5) else b).pop(0))
    return out


@pytest.mark.parametrize("seed", range(5))
def test_two_sockets_delivering_the_same_packets_give_the_bars_of_one_socket(seed):
    packets = [(f"09:15:{10 + i:02d}", 100 + i % 3, 10 * (i + 1)) for i in range(20)]
    single = CandleBuilder([60])
    for p in packets:
        trade(single, *p)
    both = CandleBuilder([60])
    # During a token swap the old socket delivers 0..13; the new one, live from packet 8 on,
    # delivers 8..19 while the old one still delivers 8..13.
    merged = packets[:8] + interleave(packets[8:14], packets[8:], random.Random(seed))
    outcomes = [trade(both, *p) for p in merged]
    assert outcomes.count("ok") == len(packets)
    assert both.duplicates == 6
    assert both.flush() == single.flush()


def test_ticker_trades_give_ohlc_with_zero_volume_and_are_deduplicated_by_ltt_and_ltp():
    b = CandleBuilder([60])
    kw = {"segment": "IDX_I", "sid": 13}
    assert trade(b, "09:15:01", 24000.5, None, **kw) == "ok"
    assert trade(b, "09:15:01", 24000.5, None, **kw) == "duplicate"
    assert trade(b, "09:15:01", 24003.0, None, **kw) == "ok"  # a new price in the same second
    assert trade(b, "09:15:02", 23990.0, None, **kw) == "ok"
    assert trade(b, "09:15:01", 24003.0, None, **kw) == "duplicate"  # older than the last one
    (bar,) = b.flush()
    assert (bar.segment, bar.security_id) == ("IDX_I", 13)
    assert (bar.open, bar.high, bar.low, bar.close) == (24000.5, 24003.0, 23990.0, 23990.0)
    assert (bar.volume, bar.ticks, bar.cum_volume_end) == (0, 3, None)
    assert b.duplicates == 2


def index_print(b: CandleBuilder, price: float, source: int) -> str:
    """An index (Ticker) trade at 09:15:01 as socket `source` delivers it."""
    return b.add_trade("IDX_I", 13, price, ltt("09:15:01"), None, at("09:15:01"), source)


def test_a_ticker_repeat_on_the_same_socket_is_kept_and_the_other_sockets_copy_is_dropped():
    b = CandleBuilder([60])

    def index(price: float, source: int) -> str:
        return index_print(b, price, source)

    assert index(24000.5, source=1) == "ok"
    assert index(24000.5, source=2) == "duplicate"  # the new socket of a swap: same packet
    assert index(24000.5, source=1) == "ok"  # the index really printed that price again
    assert index(24001.0, source=2) == "ok"
    assert index(24001.0, source=1) == "duplicate"
    (bar,) = b.flush()
    assert (bar.ticks, b.duplicates) == (3, 2)


def test_a_price_an_index_returns_to_during_a_swap_is_kept_when_only_the_new_socket_brings_it():
    b = CandleBuilder([60])

    def index(price: float, source: int) -> str:
        return index_print(b, price, source)

    # The index prints 100, 101, 100 in one second; the old socket (1) delivers the first
    # print, then both sockets deliver the rest, the new one (2) first.
    assert index(100.0, source=1) == "ok"
    assert index(100.0, source=2) == "duplicate"  # the new socket's copy of the first print
    assert index(101.0, source=2) == "ok"
    assert index(101.0, source=1) == "duplicate"
    assert index(100.0, source=2) == "ok"  # the third print: new, though socket 1 had 100
    assert index(100.0, source=1) == "duplicate"  # and socket 1's copy of it
    (bar,) = b.flush()
    assert (bar.ticks, b.duplicates) == (3, 3)


def test_instruments_are_independent():
    b = CandleBuilder([60])
    trade(b, "09:15:10", 100, 50)
    assert trade(b, "09:15:11", 200, 5, sid=2885) == "ok"  # lower volume, other instrument
    bars = {bar.security_id: bar for bar in b.flush()}
    assert (bars[SID].volume, bars[2885].volume) == (50, 5)


def test_the_daily_reset_of_cumulative_volume_starts_a_new_day_and_older_days_are_stale():
    b = CandleBuilder([60])
    trade(b, "15:29:50", 100, 5000)
    b.close_due(at("15:31:00"))
    nxt = "2026-01-06"
    assert b.add_trade(SEG, SID, 102, ltt("09:15:05", nxt), 40, at("09:15:05", nxt)) == "ok"
    assert b.add_trade(SEG, SID, 99, ltt("15:29:55"), 5001, at("09:15:06", nxt)) == "duplicate"
    (bar,) = b.flush()
    assert (bar.start_utc, bar.volume) == (at("09:15:00", nxt), 40)


def test_a_carry_from_the_store_continues_the_volume_after_a_restart():
    carry = {(SEG, SID, 60): Carry(int(at("09:15:00")), 150)}
    b = CandleBuilder([60], carry=carry)
    assert trade(b, "09:15:50", 100, 150) == "duplicate"  # already counted before the restart
    assert trade(b, "09:16:10", 101, 180) == "ok"
    (bar,) = b.flush()
    assert bar.volume == 30


def test_a_carry_from_yesterday_does_not_swallow_todays_lower_volumes():
    carry = {(SEG, SID, 60): Carry(int(at("15:29:00", "2026-01-02")), 90000)}
    b = CandleBuilder([60], carry=carry)
    assert trade(b, "09:15:05", 100, 700) == "ok"
    (bar,) = b.flush()
    assert bar.volume == 700


def test_a_bare_integer_carry_is_accepted_as_the_same_day():
    b = CandleBuilder([60], carry={(SEG, SID, 60): 150})
    assert trade(b, "09:16:10", 101, 180) == "ok"
    assert b.flush()[0].volume == 30


def test_a_tick_after_flush_for_a_flushed_bar_is_late():
    b = CandleBuilder([60])
    trade(b, "09:15:10", 100, 10)
    assert len(b.flush()) == 1
    assert trade(b, "09:15:20", 100, 20) == "late"


@pytest.mark.parametrize("bad", [[], [0], [90], [-60]])
def test_intervals_must_be_whole_minutes(bad):
    with pytest.raises(ValueError):
        CandleBuilder(bad)
