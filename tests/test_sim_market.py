"""The simulated market alone: trades between packets, and the exchange's bars from every
trade (what `POST /v2/charts/intraday` answers), built by hand from chosen instants."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from dhanfeed.sim.market import IST_OFFSET_S, Market, intraday_bars

KOLKATA = zoneinfo.ZoneInfo("Asia/Kolkata")
NSE_EQ = 1


def ltt_at(hh: int, mm: int, ss: int = 0) -> int:
    """Dhan's LTT (IST-epoch seconds) of an IST wall-clock time on 2026-11-27."""
    utc = dt.datetime(2026, 11, 27, hh, mm, ss, tzinfo=KOLKATA).timestamp()
    return int(utc) + IST_OFFSET_S


def utc_of(hh: int, mm: int) -> int:
    return int(dt.datetime(2026, 11, 27, hh, mm, tzinfo=KOLKATA).timestamp())


def all_bars(market: Market, interval: int = 1) -> dict:
    return intraday_bars(market.order[0], interval, 0, 2**40)


def traded(instants: list[int], trades_per_packet: int = 3, seed: int = 7) -> Market:
    market = Market(seed, [(NSE_EQ, 1333)], trades_per_packet)
    for ltt in instants:
        market.tick(market.order[0], ltt)
    return market


def test_each_packet_summarises_several_trades_and_every_trade_is_in_the_bars() -> None:
    market = traded([ltt_at(10, 0, s) for s in range(0, 60, 2)], trades_per_packet=4)
    tape = market.order[0]
    assert (tape.ticks, tape.trades) == (30, 120)
    bars = all_bars(market)
    assert bars["timestamp"] == [utc_of(10, 0)]
    assert bars["volume"] == [tape.cum]  # every trade counted, none lost between packets
    assert bars["close"] == [round(tape.ltps[-1], 2)]  # the last trade is the last packet's
    assert bars["high"][0] >= round(max(tape.ltps), 2)
    assert bars["low"][0] <= round(min(tape.ltps), 2)


def test_sampled_packets_miss_highs_and_lows_that_the_bars_keep() -> None:
    differ = 0
    for seed in range(10):
        market = traded([ltt_at(10, 0, s) for s in range(20)], seed=seed)
        tape, bars = market.order[0], all_bars(market)
        packets = (round(tape.ltps[0], 2), round(max(tape.ltps), 2), round(min(tape.ltps), 2))
        differ += packets != (bars["open"][0], bars["high"][0], bars["low"][0])
    assert differ >= 8  # the default of 3 trades per packet hides most bars' extremes


def test_one_trade_per_packet_makes_the_packets_the_whole_story() -> None:
    market = traded([ltt_at(10, 0, s) for s in range(20)], trades_per_packet=1)
    tape, bars = market.order[0], all_bars(market)
    ltps = [round(x, 2) for x in tape.ltps]
    assert (bars["open"], bars["high"], bars["low"]) == ([ltps[0]], [max(ltps)], [min(ltps)])


def test_minutes_without_a_trade_have_no_bar_and_volume_is_per_minute() -> None:
    market = traded([ltt_at(10, 0, 5), ltt_at(10, 0, 50), ltt_at(10, 2, 1), ltt_at(10, 5, 59)])
    tape, bars = market.order[0], all_bars(market)
    assert bars["timestamp"] == [utc_of(10, 0), utc_of(10, 2), utc_of(10, 5)]  # UTC, no 10:01
    cums = list(tape.cums)
    assert bars["volume"] == [cums[1], cums[2] - cums[1], cums[3] - cums[2]]


@pytest.mark.parametrize(
    ("interval", "starts"),
    [
        (5, [(9, 10), (9, 15), (9, 20), (10, 35)]),
        (25, [(8, 50), (9, 15), (10, 30)]),
        (60, [(8, 15), (9, 15), (10, 15)]),
    ],
)
def test_longer_bars_are_anchored_at_0915_ist_and_add_up_the_minutes(
    interval: int, starts: list[tuple[int, int]]
) -> None:
    instants = [ltt_at(9, 14, 30), ltt_at(9, 15), ltt_at(9, 19, 59), ltt_at(9, 20), ltt_at(10, 35)]
    market = traded(instants)
    bars, minutes = all_bars(market, interval), all_bars(market)
    assert bars["timestamp"] == [utc_of(h, m) for h, m in starts]
    assert sum(bars["volume"]) == sum(minutes["volume"]) == market.order[0].cum
    assert max(bars["high"]) == max(minutes["high"]) and bars["close"][-1] == minutes["close"][-1]


def test_the_range_keeps_bars_that_start_inside_it() -> None:
    market = traded([ltt_at(10, 0), ltt_at(10, 1), ltt_at(10, 2)])
    bars = intraday_bars(market.order[0], 1, utc_of(10, 1), utc_of(10, 2))
    assert bars["timestamp"] == [utc_of(10, 1)]


def test_an_index_trades_without_volume() -> None:
    market = Market(1, [(0, 13)])
    for s in range(5):
        market.tick(market.order[0], ltt_at(10, 0, s))
    assert all_bars(market)["volume"] == [0]
    assert len(all_bars(market)["high"]) == 1
