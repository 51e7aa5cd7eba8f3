"""The candle builder, with the clock passed in: buckets, volume, grace, duplicates."""

from __future__ import annotations

import datetime as dt
import random
import zoneinfo

import pytest

from dhanfeed.candles import Bar, CandleBuilder, Carry, bucket_start, ist_to_utc, round_price

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
    assert (first.volume, first.cum_volume_end) == (50, 150)  # the first bar: only its own ticks
    assert (second.volume, second.cum_volume_end) == (50, 200)  # 200 - 150, not 200 - 170
    assert first.volume + second.volume == 200 - 100


def test_an_empty_minute_gives_no_bar_and_its_volume_is_not_lost():
    b = CandleBuilder([60])
    trade(b, "09:15:05", 100, 5)
    trade(b, "09:15:10", 100, 10)
    trade(b, "09:17:30", 100, 60)
    bars = b.flush()
    assert [bar.start_utc for bar in bars] == [at("09:15:00"), at("09:17:00")]
    assert [bar.volume for bar in bars] == [5, 50]


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
    assert (bar.close, bar.high, bar.volume, bar.ticks) == (107, 107, 20, 2)
    assert b.late == 0


def test_a_tick_received_after_the_grace_is_counted_dropped_and_its_volume_goes_to_the_next_bar():
    b = CandleBuilder([60], grace_s=2.0)
    trade(b, "09:15:10", 100, 10)
    assert trade(b, "09:15:59", 150, 30, lag=3.0) == "late"  # received 09:16:02
    assert b.late == 1
    (bar,) = b.close_due(at("09:16:02"))
    assert (bar.close, bar.high, bar.volume, bar.ticks) == (100, 100, 0, 1)
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
    assert (one.low, one.volume) == (100, 0)
    assert (five.low, five.volume, five.ticks) == (90, 20, 2)


def test_a_packet_with_an_equal_or_lower_cumulative_volume_is_a_duplicate_and_changes_nothing():
    b = CandleBuilder([60])
    assert trade(b, "09:15:10", 100, 10) == "ok"
    assert trade(b, "09:15:20", 101, 20) == "ok"
    assert trade(b, "09:15:20", 101, 20) == "duplicate"  # the same packet from a second socket
    assert trade(b, "09:15:10", 100, 10) == "duplicate"  # a stale one
    assert trade(b, "09:15:30", 90, 15) == "duplicate"  # lower volume, whatever its LTT says
    assert b.duplicates == 3
    (bar,) = b.flush()
    assert (bar.close, bar.low, bar.volume, bar.ticks, bar.cum_volume_end) == (101, 100, 10, 2, 20)


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


def test_an_index_price_seen_before_a_swap_on_the_old_socket_and_after_it_on_the_new_is_kept():
    b = CandleBuilder([60])

    def index(price: float, source: int) -> str:
        return index_print(b, price, source)

    # In one second the index prints 100, 99, 102, 101, 100: the old socket (1) delivers the
    # first three and closes; the new one (2) came up for the third and delivers the rest. The
    # second 100 is a new print although socket 1 brought one 100 and socket 2 brings one.
    assert [index(p, 1) for p in (100.0, 99.0, 102.0)] == ["ok", "ok", "ok"]
    assert [index(p, 2) for p in (102.0, 101.0, 100.0)] == ["duplicate", "ok", "ok"]
    (bar,) = b.flush()
    assert (bar.ticks, b.duplicates) == (5, 1)


def test_an_old_socket_that_lags_behind_the_new_one_loses_no_index_print():
    b = CandleBuilder([60])

    def index(hms: str, price: float, source: int) -> str:
        return b.add_trade("IDX_I", 13, price, ltt(hms), None, at(hms), source)

    # The new socket (2) hands in 09:15:02 before the old one (1) hands in what it carried
    # of 09:15:01 and 09:15:02; only the 09:15:02 print at 101 went out on both.
    assert index("09:15:02", 101.0, 2) == "ok"
    assert index("09:15:02", 103.0, 2) == "ok"
    assert index("09:15:01", 100.0, 1) == "ok"  # not stale: the old socket's own print
    assert index("09:15:02", 99.0, 1) == "ok"
    assert index("09:15:02", 101.0, 1) == "duplicate"
    (bar,) = b.flush()
    assert (bar.ticks, b.duplicates) == (4, 1)


def test_instruments_are_independent():
    b = CandleBuilder([60])
    trade(b, "09:15:10", 100, 50)
    assert trade(b, "09:15:11", 200, 5, sid=2885) == "ok"  # lower volume, other instrument
    trade(b, "09:15:20", 100, 70)
    assert trade(b, "09:15:21", 200, 6, sid=2885) == "ok"
    bars = {bar.security_id: bar for bar in b.flush()}
    assert (bars[SID].volume, bars[2885].volume) == (20, 1)


def test_the_daily_reset_of_cumulative_volume_starts_a_new_day_and_older_days_are_stale():
    b = CandleBuilder([60])
    trade(b, "15:29:50", 100, 5000)
    b.close_due(at("15:31:00"))
    nxt = "2026-01-06"
    assert b.add_trade(SEG, SID, 102, ltt("09:15:05", nxt), 40, at("09:15:05", nxt)) == "ok"
    assert b.add_trade(SEG, SID, 99, ltt("15:29:55"), 5001, at("09:15:06", nxt)) == "duplicate"
    (bar,) = b.flush()
    assert (bar.start_utc, bar.volume) == (at("09:15:00", nxt), 40)


def test_a_carry_from_the_store_only_marks_what_was_already_counted_as_duplicate():
    carry = {(SEG, SID, 60): Carry(int(at("09:15:00")), 150)}
    b = CandleBuilder([60], carry=carry)
    assert trade(b, "09:15:50", 100, 150) == "duplicate"  # already counted before the restart
    assert trade(b, "09:16:10", 101, 180) == "ok"
    assert trade(b, "09:16:20", 101, 185) == "ok"
    (bar,) = b.flush()
    assert (bar.volume, bar.complete) == (5, False)  # nothing proves when 150..180 traded


def test_a_carry_from_yesterday_does_not_hide_todays_lower_volumes():
    carry = {(SEG, SID, 60): Carry(int(at("15:29:00", "2026-01-02")), 90000)}
    b = CandleBuilder([60], carry=carry)
    assert trade(b, "09:15:05", 100, 700) == "ok"
    assert trade(b, "09:15:06", 100, 710) == "ok"
    (bar,) = b.flush()
    assert bar.volume == 10


def test_a_bare_integer_carry_is_accepted_as_the_same_day():
    b = CandleBuilder([60], carry={(SEG, SID, 60): 150})
    assert trade(b, "09:16:10", 101, 150) == "duplicate"
    assert trade(b, "09:16:11", 101, 151) == "ok"


def test_a_tick_after_flush_for_a_flushed_bar_is_late():
    b = CandleBuilder([60])
    trade(b, "09:15:10", 100, 10)
    assert len(b.flush()) == 1
    assert trade(b, "09:15:20", 100, 20) == "late"


@pytest.mark.parametrize("bad", [[], [0], [90], [-60]])
def test_intervals_must_be_whole_minutes(bad):
    with pytest.raises(ValueError):
        CandleBuilder(bad)


# -- honest bars: volume only inside the bar's span; flags; prices ------------------------------


def test_a_start_in_the_middle_of_the_day_counts_only_what_the_first_bar_proves_and_flags_it():
    b = CandleBuilder([60])
    trade(b, "11:00:10", 100, 250_000)  # the day's volume so far: when it traded is unknown
    trade(b, "11:00:40", 101, 250_300)
    trade(b, "11:01:20", 102, 250_500)
    first, second = b.flush(at("11:02:00"))
    assert (first.volume, first.complete) == (300, False)  # not 250_300: no day-so-far spike
    assert (second.volume, second.complete) == (200, True)  # carried on a live subscription


def test_after_a_gap_the_first_bar_counts_only_its_own_ticks_and_bars_touching_the_gap_are_flagged():
    b = CandleBuilder([60])
    trade(b, "09:15:10", 100, 100)
    trade(b, "09:15:50", 100, 150)
    trade(b, "09:16:05", 100, 170)
    b.gap(SEG, SID, at("09:16:20"), at("09:17:30"))  # no live socket from 09:16:20 to 09:17:30
    trade(b, "09:17:35", 100, 900)  # 170..900 traded somewhere in the gap: not in this bar
    trade(b, "09:17:50", 100, 950)
    trade(b, "09:18:10", 100, 1000)
    bars = b.flush(at("09:19:00"))
    got = [(bar.start_utc, bar.volume, bar.complete) for bar in bars]
    assert got == [
        (at("09:15:00"), 50, False),  # the first bar of the run
        (at("09:16:00"), 20, False),  # open when the socket went away
        (at("09:17:00"), 50, False),  # the first after the gap: 950 - 900 only
        (at("09:18:00"), 50, True),
    ]


def test_a_gap_notice_that_comes_after_the_new_sockets_first_packet_still_flags_its_bar():
    b = CandleBuilder([60])
    trade(b, "09:15:10", 100, 100)
    trade(b, "09:15:20", 100, 110)
    b.close_due(at("09:16:05"))
    trade(b, "09:16:40", 100, 900, lag=0.1)  # the new socket, before the notice arrived
    b.gap(SEG, SID, at("09:16:10"), at("09:16:39"))
    trade(b, "09:16:50", 100, 910)
    (bar,) = b.flush(at("09:18:00"))
    assert bar.complete is False  # its volume may hold the gap's: backfill replaces it


def test_a_series_running_across_midnight_starts_the_new_day_at_zero_and_stays_complete():
    b = CandleBuilder([60])
    trade(b, "15:29:40", 100, 4000)
    trade(b, "15:29:50", 100, 5000)
    b.close_due(at("15:31:00"))
    nxt = "2026-01-06"
    b.add_trade(SEG, SID, 102, ltt("09:15:05", nxt), 40, at("09:15:05", nxt))
    (bar,) = b.flush(at("09:17:00", nxt))
    assert (bar.volume, bar.complete) == (40, True)


def test_a_bar_flushed_before_its_end_is_incomplete_and_one_flushed_in_its_grace_is_not():
    b = CandleBuilder([60], grace_s=2.0)
    trade(b, "09:15:10", 100, 10)
    trade(b, "09:15:20", 100, 12)
    trade(b, "09:16:00", 100, 20)
    bars = b.flush(at("09:16:01"))  # SIGTERM at 09:16:01: 09:15 had ended, 09:16 had not
    assert [bar.complete for bar in bars] == [False, False]  # 09:15 is the run's first bar
    b = CandleBuilder([60], grace_s=2.0)
    trade(b, "09:15:10", 100, 10)
    b.close_due(at("09:16:05"))
    trade(b, "09:16:10", 100, 20)
    trade(b, "09:16:59", 100, 30)
    (bar,) = b.flush(at("09:17:01"))
    assert (bar.volume, bar.complete) == (20, True)


def test_every_bar_says_it_was_built_from_the_feed():
    b = CandleBuilder([60, 300])
    trade(b, "09:15:10", 100, 10)
    assert {bar.source for bar in b.flush()} == {"feed"}


@pytest.mark.parametrize(
    ("segment", "sent", "stored"),
    [("NSE_EQ", 2678.199951171875, 2678.2), ("NSE_FNO", 152.3000030517578, 152.3),
     ("IDX_I", 24000.55078125, 24000.55), ("NSE_CURRENCY", 83.25250244140625, 83.2525),
     ("BSE_CURRENCY", 83.0024995803833, 83.0025)],
)  # fmt: skip
def test_prices_are_rounded_to_the_segments_precision_when_a_bar_closes(segment, sent, stored):
    b = CandleBuilder([60])
    b.add_trade(segment, 7, sent, ltt("09:15:10"), 10, at("09:15:10"))
    (bar,) = b.flush()
    assert (bar.open, bar.high, bar.low, bar.close) == (stored,) * 4
    assert round_price(segment, sent) == stored


def test_resume_rebuilds_the_bar_open_at_a_crash_from_its_stored_ticks():
    trades = [("09:15:10", 100, 100), ("09:15:50", 104, 150), ("09:16:05", 98, 170),
              ("09:16:20", 101, 200), ("09:16:30", 99, 230)]  # fmt: skip
    uninterrupted = CandleBuilder([60, 300])
    for hms, ltp, cum in trades:
        trade(uninterrupted, hms, ltp, cum)
    want = {(b.interval_s, b.start_utc): b for b in uninterrupted.flush(at("09:16:31"))}
    # The crashed run stored the 1-minute bar of 09:15 and every tick; 09:16 and the 5-minute
    # bar were open. The restarted collector replays the ticks from the last stored bar on.
    stored_ticks = [
        (SEG, SID, ltp, ltt(hms) - 19800, cum, at(hms) + 0.3) for hms, ltp, cum in trades
    ]
    resumed = CandleBuilder([60, 300])
    resumed.resume(stored_ticks, {(SEG, SID, 60): int(at("09:15:00"))}, at("09:16:31"))
    bars = {(b.interval_s, b.start_utc): b for b in resumed.flush(at("09:16:31"))}
    assert set(bars) == {(60, at("09:16:00")), (300, at("09:15:00"))}  # 09:15 is not repeated
    one, five = bars[(60, at("09:16:00"))], bars[(300, at("09:15:00"))]
    assert (one.open, one.high, one.low, one.volume) == (98, 101, 98, 80)  # 230 - 150: exact
    assert one == want[(60, at("09:16:00"))]
    assert (five.open, five.volume) == (100, 130)  # its first bar: what its ticks prove
    assert (resumed.duplicates, resumed.late, resumed.accepted) == (0, 0, 0)


def test_resume_marks_a_bar_that_had_not_ended_when_the_run_stopped_incomplete():
    b = CandleBuilder([60])
    ticks = [(SEG, SID, 100.0, int(at(t)), cum, at(t) + 0.2)
             for t, cum in [("09:15:10", 10), ("09:15:40", 20), ("09:16:05", 30), ("09:16:10", 40)]]  # fmt: skip
    b.resume(ticks, {(SEG, SID, 60): int(at("09:15:00"))}, live_until_utc=at("09:16:10.2"))
    trade(b, "09:16:50", 100.0, 90)  # after the restart, in the same minute: 40..90 unproven
    (bar,) = b.flush(at("09:17:30"))
    assert (bar.volume, bar.ticks, bar.complete) == (20, 3, False)


def test_resume_after_a_carry_still_takes_the_base_from_the_stored_bars_ticks():
    carry = {(SEG, SID, 60): Carry(int(at("09:15:00")), 20)}  # what Store.carry() gives
    b = CandleBuilder([60], carry=carry)
    ticks = [(SEG, SID, 100.0, int(at(t)), cum, at(t) + 0.2)
             for t, cum in [("09:15:10", 10), ("09:15:40", 20), ("09:16:05", 30)]]  # fmt: skip
    assert b.resume(ticks, {(SEG, SID, 60): int(at("09:15:00"))}, at("09:17:00")) == 1
    (bar,) = b.flush(at("09:17:00"))
    assert (bar.start_utc, bar.volume, bar.complete) == (at("09:16:00"), 10, True)
